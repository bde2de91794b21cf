"""Typed training configuration from YAML plus `key=value` overrides; unknown keys are refused."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cxr.errors import CxrError


class ConfigError(CxrError, ValueError):
    """A config file or override is not valid; the message names the key."""


@dataclass
class DataConfig:
    root: str = "chest_xray"  # relative paths are looked up under $CXR_DATA first
    scheme: Literal["folder", "kermany3"] = "folder"
    negative: str | None = None
    tune_fraction: float = 0.15  # patients that choose epoch, calibration and threshold
    test_fraction: float = 0.15  # patients only evaluation sees: the internal test
    fold: int | None = None  # cross-validation: the internal test is this patient fold
    folds: int = 5
    seed: int = 0  # the patient split (and calibration folds); `TrainConfig.seed` drives training
    batch_size: int = 32
    workers: int = 2
    augment: Literal["none", "light", "radiograph"] = "radiograph"
    hflip: bool = False  # anatomy is asymmetric (heart on the left): off unless asked for
    balance: Literal["none", "weighted_loss", "sampler"] = "weighted_loss"
    limit: int | None = None  # a seeded random N training files (N/4 tune and test): smoke tests
    # The patients' documented age range in years (Kermany: children aged 1-5), for data whose
    # files carry no age: prediction warns on a DICOM PatientAge outside it.
    age_years: list[float] | None = None  # [youngest, oldest]
    # folders (e.g. `cxr reviews export`s) whose images join the training part only, never tuning
    # or internal test: reviewed cases were chosen by the model's disagreements
    extra_train: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    name: str = "cxr_cnn"
    pretrained: bool = False
    strategy: Literal["scratch", "finetune", "linear_probe"] = "scratch"
    args: dict[str, Any] = field(default_factory=dict)
    size: int | None = None  # input side; default: the model's own preprocessing size


@dataclass
class OptimConfig:
    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 0  # finetune: epochs with the backbone frozen (head first)
    backbone_lr_factor: float = 1.0  # finetune: backbone learning rate relative to the head's
    schedule: Literal["cosine", "onecycle"] = "onecycle"
    label_smoothing: float = 0.0
    # mixing pairs of training images and their labels (timm's Mixup), Beta(a, a) strengths:
    mixup: float = 0.0  # blends whole images, e.g. 0.2
    cutmix: float = 0.0  # pastes a box of one image into the other, e.g. 1.0
    ema: float | None = None  # exponential moving average of the weights, e.g. 0.999
    freeze_bn: bool = False  # finetune: keep the pretrained BatchNorm statistics
    # finetune: the stem and this many first stages keep their pretrained weights and statistics;
    # backward stops before them, where the feature maps are largest (timm backbones)
    freeze_stages: int = 0
    patience: int = 3  # early stopping on tuning-split AUROC


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: str | int = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp
    # auto: bf16-mixed on GPUs and on CPUs with AVX-512 BF16 or AMX, else 32-true
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    channels_last: bool = True  # 1.35-1.6x faster fp32 training on this CPU (docs/benchmarks.md)
    compile: bool = False  # torch.compile (inductor); falls back to eager, saying why, without it


@dataclass
class TrainConfig:
    name: str = "run"
    runs_dir: str = "runs"
    # initialisation, batch order, augmentation: another seed is another model on the same split
    seed: int = 0
    threshold_rule: str = "sensitivity>=0.95"  # or youden, or fixed:0.5
    calibration: Literal["auto", "none", "temperature", "platt", "vector"] = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: Path | None, overrides: list[str] = ()) -> TrainConfig:
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    cfg = _build(TrainConfig, raw, "")
    for key, why in (
        ("freeze_bn", "keeps the pretrained BatchNorm statistics"),
        ("freeze_stages", "keeps the pretrained early stages"),
    ):
        if getattr(cfg.optim, key) and cfg.model.strategy != "finetune":
            raise ConfigError(
                f"optim.{key} {why}: it needs model.strategy=finetune, not {cfg.model.strategy}"
            )
    if (cfg.optim.mixup or cfg.optim.cutmix) and cfg.model.strategy == "linear_probe":
        raise ConfigError(
            "optim.mixup and optim.cutmix mix images: a linear probe trains on features"
        )
    if min(cfg.optim.mixup, cfg.optim.cutmix) < 0:
        raise ConfigError("optim.mixup and optim.cutmix are Beta(a, a) strengths: 0 (off) or more")
    if cfg.optim.freeze_stages < 0:
        raise ConfigError(f"optim.freeze_stages must be 0 or more, not {cfg.optim.freeze_stages}")
    return cfg


def _build(cls, raw: dict[str, Any], prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            values[name] = _check(value, hint, prefix + name)
    return cls(**values)


def _check(value: Any, hint: Any, key: str) -> Any:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if typing.get_origin(option) is Literal:
            if value in typing.get_args(option):
                return value
            continue
        origin = typing.get_origin(option) or option
        if value is None and option is type(None):
            return None
        if origin is list and isinstance(value, list):
            (item,) = typing.get_args(option)
            return [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if origin is not float and origin is not type(None) and isinstance(value, origin):
            if origin is int and isinstance(value, bool):
                continue
            return value
    choices = [a for o in options if typing.get_origin(o) is Literal for a in typing.get_args(o)]
    if choices:
        raise ConfigError(f"config key {key!r}: {value!r} is not one of {choices}")
    raise ConfigError(f"config key {key!r}: {value!r} is not a {hint}")
