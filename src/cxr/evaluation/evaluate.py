"""`cxr evaluate`: a frozen model on a labelled folder, with the preprocessing, calibration and
threshold its card carries; predictions, metrics with intervals and figures in a new folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from torch import nn
from torch.utils.data import DataLoader

from cxr.data.cache import CachedImages, PixelCache
from cxr.data.discovery import Dataset, Record, discover
from cxr.data.split import INTERNAL_TEST, split_fingerprint
from cxr.data.xrays import CachedXrays
from cxr.errors import DatasetError
from cxr.evaluation import plots
from cxr.evaluation.external import Judged
from cxr.evaluation.overlap import LEARNED_FROM, seen_in
from cxr.evaluation.predictions import Predictions, score
from cxr.evaluation.shift import SHIFT_JSON, shift_check
from cxr.inference.predictor import Predictor, TorchPredictor, load_predictor
from cxr.models.card import ModelCard
from cxr.models.io import run_name
from cxr.outputs import default_output_dir, must_be_new
from cxr.progress import Stages, silent
from cxr.spreadsheet import write_rows

PROTOCOL_PARTS = ("tuning", INTERNAL_TEST)
# what a split of the model's own data is to it (`seen`): no lookup needed
OWN_PARTS = {"train": "training", "tuning": "tuning", INTERNAL_TEST: INTERNAL_TEST}


@dataclass
class Evaluation:
    out: Path
    predictions: Predictions
    scores: dict
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    shift: dict | None = None  # figures under acquisition changes (`--shift`)
    external: Judged | None = None  # the model on its config's external judge (`cxr study`)


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
    """`model` (a file) on `root`'s `split`: its records found, scored, and written to `out`."""
    if out is not None:
        must_be_new(out)
    predictor = load_predictor(Path(model))
    card = predictor.card
    dataset = discover(root, card.label_scheme_object())
    warnings: list[str] = []
    records = _labelled(_records(dataset, split, card, warnings), card, label_map)
    _check_labels(records, card, dataset.root)
    images, kept = _read(card, records, dataset.root, workers, progress)
    seen = _seen(split, card, images, workers, warnings)
    scored = _predict(predictor, images, kept, seen, progress)
    if unseen_only:
        scored = _unseen_only(scored, warnings)
    if threshold is not None:
        card = _overridden(card, threshold, warnings)
    evaluation = _publish(
        scored,
        card,
        split or "all",
        Path(model),
        dataset.root,
        out,
        warnings,
        bootstrap,
        seed,
        progress,
    )
    if shift:
        evaluation.shift = _shift(predictor, scored, evaluation, seed)
    return evaluation


def evaluate_trained(
    model: nn.Module,
    model_file: Path,
    root: Path,
    records: list[Record],
    out: Path,
    bootstrap: int = 1000,
    workers: int = 0,
    progress: Stages = silent,
) -> Evaluation:
    """A model just trained on its internal-test `records` of the data at `root`, from what
    training holds in memory (no reload of `model_file`, no second discovery or split): the
    figures `evaluate(model_file, root, INTERNAL_TEST, out)` gives."""
    must_be_new(out)
    predictor = TorchPredictor(model, model_file)
    _check_labels(records, predictor.card, root)
    images, kept = _read(predictor.card, records, root, workers, progress)
    scored = _predict(predictor, images, kept, [INTERNAL_TEST] * len(kept), progress)
    card = predictor.card
    return _publish(scored, card, INTERNAL_TEST, model_file, root, out, [], bootstrap, 0, progress)


@dataclass
class Scored:
    """The readable images of an evaluation: their records, which part of the model's own data
    each is (`seen`), and the model's probabilities."""

    images: CachedImages
    kept: list[Record]
    seen: list[str]
    targets: list[int]
    probs: np.ndarray
    digests: list[str]


def _labelled(
    records: list[Record], card: ModelCard, label_map: dict[str, str] | None
) -> list[Record]:
    if not label_map:
        return records
    unknown_targets = sorted(set(label_map.values()) - set(card.classes))
    if unknown_targets:
        raise DatasetError(f"--label-map names {unknown_targets}, not classes of the model")
    return [replace(r, label=label_map.get(r.label, r.label)) for r in records]


def _check_labels(records: list[Record], card: ModelCard, root: Path) -> None:
    unknown = sorted({r.label for r in records} - set(card.classes))
    if unknown:
        raise DatasetError(
            f"{root}: labels {unknown} are not among the model's classes "
            f"{list(card.classes)} (map them with --label-map {unknown[0]}=CLASS)"
        )


