"""`fit(config)`: one training run from config to a run folder holding a self-describing model.

The tuning part chooses the epoch, the calibration and the threshold; the internal-test part is
never looked at here (`cxr evaluate --split internal-test` and `cxr study` score it).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, WeightAveraging
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only, rank_zero_warn
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from cxr.data.cache import PixelCache
from cxr.data.content_keys import card_keys
from cxr.data.discovery import Dataset, discover
from cxr.data.labels import LabelScheme
from cxr.data.split import INTERNAL_TEST, Protocol
from cxr.data.views import Views
from cxr.models import create_model, save_model
from cxr.models.io import stamped
from cxr.outputs import publish, set_aside, staged_dir
from cxr.settings import resolve_data
from cxr.spreadsheet import write_predictions, write_rows
from cxr.training.augment import batch_augment
from cxr.training.config import TrainConfig
from cxr.training.datamodule import XrayDataModule, training_classes
from cxr.training.features import ProbeDataModule
from cxr.training.finetuning import HeadFirst
from cxr.training.module import XrayClassifier
from cxr.training.precision import compile_unavailable, resolve_precision
from cxr.training.progress import EpochProgress
from cxr.training.tuning import finish_tuning

TUNING_PREDICTIONS = "tuning_predictions.csv"


def maybe_compile(model: torch.nn.Module, enabled: bool, accelerator: str) -> None:
    """Compile the model's forward in place (its weights and state-dict keys stay as they are)."""
    if not enabled:
        return
    reason = compile_unavailable(accelerator)
    if reason:
        rank_zero_warn(f"torch.compile is off: {reason}; training eagerly")
        return
    model.compile()


@dataclass(frozen=True)
class Trained:
    """A finished run as training holds it: evaluation scores the internal test from these as
    they are, with no reload of model.pt and no second discovery or split of the data."""

    run: Path
    model: nn.Module  # eval mode, `model.card` the card model.pt holds
    dataset: Dataset
    protocol: Protocol


def fit(cfg: TrainConfig) -> Path:
    """Train, then tune on the tuning part; returns the run folder."""
    return train(cfg).run


def train(cfg: TrainConfig) -> Trained:
    """`fit`, keeping what the run holds. The folder is filled under a hidden name and takes
    `runs_dir/<name>` only when everything succeeded: a crashed run is set aside under
    `runs_dir/.failed/`, so the rerun gets the name the README uses."""
    L.seed_everything(cfg.seed, workers=True)
    precision, why = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    rank_zero_only(print)(f"precision: {precision} ({why})", flush=True)
    dataset = discover(resolve_data(cfg.data.root), LabelScheme(cfg.data.scheme, cfg.data.negative))
    model = _new_model(cfg, training_classes(dataset))
    if cfg.model.strategy == "linear_probe":
        bf16 = "bf16" in precision
        data = ProbeDataModule(cfg.data, model, dataset, bf16, cfg.trainer.channels_last)
    else:
        data = XrayDataModule(cfg.data, model.card, dataset)
    maybe_compile(model, cfg.trainer.compile, cfg.trainer.accelerator)
    runs = Path(cfg.runs_dir)
    if rank_zero_only.rank != 0:  # other DDP ranks write nothing; ModelCheckpoint takes rank
        run = runs / f".{cfg.name}-rank{rank_zero_only.rank}"  # 0's folder by broadcast
        _train(cfg, run, data, model, precision)
        return Trained(run, model, dataset, data.protocol)
    run = staged_dir(runs, cfg.name)
    try:
        (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        _train(cfg, run, data, model, precision)
    except BaseException as exc:
        kept = set_aside(run, runs, cfg.name)
        exc.add_note(f"cxr: the unfinished run is kept in {kept}; {runs / cfg.name} stays free")
        raise
    return Trained(publish(run, runs, cfg.name), model, dataset, data.protocol)


def _new_model(cfg: TrainConfig, classes: list[str]) -> nn.Module:
    """The architecture, untrained, whose card already says what it learns from which data."""
    model = create_model(
        cfg.model.name,
        pretrained=cfg.model.pretrained,
        num_classes=len(classes),
        in_chans=1,
        **cfg.model.args,
    )
    prep = model.card.preprocessing
    model.card = dataclasses.replace(
        model.card,
        classes=tuple(classes),
        preprocessing=dataclasses.replace(prep, size=cfg.model.size) if cfg.model.size else prep,
        label_scheme=cfg.data.scheme,
        negative=cfg.data.negative,
        data=dataclasses.asdict(cfg.data),
        strategy=cfg.model.strategy,
        views=Views(cfg.model.test_time_hflip, tuple(cfg.model.test_time_scales)),
    )
    return model


def _train(cfg: TrainConfig, run: Path, data: XrayDataModule, model, precision: str) -> None:
    """Lightning's fit, then (rank 0) the best epoch's weights finished into run/model.pt."""
    weights = data.class_weights() if cfg.data.balance == "weighted_loss" else None
    module = XrayClassifier(
        model,
        cfg.optim,
        cfg.model.strategy,
        weights,
        batch_augment(cfg.data.augment, cfg.data.hflip),
        channels_last=cfg.trainer.channels_last,
    )
    best = ModelCheckpoint(
        dirpath=run / "lightning", filename="best", monitor="val_auroc", mode="max", save_top_k=1
    )
    callbacks = [
        best,
        EarlyStopping("val_auroc", mode="max", patience=cfg.optim.patience),
        EpochProgress(),
    ]
    if cfg.model.strategy == "finetune" and cfg.optim.warmup_epochs:
        callbacks.append(HeadFirst(cfg.optim.warmup_epochs))
    if cfg.optim.ema:
        callbacks.append(WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema)))
    trainer = L.Trainer(
        max_epochs=cfg.optim.epochs,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy,
        precision=precision,
        callbacks=callbacks,
        default_root_dir=run,
        logger=CSVLogger(run, name="", version="lightning"),
        num_sanity_val_steps=0,
        deterministic=True,
        log_every_n_steps=10,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data)
    if not trainer.is_global_zero:
        return
    state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    epochs = write_history(run / "lightning" / "metrics.csv", run / "history.csv")
    model = module.model.cpu().to(memory_format=torch.contiguous_format).eval()
    _finish(run, cfg, data, model, precision, epochs)
    (run / "lightning" / "best.ckpt").unlink()  # model.pt holds the same weights, self-described


