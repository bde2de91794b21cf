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
from cxr.evaluation.metrics import binary_metrics, multiclass_metrics, one_vs_rest_auroc
from cxr.evaluation.stats import bootstrap_intervals
from cxr.inference.predictor import load_predictor
from cxr.models.io import read_model_file, run_data_settings

RUN_PREDICTIONS = "val_predictions.csv"
EVAL_PREDICTIONS = "predictions.csv"
NORMAL = "normal"


@dataclass
class Predictions:
    name: str
    classes: list[str]
    paths: list[str]
    patients: list[str]
    labels: list[str]
    probs: np.ndarray  # (n, classes), calibrated as the model file says
    threshold: dict | None  # {"rule", "positive_class", "value", "source"} for binary models
    split: str  # what the images are: "validation (patient-grouped)", "test", ...
    model_file: Path | None = None
    history: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def targets(self) -> np.ndarray:
        return np.array([self.classes.index(label) for label in self.labels])

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def positive(self) -> int:
        if self.threshold:
            return self.classes.index(self.threshold["positive_class"])
        normal = [i for i, c in enumerate(self.classes) if c.lower() == NORMAL]
        return 1 - normal[0] if self.binary and normal else 1

    def abnormal_view(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Normal against anything else: truth and P(not normal), for any number of classes."""
        normal = [i for i, c in enumerate(self.classes) if c.lower() == NORMAL]
        if not normal:
            return None
        return (self.targets != normal[0]).astype(int), 1 - self.probs[:, normal[0]]

    def decisions(self) -> np.ndarray:
        """Predicted class index: the frozen threshold for a binary model, else the arg-max."""
        if self.binary and self.threshold:
            pos = self.positive
            return np.where(self.probs[:, pos] >= self.threshold["value"], pos, 1 - pos)
        return self.probs.argmax(1)

    def write_csv(self, path: Path) -> None:
        predicted = self.decisions()
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["path", "patient", "label", *[f"p_{c}" for c in self.classes], "predicted"]
            )
            for i, row in enumerate(self.probs):
                writer.writerow(
                    [
                        self.paths[i],
                        self.patients[i],
                        self.labels[i],
                        *[f"{v:.6f}" for v in row],
                        self.classes[predicted[i]],
                    ]
                )


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        classes = [c.removeprefix("p_") for c in reader.fieldnames or [] if c.startswith("p_")]
    if not rows or not classes:
        raise CxrError(f"{path}: no predictions in it")
    return classes, rows


def load_predictions_csv(
    path: Path, classes: list[str] | None = None, threshold: dict | None = None
) -> Predictions:
    """Any predictions CSV of ours (path, patient, label, p_<class>...); with `classes`, for a
    model predicting exactly those."""
    found, rows = _read_csv(path)
    classes = classes or found
    if found != classes:
        raise CxrError(f"{path}: columns for {found}, but the model predicts {classes}")
    return Predictions(
        name=path.parent.name,
        classes=classes,
        paths=[r["path"] for r in rows],
        patients=[r["patient"] for r in rows],
        labels=[r["label"] for r in rows],
        probs=np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows]),
        threshold=threshold,
        split="validation",
    )


def load_predictions(folder: Path) -> Predictions:
    """A training run folder (its validation predictions) or a `cxr evaluate` output folder."""
    folder = Path(folder)
    if (folder / EVAL_PREDICTIONS).is_file():
        info = json.loads((folder / "metrics.json").read_text())
        csv_path, model_file = folder / EVAL_PREDICTIONS, Path(info["checkpoint"])
        threshold, split, name = info.get("threshold"), info["split"], info["name"]
    elif (folder / RUN_PREDICTIONS).is_file():
        csv_path, model_file = folder / RUN_PREDICTIONS, folder / "model.pt"
        threshold = read_model_file(model_file).get("threshold")
        if threshold:
            threshold = {**threshold, "source": "checkpoint"}
        split, name = "validation (patient-grouped)", folder.name
    else:
        raise CxrError(
            f"{folder}: neither a training run ({RUN_PREDICTIONS}) "
            f"nor a cxr evaluate output ({EVAL_PREDICTIONS})"
        )
    p = load_predictions_csv(csv_path, threshold=threshold)
    p.name, p.split, p.model_file = name, split, model_file
    if model_file.is_file():
        p.meta = (
            load_predictor(model_file).meta
            if model_file.suffix == ".onnx"
            else dict(read_model_file(model_file))
        )
        p.meta.pop("state_dict", None)
        p.meta["data"] = p.meta.get("data") or run_data_settings(model_file)
    history = model_file.parent / "history.csv"
    p.history = history if history.is_file() else None
    return p


def pairwise_auroc(p: Predictions) -> dict[str, float]:
    """For each pair of classes, AUROC among the images of those two classes only, on the
    relative score p_j / (p_i + p_j): e.g. bacterial against viral pneumonia."""
    out = {}
    y = p.targets
    for i in range(len(p.classes)):
        for j in range(i + 1, len(p.classes)):
            keep = (y == i) | (y == j)
            score = p.probs[keep, j] / np.clip(p.probs[keep, i] + p.probs[keep, j], 1e-12, None)
            pair = np.stack([1 - score, score], axis=1)
            out[f"{p.classes[i]} vs {p.classes[j]}"] = one_vs_rest_auroc(
                (y[keep] == j).astype(int), pair, 1
            )
    return out


def _point(p: Predictions, rows: np.ndarray) -> dict[str, float]:
    y, probs = p.targets[rows], p.probs[rows]
    if p.binary:
        truth = (y == p.positive).astype(int)
        value = p.threshold["value"] if p.threshold else 0.5
        numbers = binary_metrics(truth, probs[:, p.positive], value)
        return {k: v for k, v in numbers.items() if isinstance(v, float)}
    numbers = multiclass_metrics(y, probs, p.classes)
    out = {k: v for k, v in numbers.items() if isinstance(v, float)}
    out |= {f"auroc_{c}": v["auroc"] for c, v in numbers["per_class"].items()}
    return out


def score(p: Predictions, bootstrap: int = 1000, seed: int = 0) -> dict:
    """Point metrics, their patient-level bootstrap intervals, and for a multi-class model the
    confusion matrix, class pairs and the normal-vs-abnormal view."""
    everything = np.arange(len(p.labels))
    if p.binary:
        value = p.threshold["value"] if p.threshold else 0.5
        point = binary_metrics((p.targets == p.positive).astype(int), p.probs[:, p.positive], value)
        decided = p.decisions()
        point["confusion_matrix"] = [
            [int(((p.targets == t) & (decided == d)).sum()) for d in range(2)] for t in range(2)
        ]
    else:
        point = multiclass_metrics(p.targets, p.probs, p.classes)
        point["pairwise_auroc"] = pairwise_auroc(p)
        view = p.abnormal_view()
        if view is not None:
            point["abnormal_vs_normal"] = binary_metrics(*view, 0.5)
    groups = p.patients if all(p.patients) else None
    ci = bootstrap_intervals(lambda rows: _point(p, rows), len(everything), groups, bootstrap, seed)
    return {
        "metrics": point,
        "ci95": ci,
        "bootstrap": {
            "resamples": bootstrap,
            "seed": seed,
            "unit": "patient" if groups else "image",
        },
    }