def _read(
    card: ModelCard, records: list[Record], root: Path, workers: int, progress: Stages
) -> tuple[CachedImages, list[Record]]:
    """The readable images of `records` at the card's input, and their records."""
    prep = card.preprocessing
    images = PixelCache(prep.size, prep.resize).load(
        [r.path for r in records],
        workers=workers,
        progress=progress("reading images", len(records)),
    )
    if not len(images):
        raise DatasetError(f"{root}: none of the {len(records)} images could be read")
    by_path = {r.path: r for r in records}
    return images, [by_path[p] for p in images.paths]


def _seen(
    split: str | None, card: ModelCard, images: CachedImages, workers: int, warnings: list[str]
) -> list[str]:
    """Which part of the model's own data each image is: the split's, if it is one of them,
    else looked up by content in the card's keys."""
    if split in OWN_PARTS:
        return [OWN_PARTS[split]] * len(images)
    seen, warning = seen_in(card, images, workers)
    if warning:
        warnings.append(warning)
    return seen


def _predict(
    predictor: Predictor,
    images: CachedImages,
    kept: list[Record],
    seen: list[str],
    progress: Stages,
) -> Scored:
    card = predictor.card
    targets = [card.classes.index(r.label) for r in kept]
    loader = DataLoader(CachedXrays(images, targets, card.preprocessing), batch_size=64)
    step = progress("predicting", len(kept))
    probs = []
    for x, _ in loader:
        probs.append(predictor.predict(x.numpy()))
        step(len(x))
    return Scored(images, kept, seen, targets, np.concatenate(probs), list(images.digests))


def _unseen_only(scored: Scored, warnings: list[str]) -> Scored:
    """`--unseen-only`: the model's own training and tuning radiographs left out, said so."""
    seen, kept = scored.seen, scored.kept
    keep = [i for i, s in enumerate(seen) if s not in LEARNED_FROM]
    if "unknown" in seen:
        raise DatasetError(f"--unseen-only: {warnings[-1]}")
    if not keep:
        raise DatasetError("--unseen-only: every image is a training or tuning radiograph")
    warnings[:] = [w for w in warnings if "training or tuning radiographs" not in w]
    warnings.append(
        f"--unseen-only: {len(kept) - len(keep)} of the model's own training or tuning "
        f"radiographs left out; {len(keep)} images scored"
    )
    return replace(
        scored,
        kept=[kept[i] for i in keep],
        seen=[seen[i] for i in keep],
        targets=[scored.targets[i] for i in keep],
        probs=scored.probs[keep],
        digests=[scored.digests[i] for i in keep],
    )


def _overridden(card: ModelCard, threshold: float, warnings: list[str]) -> ModelCard:
    if card.threshold is None:
        raise DatasetError("--threshold applies to binary models only")
    warnings.append(
        f"THRESHOLD OVERRIDDEN: {threshold} instead of the tuning-chosen "
        f"{card.threshold.value:.4g} ({card.threshold.rule}); these numbers are not the model's"
    )
    return card.with_threshold(threshold, "override (--threshold)")


def _publish(
    scored: Scored,
    card: ModelCard,
    split_name: str,
    model: Path,
    data: Path,
    out: Path | None,
    warnings: list[str],
    bootstrap: int,
    seed: int,
    progress: Stages,
) -> Evaluation:
    """Scores with intervals; predictions.csv, failures.csv, metrics.json and figures in `out`."""
    kept, seen = scored.kept, scored.seen
    predictions = Predictions(
        name=run_name(model),
        card=card,
        paths=[str(r.path) for r in kept],
        digest=scored.digests,
        patients=[r.group for r in kept],
        labels=[r.label for r in kept],
        probs=np.round(scored.probs, 6),  # what the CSV holds: every figure is computed from it
        split=split_name,
        data=str(data.resolve()),
        model_file=model.resolve(),
        seen=seen,
        warnings=warnings,
    )
    history = model.parent / "history.csv"
    predictions.history = history if history.is_file() else None
    scores = score(predictions, bootstrap, seed, progress)
    if out is None:
        out = default_output_dir("evaluate", f"{predictions.name}-{split_name}")
    else:
        out.mkdir(parents=True)
    predictions.write_csv(out / "predictions.csv")
    failures = [(str(f.path), f.reason) for f in scored.images.failures]
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
    return Evaluation(out, predictions, scores, failures, warnings)


def _shift(predictor: Predictor, scored: Scored, evaluation: Evaluation, seed: int) -> dict:
    """`--shift`: the figures under acquisition changes, beside the evaluation's own."""
    images, out = scored.images, evaluation.out
    rows = np.stack([images[i] for i in range(len(images))])
    shifted = shift_check(
        predictor, rows, np.array(scored.targets), evaluation.predictions.probs, seed
    )
    (out / SHIFT_JSON).write_text(json.dumps(shifted, indent=2))
    plots.shift_figure(shifted).savefig(out / "shift.png", dpi=110)
    return shifted


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