def write_history(logged: Path, out: Path) -> int:
    """Lightning's CSVLogger rows (steps and epochs mixed) as one row per epoch, epochs counted
    from 1 as a user counts them; returns how many epochs ran."""
    per_epoch: dict[int, dict[str, str]] = {}
    with logged.open(newline="") as fh:
        for row in csv.DictReader(fh):
            epoch = int(row["epoch"])
            values = {k: v for k, v in row.items() if v not in ("", None) and k != "step"}
            per_epoch.setdefault(epoch, {}).update(values)
    fields = ["epoch", "train_loss_epoch", "train_acc", "val_loss", "val_acc", "val_auroc"]
    header = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_auroc"]
    rows = ([e + 1, *[row.get(k, "") for k in fields[1:]]] for e, row in sorted(per_epoch.items()))
    with out.open("w", newline="") as fh:
        write_rows(fh, [header, *rows])
    return len(per_epoch)


def training_population(data: XrayDataModule) -> dict:
    """The range of the training images' grey-level mean and spread (0.5th-99.5th percentile)
    and the data's documented age range, so prediction can warn when an image falls outside
    what the model has seen (see cxr.inference.plausibility.out_of_population); and how many
    readable images each `data.extra_train` folder added."""
    flat = data.train_images.pixels.flatten(1).float()
    mean, std = flat.mean(1).numpy(), flat.std(1).numpy()
    read = set(data.train_images.images.paths)
    ages = data.cfg.age_years
    return {
        "images": len(flat),
        "extra_images": {
            folder: sum(r.path in read for r in records) for folder, records in data.extra.items()
        },
        "pixel_mean": [float(np.percentile(mean, 0.5)), float(np.percentile(mean, 99.5))],
        "pixel_std": [float(np.percentile(std, 0.5)), float(np.percentile(std, 99.5))],
        "age_years": [float(ages[0]), float(ages[1])] if ages else None,
    }


def overlap_keys(data: XrayDataModule) -> dict:
    """Content keys of every training, tuning and internal-test image, so `cxr evaluate` finds
    the model's own radiographs where this data is not (the test images' pixels only: no score
    is computed on them here)."""
    test = PixelCache(data.prep.size, data.prep.resize).load(
        [r.path for r in data.protocol.test], workers=data.cfg.workers
    )
    return card_keys(
        {
            "training": data.train_images.images,
            "tuning": data.tune_images.images,
            INTERNAL_TEST: test,
        }
    )


def _finish(
    run: Path, cfg: TrainConfig, data: XrayDataModule, model: nn.Module, precision: str, epochs: int
) -> None:
    """The tuning finaliser on the best epoch's tuning predictions, kept beside the model in
    tuning_predictions.csv and metrics.json; the card then says how it was made; model.pt."""
    tune = data.tune_images.images
    by_path = {r.path: r for r in data.protocol.tune}
    records = [by_path[path] for path in tune.paths]
    card, p = finish_tuning(
        model, tune, records, cfg.calibration, cfg.threshold_rule, cfg.data.seed
    )
    images = [(str(r.path), tune.digests[i], r.group, r.label) for i, r in enumerate(records)]
    write_predictions(run / TUNING_PREDICTIONS, images, card.classes, p)
    (run / "metrics.json").write_text(json.dumps(card.metrics, indent=2))
    model.card = stamped(
        dataclasses.replace(
            card,
            data_fingerprint=data.fingerprint,
            recipe={
                "precision": precision,
                "size": data.prep.size,
                "epochs_run": epochs,
                **{k: v for k, v in dataclasses.asdict(cfg.optim).items()},
                "augment": cfg.data.augment,
                "balance": cfg.data.balance,
            },
            population=training_population(data),
            overlap=overlap_keys(data),
        )
    )
    save_model(run / "model.pt", model)
