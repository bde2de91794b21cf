"""`cxr ensemble`: trained models of the same classes and the same patient split combined into one
model file. Its calibration and threshold are chosen again on the members' shared tuning split,
with the same kernel functions training uses, so the ensemble is judged like any single model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cxr.data.cache import PixelCache
from cxr.data.views import Views
from cxr.errors import CxrError
from cxr.models.card import ModelCard
from cxr.models.ensemble import ENSEMBLE
from cxr.models.io import MODEL_FILE, load_model, run_name, save_model
from cxr.models.registry import create_model
from cxr.outputs import must_be_new
from cxr.training.tuning import finish_tuning


def _model_file(item: Path) -> Path:
    path = Path(item) / MODEL_FILE if Path(item).is_dir() else Path(item)
    if path.suffix == ".onnx":
        raise CxrError(f"{item}: an ensemble needs the PyTorch model file, not an ONNX export")
    if not path.is_file():
        raise CxrError(f"{item}: no model file (a run folder holding {MODEL_FILE}, or a .pt)")
    return path


def _check_members(files: list[Path], cards: list[ModelCard]) -> None:
    """Same classes, same input, same training and tuning patients; else a refusal naming why."""
    if len(files) < 2:
        raise CxrError("an ensemble needs at least two models")
    first, name = cards[0], files[0]
    for path, card in zip(files[1:], cards[1:], strict=True):
        if card.classes != first.classes:
            raise CxrError(f"{path} predicts {list(card.classes)}, {name} {list(first.classes)}")
        if card.data_fingerprint is None or card.data_fingerprint != first.data_fingerprint:
            raise CxrError(
                f"{path} was trained and tuned on other patients than {name} (split fingerprint "
                f"{card.data_fingerprint} against {first.data_fingerprint}): an ensemble's "
                "calibration and threshold must be chosen on a tuning split no member trained on"
            )
        if card.preprocessing != first.preprocessing:
            raise CxrError(
                f"{path} expects input {card.preprocessing}, {name} {first.preprocessing}: train "
                "the members at the same model.size and normalisation"
            )
        if card.label_scheme != first.label_scheme or card.negative != first.negative:
            raise CxrError(f"{path} reads labels otherwise than {name} (label scheme differs)")


def build_ensemble(items: list[Path], out: Path, threshold_rule: str | None = None) -> Path:
    """Write `out`/model.pt; `threshold_rule` defaults to the first member's rule."""
    target = Path(out) / MODEL_FILE
    must_be_new(target)
    files = [_model_file(Path(i)) for i in items]
    members = [load_model(f) for f in files]
    cards = [m.card for m in members]
    _check_members(files, cards)
    first = cards[0]
    args = {
        "num_classes": len(first.classes),
        "in_chans": 1,
        "members": [
            {
                "architecture": c.architecture,
                "args": c.args,
                "calibration": {
                    "method": c.calibration.method,
                    "scale": list(c.calibration.scale),
                    "shift": list(c.calibration.shift),
                },
                "views": {"hflip": c.views.hflip, "scales": list(c.views.scales)},
            }
            for c in cards
        ],
    }
    model = create_model(ENSEMBLE, **args).eval()
    for i, member in enumerate(members):
        model.members[i].load_state_dict(member.state_dict())
    card = dataclasses.replace(
        first,
        architecture=ENSEMBLE,
        args=args,
        members=tuple(run_name(f) for f in files),
        strategy="ensemble",
        views=Views(),  # each member scores its own views inside the ensemble
        recipe={
            "combination": "mean of the members' calibrated log-probabilities",
            "members": [c.recipe for c in cards],
        },
        population=first.population,
    )
    model.card = card
    card = _tune(model, card, threshold_rule or (first.threshold.rule if first.threshold else None))
    Path(out).mkdir(parents=True, exist_ok=True)
    return save_model(target, model, card)


def _tune(model, card: ModelCard, rule: str | None) -> ModelCard:
    """Calibration and threshold chosen on the members' shared tuning split, as training does."""
    tune = card.protocol().tune
    prep = card.preprocessing
    images = PixelCache(prep.size, prep.resize).load([r.path for r in tune])
    by_path = {r.path: r for r in tune}
    kept = [by_path[p] for p in images.paths]
    tuned, _ = finish_tuning(model, images, kept, "auto", rule, card.data.get("seed", 0))
    return tuned
