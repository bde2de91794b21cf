"""A binary model on an external judge (cxr.data.external): the figures the internal test gives,
on images from another source: AUROC with its bootstrap interval, sensitivity and specificity at
the model's stored threshold with Wilson intervals, and ECE with its bootstrap interval, all from
`score`, the kernel every other figure of cxr comes from.

How much it can tell: the covid-db judge holds 280 images, 62 normals and 218 COVID-19 films.
Measured (1,000 resamples): the Lite0 model of `make demo` on 2026-12-06 had AUROC 0.886
(0.836-0.927, 0.09 wide), specificity 0.903 (0.805-0.955, 0.15), sensitivity 0.720 (0.657-0.776,
0.12), ECE 0.127 (0.096-0.173); the tests' tiny 48 px model AUROC 0.55 (0.15 wide). With 62
normals a specificity's Wilson interval is 0.15 wide near 90 % and 0.24 near 50 %: recipes that
differ by less than that are not told apart on one model each (a paired test on the same images,
DeLong or McNemar, detects somewhat smaller differences), and its pneumonia is adult COVID-19
only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn
from torch.utils.data import DataLoader

from cxr.data.cache import PixelCache
from cxr.data.external import NORMAL, PNEUMONIA, ExternalJudge, external_judge
from cxr.data.xrays import CachedXrays
from cxr.errors import CxrError
from cxr.evaluation.overlap import SEEN_PARTS, seen_in
from cxr.evaluation.predictions import Predictions, score
from cxr.inference.predictor import Predictor, TorchPredictor, load_predictor
from cxr.metrics.stats import wilson_interval
from cxr.models.card import ModelCard, normal_index
from cxr.models.io import run_name

EXTERNAL_JSON = "external.json"  # in a run's evaluation folder, when its config declares a judge


@dataclass
class Judged:
    """A model on an external judge: its predictions (for paired tests on the same images) and
    its figures (`judge_model`)."""

    predictions: Predictions
    figures: dict


def judge_model(
    model: Predictor | Path,
    judge: ExternalJudge,
    bootstrap: int = 1000,
    seed: int = 0,
    workers: int = 0,
) -> dict:
    """`model` (a predictor, or a model file) scored on `judge`: {"judge", "model", "images",
    "normal", "pneumonia", "threshold", "auroc", "sensitivity", "specificity", "ece", each figure
    with its "<figure>_ci95", "warnings"}. Refused for a model that is not binary with a normal
    class, and for one whose own data holds judge images (then it is no external judge)."""
    return judged(model, judge, bootstrap, seed, workers).figures


def judge_trained(
    name: str, model: nn.Module, model_file: Path, out: Path, bootstrap: int, workers: int = 0
) -> Judged:
    """A model just trained (in memory, saved as `model_file`) on the judge its config declares,
    its figures written to `out`/external.json: what `judge_model(model_file, ...)` gives."""
    predictor = TorchPredictor(model, model_file)
    result = judged(predictor, external_judge(name, workers=workers), bootstrap, 0, workers)
    (out / EXTERNAL_JSON).write_text(json.dumps(result.figures, indent=2))
    return result


def judged(
    model: Predictor | Path, judge: ExternalJudge, bootstrap: int, seed: int, workers: int
) -> Judged:
    """`judge_model`, keeping the predictions."""
    predictor = model if isinstance(model, Predictor) else load_predictor(Path(model))
    card = predictor.card
    names = _class_names(card)
    prep = card.preprocessing
    images = PixelCache(prep.size, prep.resize).load([r.path for r in judge.records], workers)
    if images.failures:
        raise CxrError(f"external judge {judge.name}: {images.failures[0].path} unreadable")
    seen, warning = seen_in(card, images, workers)
    own = sum(s in SEEN_PARTS for s in seen)
    if own:
        raise CxrError(
            f"{own} of the {judge.name} judge's images are this model's own training, tuning or "
            "internal-test radiographs: it is no external judge for this model"
        )
    labels = [names[r.label] for r in judge.records]
    targets = [card.classes.index(label) for label in labels]
    loader = DataLoader(CachedXrays(images, targets, prep), batch_size=64)
    probs = np.concatenate([predictor.predict(x.numpy()) for x, _ in loader])
    predictions = Predictions(
        name=run_name(predictor.source),
        card=card,
        paths=[str(p) for p in images.paths],
        digest=list(images.digests),
        patients=[r.group for r in judge.records],
        labels=labels,
        probs=np.round(probs, 6),  # as a predictions.csv holds them, like every other figure
        split=f"external:{judge.name}",
        data=str(judge.root),
        seen=seen,
    )
    scores = score(predictions, bootstrap, seed)
    m, ci = scores["metrics"], scores["ci95"]
    figures = {
        "judge": judge.name,
        "model": predictions.name,
        "images": m["n"],
        "normal": m["n"] - m["positives"],
        "pneumonia": m["positives"],
        "threshold": card.threshold_value,
        "auroc": m["auroc"],
        "auroc_ci95": ci.get("auroc"),
        "sensitivity": m["sensitivity"],
        "sensitivity_ci95": wilson_interval(m["tp"], m["tp"] + m["fn"]),
        "specificity": m["specificity"],
        "specificity_ci95": wilson_interval(m["tn"], m["tn"] + m["fp"]),
        "ece": m["ece"],
        "ece_ci95": ci.get("ece"),
        "warnings": [warning] if warning else [],
    }
    return Judged(predictions, figures)


def _class_names(card: ModelCard) -> dict[str, str]:
    """The judge's NORMAL / PNEUMONIA as the model's own class names."""
    normal = normal_index(card.classes)
    if not card.binary or normal is None:
        raise CxrError(
            f"the external judge is normal against pneumonia: it scores binary models with a "
            f"normal class, not classes {list(card.classes)}"
        )
    return {NORMAL: card.classes[normal], PNEUMONIA: card.classes[1 - normal]}
