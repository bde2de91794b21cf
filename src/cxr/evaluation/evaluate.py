"""`cxr evaluate`: a frozen model on a labelled folder, with the preprocessing, temperature and
threshold its file carries; predictions, metrics with intervals and figures in a new folder."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from cxr.data.cache import PixelCache
from cxr.data.discovery import Dataset, Record, discover
from cxr.data.labels import LabelScheme
from cxr.data.split import split_fingerprint, training_split
from cxr.data.xrays import CachedXrays
from cxr.errors import DatasetError
from cxr.evaluation import plots
from cxr.evaluation.predictions import Predictions, score
from cxr.inference.predictor import load_predictor
from cxr.models.io import run_data_settings
from cxr.outputs import new_output_dir

VALIDATION = "validation"  # the checkpoint's own patient-grouped validation split, rebuilt


@dataclass
class Evaluation:
    out: Path
    predictions: Predictions
    scores: dict
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _records(
    dataset: Dataset, split: str | None, meta: dict, data: dict | None, warnings: list[str]
) -> list[Record]:
    splits = [s for s in dataset.splits if s]
    if split == VALIDATION:
        if not data:
            raise DatasetError(
                "this model file records no validation split and has no run config.yaml beside "
                "it; name a split folder instead"
            )
        train, val = training_split(dataset, data["val_fraction"], data["seed"], data.get("limit"))
        if split_fingerprint(train, val, dataset.root) != meta.get("data_fingerprint"):
            warnings.append(
                f"{dataset.root} does not hold the files this model was trained on (data "
                "fingerprints differ): this 'validation' split is not the one it was chosen on"
            )
        return val
    if split is None:
        if splits:
            raise DatasetError(
                f"{dataset.root} has splits {', '.join(splits)}: choose one with --split "
                f"(or --split {VALIDATION} for the model's own patient-grouped validation split)"
            )
        return dataset.records
    chosen = [r for r in dataset.records if r.split == split]
    if not chosen:
        raise DatasetError(
            f"{dataset.root}: no split {split!r}; it has {', '.join(splits) or 'no splits'} "
            f"(and --split {VALIDATION})"
        )
    if split == "train":
        warnings.append("these are training images: the numbers say nothing about new patients")
    return chosen


def evaluate(
    checkpoint: Path,
    root: Path,
    split: str | None = None,
    out: Path | None = None,
    threshold: float | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Evaluation:
    predictor = load_predictor(Path(checkpoint))
    meta = predictor.meta
    classes = meta["classes"]
    scheme = meta.get("label_scheme") or {}
    dataset = discover(root, LabelScheme(scheme.get("name", "folder"), scheme.get("negative")))
    warnings: list[str] = []
    records = _records(
        dataset, split, meta, meta.get("data") or run_data_settings(Path(checkpoint)), warnings
    )
    unknown = sorted({r.label for r in records} - set(classes))
    if unknown:
        raise DatasetError(
            f"{dataset.root}: labels {unknown} are not among the model's classes {classes}"
        )
    prep = predictor.preprocessing
    images = PixelCache(prep.size, prep.resize).load(
        [r.path for r in records], workers=workers, progress=progress
    )
    if not len(images):
        raise DatasetError(f"{dataset.root}: none of the {len(records)} images could be read")
    by_path = {r.path: r for r in records}
    kept = [by_path[p] for p in images.paths]
    targets = [classes.index(r.label) for r in kept]
    loader = DataLoader(CachedXrays(images, targets, prep, None), batch_size=64)
    probs = np.concatenate([predictor.predict(x.numpy()) for x, _ in loader])
    stored = meta.get("threshold")
    frozen = None
    if stored:
        frozen = {**stored, "source": "checkpoint"}
        if threshold is not None:
            warnings.append(
                f"THRESHOLD OVERRIDDEN: {threshold} instead of the validation-chosen "
                f"{stored['value']:.4g} ({stored['rule']}); these numbers are not the model's"
            )
            frozen = {**stored, "value": threshold, "source": "override (--threshold)"}
    split_name = split or "all"
    predictions = Predictions(
        name=_name(Path(checkpoint)),
        classes=classes,
        paths=[str(r.path) for r in kept],
        patients=[r.group or "" for r in kept],
        labels=[r.label for r in kept],
        probs=probs,
        threshold=frozen,
        split=split_name,
        model_file=Path(checkpoint).resolve(),
        meta=dict(meta),
    )
    history = Path(checkpoint).parent / "history.csv"
    predictions.history = history if history.is_file() else None
    scores = score(predictions, bootstrap, seed)
    out = out or new_output_dir(Path("evaluations"), f"{predictions.name}-{split_name}")
    out.mkdir(parents=True, exist_ok=True)
    predictions.write_csv(out / "predictions.csv")
    failures = [(str(f.path), f.reason) for f in images.failures]
    if failures:
        with (out / "failures.csv").open("w", newline="") as fh:
            csv.writer(fh).writerows([("path", "reason"), *failures])
    info = {
        "name": predictions.name,
        "checkpoint": str(predictions.model_file),
        "data": str(dataset.root.resolve()),
        "split": split_name,
        "classes": classes,
        "threshold": frozen,
        "temperature": meta.get("temperature"),
        "n_images": len(kept),
        "unreadable": len(failures),
        "warnings": warnings,
        **scores,
    }
    (out / "metrics.json").write_text(json.dumps(info, indent=2, default=_json))
    save_figures(predictions, out)
    return Evaluation(out, predictions, scores, failures, warnings)


def _name(checkpoint: Path) -> str:
    """A run's folder name for its model.pt, else the file's own name."""
    return checkpoint.parent.name if checkpoint.name == "model.pt" else checkpoint.stem


def _json(value):
    return float(value) if isinstance(value, np.floating) else str(value)


def save_figures(p: Predictions, out: Path) -> list[Path]:
    figures = {name: fig for name, (_, fig) in plots.evaluation_figures(p).items()}
    if p.history:
        figures["learning_curves"] = plots.learning_curves_figure(p.history)
    paths = []
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=110)
        paths.append(out / f"{name}.png")
    return paths
