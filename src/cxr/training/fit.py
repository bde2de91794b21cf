"""`fit(config)`: one training run from config to a run folder holding a self-describing model."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from cxr.evaluation.calibration import fit_temperature, scale
from cxr.evaluation.metrics import auroc, expected_calibration_error, one_vs_rest_auroc
from cxr.inference.probabilities import logits_of
from cxr.models import create_model, model_spec, save_model
from cxr.outputs import new_output_dir
from cxr.training.config import TrainConfig
from cxr.training.datamodule import XrayDataModule
from cxr.training.features import ProbeDataModule
from cxr.training.module import XrayClassifier
from cxr.training.thresholds import choose_threshold


def positive_index(classes: list[str]) -> int:
    """The class a binary threshold is about: whichever is not 'normal' (else the second)."""
    normal = [i for i, c in enumerate(classes) if c.lower() == "normal"]
    return 1 - normal[0] if len(classes) == 2 and normal else 1


def fit(cfg: TrainConfig) -> Path:
    L.seed_everything(cfg.data.seed, workers=True)
    spec = model_spec(cfg.model.name)
    prep = spec.preprocessing
    if cfg.model.size:
        prep = dataclasses.replace(prep, size=cfg.model.size)
    if cfg.model.strategy == "linear_probe":
        bf16 = "bf16" in str(cfg.trainer.precision)
        data = ProbeDataModule(cfg.data, prep, bf16, cfg.trainer.channels_last)
    else:
        data = XrayDataModule(cfg.data, prep)
    model = create_model(
        cfg.model.name,
        pretrained=cfg.model.pretrained,
        num_classes=len(data.classes),
        in_chans=1,
        **cfg.model.args,
    )
    model.preprocessing = prep
    if rank_zero_only.rank == 0:
        run = new_output_dir(Path(cfg.runs_dir), cfg.name)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    else:  # other DDP ranks write nothing; ModelCheckpoint takes rank 0's folder by broadcast
        run = Path(cfg.runs_dir) / f".{cfg.name}-rank{rank_zero_only.rank}"
    weights = data.class_weights() if cfg.data.balance == "weighted_loss" else None
    module = XrayClassifier(
        model,
        cfg.optim,
        cfg.model.strategy,
        weights,
        run / "history.csv",
        channels_last=cfg.trainer.channels_last,
    )
    best = ModelCheckpoint(
        dirpath=run / "lightning", filename="best", monitor="val_auroc", mode="max", save_top_k=1
    )
    trainer = L.Trainer(
        max_epochs=cfg.optim.epochs,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy,
        precision=cfg.trainer.precision,
        callbacks=[best, EarlyStopping("val_auroc", mode="max", patience=cfg.optim.patience)],
        default_root_dir=run,
        logger=False,
        num_sanity_val_steps=0,
        deterministic=True,
        log_every_n_steps=10,
    )
    trainer.fit(module, datamodule=data)
    if not trainer.is_global_zero:
        return run
    state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    _finish(run, cfg, data, module.model.cpu().to(memory_format=torch.contiguous_format).eval())
    (run / "lightning" / "best.ckpt").unlink()  # model.pt holds the same weights, self-described
    return run


def _finish(run: Path, cfg: TrainConfig, data: XrayDataModule, model) -> None:
    """Validation predictions of the best epoch, calibrated by a temperature fitted on them, the
    threshold chosen on the calibrated probabilities, and model.pt holding all of it."""
    logits = logits_of(model, data.val_images, cfg.data.batch_size)
    y = np.asarray(data.val_images.targets)
    model.temperature = fit_temperature(logits, y)
    raw, p = scale(logits, 1.0), scale(logits, model.temperature)
    classes = data.classes
    threshold = None
    metrics = {
        "val_auroc": auroc(y, p),
        "val_accuracy": float((p.argmax(1) == y).mean()),
        "temperature": model.temperature,
    }
    if len(classes) == 2:
        pos = positive_index(classes)
        truth = (y == pos).astype(int)
        threshold = {
            "rule": cfg.threshold_rule,
            "positive_class": classes[pos],
            "value": choose_threshold(truth, p[:, pos], cfg.threshold_rule),
        }
        decided = p[:, pos] >= threshold["value"]
        metrics |= {
            "val_sensitivity": float(decided[truth == 1].mean()),
            "val_specificity": float((~decided[truth == 0]).mean()),
            "val_accuracy_at_threshold": float((decided == truth.astype(bool)).mean()),
            "val_ece_uncalibrated": expected_calibration_error(truth, raw[:, pos]),
            "val_ece": expected_calibration_error(truth, p[:, pos]),
        }
    else:
        metrics |= {f"val_auroc_{c}": one_vs_rest_auroc(y, p, i) for i, c in enumerate(classes)}
    by_path = {r.path: r for r in data.val_records}
    with (run / "val_predictions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "patient", "label", *[f"p_{c}" for c in classes]])
        for path, row in zip(data.val_images.images.paths, p, strict=True):
            record = by_path[path]
            writer.writerow([str(path), record.group, record.label, *[f"{v:.6f}" for v in row]])
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    save_model(
        run / "model.pt",
        model,
        {
            "classes": classes,
            "label_scheme": {"name": cfg.data.scheme, "negative": cfg.data.negative},
            "threshold": threshold,
            "data_fingerprint": data.fingerprint(),
            "strategy": cfg.model.strategy,
            "temperature": model.temperature,
            "data": dataclasses.asdict(cfg.data),
            "val_metrics": metrics,
        },
    )
