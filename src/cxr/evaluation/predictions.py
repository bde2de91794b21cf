"""A model's probabilities on a set of labelled images, as `cxr evaluate` writes them and a run's
`val_predictions.csv` holds them, and the numbers `score` draws from them. Compare and report read
either kind of folder through `load_predictions`, so every figure comes from one computation."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxr.errors import CxrError
from cxr.metrics.classification import binary_metrics, multiclass_metrics, one_vs_rest_auroc
from cxr.metrics.stats import bootstrap_intervals, patient_groups, proportion_interval
from cxr.metrics.thresholds import operating_points
from cxr.models.card import ModelCard, normal_index
from cxr.models.io import MODEL_FILE, read_card
from cxr.progress import Stages, silent
from cxr.spreadsheet import read_cell, write_predictions

RUN_PREDICTIONS = "tuning_predictions.csv"
EVAL_PREDICTIONS = "predictions.csv"


@dataclass
class Predictions:
    name: str
    card: ModelCard  # the model's rules: positive class, decision, calibration, data
    paths: list[str]
    digest: list[str]  # what identifies an image: its bytes, never the path typed
    patients: list[str]
    labels: list[str]
    probs: np.ndarray  # (n, classes), calibrated as the card says
    split: str  # what the images are: "internal-test", "tuning", "test", ...
    data: str = ""  # the folder they came from
    model_file: Path | None = None
    history: Path | None = None
    # per image, whether it is the model's own "training" / "tuning" / "internal-test"
    # radiograph or "no" (see cxr.evaluation.overlap.seen_in); None where nobody checked
    seen: list[str] | None = None
    warnings: list[str] = field(default_factory=list)  # the evaluation's, to travel with it

    @property
    def learned_from(self) -> int:
        """How many of these images the model trained or was tuned on (0 where unchecked)."""
        if self.split in {"tuning", "train"}:
            return len(self.paths)
        return sum(s in {"training", "tuning"} for s in self.seen or ())

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    @property
    def threshold(self):
        return self.card.threshold

    @property
    def targets(self) -> np.ndarray:
        return np.array([self.classes.index(label) for label in self.labels])

    @property
    def described(self) -> str:
        """The images in words: "tuning", "internal-test", "all of <folder>"."""
        if self.split == "all" and self.data:
            return f"all of {Path(self.data).name}"
        return self.split

    @property
    def binary(self) -> bool:
        return self.card.binary

    @property
    def positive(self) -> int | None:
        return self.card.positive

    def binary_view(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(truth, score) of the positive class, or normal against the rest; None if neither."""
        rows = slice(None) if rows is None else rows
        if not self.binary and normal_index(self.classes) is None:
            return None
        return self.card.binary_view(self.targets[rows], self.probs[rows])

    def decisions(self) -> np.ndarray:
        """Predicted class index: the card's threshold for a binary model, else the arg-max."""
        return self.card.decide(self.probs)

    def write_csv(self, path: Path) -> None:
        """`predictions.csv`: the probabilities, the decision, its threshold and whether the
        model saw each image."""
        value = getattr(self.threshold, "value", None) if self.binary else None
        n = len(self.paths)
        images = list(zip(self.paths, self.digest, self.patients, self.labels, strict=True))
        extra = {
            "predicted": [self.classes[k] for k in self.decisions()],
            "threshold": ["" if value is None else f"{value:.6g}"] * n,
            "seen": self.seen or ["unknown"] * n,
        }
        write_predictions(path, images, self.classes, self.probs, extra)


