"""`cxr evaluate`: a frozen model on a labelled folder, with the preprocessing, calibration and
threshold its card carries; predictions, metrics with intervals and figures in a new folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from cxr.data.cache import PixelCache
from cxr.data.discovery import Dataset, Record, discover
from cxr.data.split import split_fingerprint
from cxr.data.xrays import CachedXrays
from cxr.errors import DatasetError
from cxr.evaluation import plots
from cxr.evaluation.overlap import INTERNAL_TEST, LEARNED_FROM, seen_in
from cxr.evaluation.predictions import Predictions, score
from cxr.evaluation.shift import SHIFT_JSON, shift_check
from cxr.inference.predictor import load_predictor
from cxr.models.card import ModelCard
from cxr.outputs import default_output_dir, must_be_new
from cxr.progress import Stages, silent
from cxr.spreadsheet import write_rows

PROTOCOL_PARTS = ("tuning", INTERNAL_TEST)


@dataclass
class Evaluation:
    out: Path
    predictions: Predictions
    scores: dict
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    shift: dict | None = None  # figures under acquisition changes (`--shift`)


def _records(
    dataset: Dataset, split: str | None, card: ModelCard, warnings: list[str]
) -> list[Record]:
    splits = [s for s in dataset.splits if s]
    if split in PROTOCOL_PARTS:
        protocol = card.protocol(dataset)
        if split_fingerprint(protocol, dataset.root) != card.data_fingerprint:
            warnings.append(
                f"{dataset.root} does not hold the files this model was trained on (data "
                f"fingerprints differ): this {split!r} part is not the one it was made with"
            )
        return protocol.part(split)
    if split is None:
        if splits:
            raise DatasetError(
                f"{dataset.root} has splits {', '.join(splits)}: choose one with --split "
                f"(or --split {INTERNAL_TEST} for the model's own held-out patients)"
            )
        return dataset.records
    chosen = [r for r in dataset.records if r.split == split]
    if not chosen:
        raise DatasetError(
            f"{dataset.root}: no split {split!r}; it has {', '.join(splits) or 'no splits'} "
            f"(and {', '.join(PROTOCOL_PARTS)})"
        )
    if split == "train":
        warnings.append("these are training images: the numbers say nothing about new patients")
    return chosen


def evaluate(
    model: Path,
    root: Path,
    split: str | None = None,
    out: Path | None = None,
    threshold: float | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    workers: int = 0,
    progress: Stages = silent,
    label_map: dict[str, str] | None = None,
    shift: bool = False,
    unseen_only: bool = False,
) -> Evaluation:
    if out is not None:
        must_be_new(out)
    predictor = load_predictor(Path(model))
    card = predictor.card
    dataset = discover(root, card.label_scheme_object())
    warnings: list[str] = []
    records = _records(dataset, split, card, warnings)
    if label_map:
        unknown_targets = sorted(set(label_map.values()) - set(card.classes))
        if unknown_targets:
            raise DatasetError(f"--label-map names {unknown_targets}, not classes of the model")
        records = [replace(r, label=label_map.get(r.label, r.label)) for r in records]
    unknown = sorted({r.label for r in records} - set(card.classes))
    if unknown:
        raise DatasetError(
            f"{dataset.root}: labels {unknown} are not among the model's classes "
            f"{list(card.classes)} (map them with --label-map {unknown[0]}=CLASS)"
        )
    prep = card.preprocessing
    images = PixelCache(prep.size, prep.resize).load(
        [r.path for r in records],
        workers=workers,
        progress=progress("reading images", len(records)),
    )
    if not len(images):
        raise DatasetError(f"{dataset.root}: none of the {len(records)} images could be read")
    by_path = {r.path: r for r in records}
    kept = [by_path[p] for p in images.paths]
    if split in PROTOCOL_PARTS or split == "train":
        part = {"train": "training", "tuning": "tuning", INTERNAL_TEST: INTERNAL_TEST}[split]
        seen = [part] * len(kept)
    else:
        seen, warning = seen_in(card, images, workers)
        if warning:
            warnings.append(warning)
    targets = [card.classes.index(r.label) for r in kept]
    loader = DataLoader(CachedXrays(images, targets, prep), batch_size=64)
    step = progress("predicting", len(kept))
    probs = []
    for x, _ in loader:
        probs.append(predictor.predict(x.numpy()))
        step(len(x))
    probs = np.concatenate(probs)
    digests = list(images.digests)
    if unseen_only:
        keep = [i for i, s in enumerate(seen) if s not in LEARNED_FROM]
        if "unknown" in seen:
            raise DatasetError(f"--unseen-only: {warnings[-1]}")
        if not keep:
            raise DatasetError("--unseen-only: every image is a training or tuning radiograph")
        warnings = [w for w in warnings if "training or tuning radiographs" not in w]
        warnings.append(
            f"--unseen-only: {len(kept) - len(keep)} of the model's own training or tuning "
            f"radiographs left out; {len(keep)} images scored"
        )
        kept, seen, digests = (
            [kept[i] for i in keep],
            [seen[i] for i in keep],
            [digests[i] for i in keep],
        )
        targets, probs = [targets[i] for i in keep], probs[keep]
    if threshold is not None:
        if card.threshold is None:
            raise DatasetError("--threshold applies to binary models only")
        warnings.append(
            f"THRESHOLD OVERRIDDEN: {threshold} instead of the tuning-chosen "
            f"{card.threshold.value:.4g} ({card.threshold.rule}); these numbers are not the model's"
        )
        card = card.with_threshold(threshold, "override (--threshold)")
    split_name = split or "all"
    predictions = Predictions(
        name=_name(Path(model)),
        card=card,
        paths=[str(r.path) for r in kept],
        digest=digests,
        patients=[r.group or "" for r in kept],
        labels=[r.label for r in kept],
        probs=np.round(probs, 6),  # what the CSV holds: every figure is computed from it
        split=split_name,
        data=str(dataset.root.resolve()),
        model_file=Path(model).resolve(),
        seen=seen,
        warnings=warnings,
    )
    history = Path(model).parent / "history.csv"
    predictions.history = history if history.is_file() else None
    scores = score(predictions, bootstrap, seed, progress)
    if out is None:
        out = default_output_dir("evaluate", f"{predictions.name}-{split_name}")
    else:
        out.mkdir(parents=True)
    predictions.write_csv(out / "predictions.csv")
    failures = [(str(f.path), f.reason) for f in images.failures]
    if failures:
        with (out / "failures.csv").open("w", newline="") as fh:
            write_rows(fh, [("path", "reason"), *failures])
    info = {
        "name": predictions.name,
        "model": str(predictions.model_file),
        "data": predictions.data,
        "split": split_name,
        "n_images": len(kept),
        "unreadable": len(failures),
        "warnings": warnings,
        "seen": {part: seen.count(part) for part in dict.fromkeys(seen)},
        **scores,
        "card": {k: v for k, v in card.to_dict().items() if k != "overlap"},  # keys: 100 KB
    }
    (out / "metrics.json").write_text(json.dumps(info, indent=2, default=_json))
    save_figures(predictions, out)
    shifted = None
    if shift:
        rows = np.stack([images[i] for i in range(len(images))])
        shifted = shift_check(predictor, rows, np.array(targets), predictions.probs, seed)
        (out / SHIFT_JSON).write_text(json.dumps(shifted, indent=2))
        plots.shift_figure(shifted).savefig(out / "shift.png", dpi=110)
    return Evaluation(out, predictions, scores, failures, warnings, shifted)


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
