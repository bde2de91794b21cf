"""An INT8 export against its fp32 source on the model's own tuning patients: quantization shifts
the probabilities, so the threshold is chosen again (same rule, same images) and the two models'
decisions and AUROCs are recorded side by side in the INT8 file's card."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from cxr.data.split import split_fingerprint
from cxr.errors import CxrError
from cxr.inference.predict import predict_paths
from cxr.inference.predictor import Predictor
from cxr.metrics.classification import auroc
from cxr.metrics.thresholds import choose_threshold
from cxr.models.card import ModelCard


@dataclass(frozen=True)
class Agreement:
    images: int  # tuning images both models read
    identical_decisions: float  # share of images decided alike (each at its own threshold)
    fp32_auroc: float
    int8_auroc: float
    fp32_threshold: float | None
    int8_threshold: float | None  # re-chosen on the INT8 probabilities; None for multi-class

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        line = (
            f"INT8 vs fp32 on {self.images} tuning images: {100 * self.identical_decisions:.1f} % "
            f"identical decisions; AUROC {self.fp32_auroc:.4f} (fp32) vs {self.int8_auroc:.4f} "
            "(INT8)"
        )
        if self.int8_threshold is not None:
            line += f"; threshold {self.fp32_threshold:.4g} -> {self.int8_threshold:.4g}"
        return line


def _tuning_probs(predictor: Predictor, paths: list, order: dict[str, int]) -> np.ndarray:
    worklist = predict_paths(predictor, paths)
    if worklist.failures:
        raise CxrError(f"tuning images unreadable: {worklist.failures[:3]}")
    probs = np.zeros((len(order), len(predictor.card.classes)))
    for row in worklist.rows:
        probs[order[row.path]] = row.probs
    return probs


def rechoose_for_int8(fp32: Predictor, int8: Predictor) -> tuple[ModelCard, Agreement]:
    """The INT8 model's card with its threshold re-chosen on the tuning part, and the agreement."""
    card = fp32.card
    dataset = card.dataset_for()
    protocol = card.protocol(dataset)
    if split_fingerprint(protocol, dataset.root) != card.data_fingerprint:
        raise CxrError(
            f"{dataset.root} does not hold the files this model was trained on (data "
            "fingerprints differ), so its tuning patients cannot be rebuilt"
        )
    tune = protocol.tune
    paths = [r.path for r in tune]
    order = {str(p): i for i, p in enumerate(paths)}
    targets = np.array([card.classes.index(r.label) for r in tune])
    p32, p8 = _tuning_probs(fp32, paths, order), _tuning_probs(int8, paths, order)
    threshold = old = None
    if card.threshold is not None:
        old = card.threshold.value
        truth, positive = card.binary_view(targets, p8)
        threshold = choose_threshold(truth, positive, card.threshold.rule)
    agreement = Agreement(
        images=len(paths),
        identical_decisions=float((card.decide(p32) == card.decide(p8, threshold)).mean()),
        fp32_auroc=round(auroc(targets, p32), 4),
        int8_auroc=round(auroc(targets, p8), 4),
        fp32_threshold=old,
        int8_threshold=threshold,
    )
    new = card
    if threshold is not None:
        new = card.with_threshold(threshold, "tuning split, re-chosen for INT8")
    return dataclasses.replace(
        new, metrics={**card.metrics, "int8": agreement.to_dict()}
    ), agreement