def read_predictions_csv(path: Path, card: ModelCard) -> dict[str, list]:
    """Columns of any predictions CSV of ours, checked against the model's classes. The
    probabilities are read as written (6 decimals), so every later number comes from them."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        found = [c.removeprefix("p_") for c in reader.fieldnames or [] if c.startswith("p_")]
    if not rows or not found:
        raise CxrError(f"{path}: no predictions in it")
    if found != list(card.classes):
        raise CxrError(f"{path}: columns for {found}, but the model predicts {list(card.classes)}")
    return {
        "paths": [read_cell(r["path"]) for r in rows],
        "digest": [r.get("digest") or "" for r in rows],
        "patients": [read_cell(r["patient"]) for r in rows],
        "labels": [read_cell(r["label"]) for r in rows],
        "probs": np.array([[float(r[f"p_{c}"]) for c in card.classes] for r in rows]),
        "seen": [r["seen"] for r in rows] if "seen" in (reader.fieldnames or []) else None,
    }


def load_predictions(folder: Path) -> Predictions:
    """A training run folder (its tuning predictions) or a `cxr evaluate` output folder; the
    card comes from the folder itself, so it still reads when the model file has moved."""
    folder = Path(folder)
    if (folder / EVAL_PREDICTIONS).is_file():
        info = json.loads((folder / "metrics.json").read_text())
        card = ModelCard.from_dict(info["card"])
        csv_path, model_file = folder / EVAL_PREDICTIONS, Path(info["model"])
        split, name, data = info["split"], info["name"], info.get("data", "")
        warnings = list(info.get("warnings", []))
    elif (folder / RUN_PREDICTIONS).is_file():
        csv_path, model_file = folder / RUN_PREDICTIONS, folder / MODEL_FILE
        card = read_card(model_file)
        split, name, data = "tuning", folder.name, card.data.get("root", "")
        warnings = ["the tuning split chose this model's epoch, calibration and threshold: its "
                    "figures are optimistic, not a held-out measurement"]  # fmt: skip
    else:
        raise CxrError(
            f"{folder}: neither a training run ({RUN_PREDICTIONS}) "
            f"nor a cxr evaluate output ({EVAL_PREDICTIONS})"
        )
    columns = read_predictions_csv(csv_path, card)
    history = model_file.parent / "history.csv"
    return Predictions(
        name=name,
        card=card,
        split=split,
        data=data,
        model_file=model_file,
        history=history if history.is_file() else None,
        warnings=warnings,
        **columns,
    )


def pairwise_auroc(targets: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float]:
    """For each pair of classes, AUROC among the images of those two classes only, on the
    relative score p_j / (p_i + p_j): e.g. bacterial against viral pneumonia."""
    out = {}
    y = np.asarray(targets)
    for i in range(len(classes)):
        for j in range(i + 1, len(classes)):
            keep = (y == i) | (y == j)
            score = probs[keep, j] / np.clip(probs[keep, i] + probs[keep, j], 1e-12, None)
            pair = np.stack([1 - score, score], axis=1)
            out[f"{classes[i]} vs {classes[j]}"] = one_vs_rest_auroc(
                (y[keep] == j).astype(int), pair, 1
            )
    return out


def _point(p: Predictions, rows: np.ndarray) -> dict[str, float]:
    y, probs = p.targets[rows], p.probs[rows]
    if p.binary:
        numbers = binary_metrics(*p.binary_view(rows), p.card.threshold_value)
        return {k: v for k, v in numbers.items() if isinstance(v, float)}
    numbers = multiclass_metrics(y, probs, p.classes)
    out = {k: v for k, v in numbers.items() if isinstance(v, float)}
    out |= {f"auroc_{c}": v["auroc"] for c, v in numbers["per_class"].items()}
    out |= {f"auroc {pair}": v for pair, v in pairwise_auroc(y, probs, p.classes).items()}
    return out


def score(p: Predictions, bootstrap: int = 1000, seed: int = 0, progress: Stages = silent) -> dict:
    """Point metrics, their patient-level bootstrap intervals (exact ones where the bootstrap
    degenerates), operating points at target sensitivities for a binary model, and for a
    multi-class model the confusion matrix, class pairs and the normal-vs-abnormal view."""
    everything = np.arange(len(p.labels))
    if p.binary:
        point = binary_metrics(*p.binary_view(), p.card.threshold_value)
        decided = p.decisions()
        point["confusion_matrix"] = [
            [int(((p.targets == t) & (decided == d)).sum()) for d in range(2)] for t in range(2)
        ]
    else:
        point = multiclass_metrics(p.targets, p.probs, p.classes)
        point["pairwise_auroc"] = pairwise_auroc(p.targets, p.probs, p.classes)
        view = p.binary_view()
        if view is not None:
            point["abnormal_vs_normal"] = binary_metrics(*view, p.card.threshold_value)
    groups = patient_groups(p.patients)
    step = progress(f"{p.name}: bootstrap", bootstrap)
    ci = bootstrap_intervals(
        lambda rows: _point(p, rows), len(everything), groups, bootstrap, seed, step=step
    )
    unit = "patient" if groups else "image"
    methods = {key: f"{unit} bootstrap" for key in ci}
    for key, (k, n) in _proportions(p, point).items():
        ci[key], methods[key] = proportion_interval(ci.get(key), k, n, f"{unit} bootstrap")
    out = {
        "metrics": point,
        "ci95": ci,
        "ci_method": methods,
        "bootstrap": {"resamples": bootstrap, "seed": seed, "unit": unit},
    }
    tuning = tuning_view(p.card)
    if p.binary and tuning is not None:
        truth, s = p.binary_view()
        out["operating_points"] = operating_points(
            tuning, (truth, s, groups), n=bootstrap, seed=seed
        )
    return out


def _proportions(p: Predictions, m: dict) -> dict[str, tuple[int, int]]:
    """(successes, cases) behind each proportion the scores report."""
    if not p.binary:
        return {"accuracy": (round(m["accuracy"] * m["n"]), m["n"])}
    tp, fp, tn, fn = m["tp"], m["fp"], m["tn"], m["fn"]
    counts = {
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "accuracy": (tp + tn, m["n"]),
        "precision": (tp, tp + fp),
        "npv": (tn, tn + fn),
    }
    return {key: kn for key, kn in counts.items() if kn[1] > 0}


def tuning_view(card: ModelCard) -> tuple[np.ndarray, np.ndarray, list[str] | None] | None:
    """(is positive, P(positive), patient) of the tuning split the card carries, for a binary
    model; patients from the card, else rebuilt from its protocol, else None (image bootstrap)."""
    tuning = card.tuning
    if not card.binary or not tuning.get("targets"):
        return None
    targets, probs = np.asarray(tuning["targets"]), np.asarray(tuning["probs"], float)
    truth, score_ = card.binary_view(targets, probs)
    patients = tuning.get("patients")
    if not patients:
        try:
            records = card.protocol().tune
        except CxrError:
            records = []
        labels = [card.classes[t] for t in targets]
        if [r.label for r in records] == labels:  # the same images in the same order
            patients = [r.group for r in records]
    return truth, score_, patients or None
