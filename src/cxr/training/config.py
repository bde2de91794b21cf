"""Typed training configuration from YAML plus `key=value` overrides: pydantic dataclasses, strict
(no "3" for 3, no 1 for true) and closed (unknown keys are refused), so a mistyped key stops the
run before torch loads, in one line naming where it came from, the key, what was given and what
the key takes. They stay dataclasses: `dataclasses.replace`/`asdict`, pickling and equality hold."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from cxr.data.views import Views
from cxr.errors import CxrError

# strict: no coercion, and a section only as itself (`_build` makes the sections first)
strict_dataclass = pydantic_dataclass(config=ConfigDict(extra="forbid", strict=True))


class ConfigError(CxrError, ValueError):
    """A config file or override is not valid; the message names the key."""


@strict_dataclass
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


@strict_dataclass
class ModelConfig:
    name: str = "cxr_cnn"
    pretrained: bool = False
    strategy: Literal["scratch", "finetune", "linear_probe"] = "scratch"
    args: dict[str, Any] = field(default_factory=dict)
    size: int | None = None  # input side; default: the model's own preprocessing size
    # test-time augmentation (the card's `views`): every command scores each image as these
    # zooms into its centre (1.0 = the image as it is), each also mirrored with the flip, and
    # averages the logits before calibration, which is then chosen on the averaged logits
    test_time_scales: list[float] = field(default_factory=lambda: [1.0])
    test_time_hflip: bool = False


@strict_dataclass
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


@strict_dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: str | int = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp
    # auto: bf16-mixed on GPUs and on CPUs with AVX-512 BF16 or AMX, else 32-true
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    channels_last: bool = True  # 1.35-1.6x faster fp32 training on this CPU (docs/benchmarks.md)
    compile: bool = False  # torch.compile (inductor); falls back to eager, saying why, without it


@strict_dataclass
class EvaluationConfig:
    # an external judge beside the internal test (cxr.data.external.JUDGES): another source's
    # images, every copy of a Kermany training film left out; None: the internal test alone
    external: Literal["covid-db"] | None = None


@strict_dataclass
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
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: Path | None, overrides: list[str] = ()) -> TrainConfig:
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {raw!r}")
    given = {}  # key -> the override that set it, to name where a bad value came from
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[leaf] = yaml.safe_load(value)
        given[key] = f"override {item!r}"

    def source(key: str) -> str:
        """The last override that set this key, or a key around or inside it; else the file."""
        near = [k for k in given if _within(key, k) or _within(k, key)]
        return given[near[-1]] if near else str(path or "config")

    cfg = _build(raw, source)
    _check_combinations(cfg)
    return cfg


def _within(key: str, outer: str) -> bool:
    return key == outer or key.startswith((f"{outer}.", f"{outer}["))


def _build(raw: dict[str, Any], source: Callable[[str], str]) -> TrainConfig:
    """The sections first, then the whole; a refusal names its source (file or override)."""
    sections = {
        name: _built(hint, raw[name], (name,), source)
        for name, hint in typing.get_type_hints(TrainConfig).items()
        if dataclasses.is_dataclass(hint) and isinstance(raw.get(name), dict)
    }
    return _built(TrainConfig, {**raw, **sections}, (), source)


def _built(cls, values: dict[str, Any], at: tuple, source: Callable[[str], str]):
    try:
        return cls(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        key, problem = _explained((*at, *error["loc"]), error.get("input"))
        raise ConfigError(f"{source(key)}: {problem}") from None


def _explained(loc: tuple, given: Any) -> tuple[str, str]:
    """One error as (key path, one line): `optim.epochs`, what was given, what the key takes."""
    hint, parts = TrainConfig, []
    for part in loc:  # down the fields; union members' tags (`str`, `int`) end the walk
        if isinstance(part, int) and typing.get_origin(_optional(hint)) is list:
            hint = typing.get_args(_optional(hint))[0]
            parts.append(f"[{part}]")
        elif dataclasses.is_dataclass(hint) and isinstance(part, str):
            known = typing.get_type_hints(hint)
            parts.append(f".{part}" if parts else part)
            if part not in known:
                names = ", ".join(known)
                return "".join(parts), f"unknown config key {''.join(parts)!r}; known: {names}"
            hint = known[part]
        else:
            break
    key = "".join(parts) or "config"
    choices = [c for o in _options(hint) if typing.get_origin(o) is Literal
               for c in typing.get_args(o)]  # fmt: skip
    if choices:
        return key, f"config key {key!r}: {given!r} is not one of {choices}"
    name = _name(hint)
    return key, f"config key {key!r}: {given!r} is not {'an' if name[0] in 'aeiou' else 'a'} {name}"


def _options(hint: Any) -> tuple:
    """A union's members (`Literal[...] | None` is a typing.Union, not a types.UnionType)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return typing.get_args(hint) if union else (hint,)


def _optional(hint: Any) -> Any:
    """`list[str] | None` -> `list[str]`: what a list index walks into."""
    options = [o for o in _options(hint) if o is not type(None)]
    return options[0] if len(options) == 1 else hint


def _name(hint: Any) -> str:
    if dataclasses.is_dataclass(hint):
        return "mapping"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _check_combinations(cfg: TrainConfig) -> None:
    """What no single key's type says: fine-tuning options need a fine-tune, and so on."""
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
    try:
        Views(cfg.model.test_time_hflip, tuple(cfg.model.test_time_scales))
    except CxrError as exc:
        raise ConfigError(f"model.test_time_scales, model.test_time_hflip: {exc}") from None
    if cfg.optim.freeze_stages < 0:
        raise ConfigError(f"optim.freeze_stages must be 0 or more, not {cfg.optim.freeze_stages}")
