"""`cxr evaluate --shift`: the same images re-scored under acquisition changes another site may
bring (contrast, blur, noise, JPEG, resolution, rotation, cropping), each at a few strengths, so a
user sees how fast AUROC and the stored operating point give way before trusting them elsewhere.

Perturbations act on the decoded uint8 images at the model's own input size (the cached rows), so
each strength costs one batched inference pass; sizes in pixels are stated for a 224 px image and
scaled to the model's size.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from cxr.inference.predictor import Predictor
from cxr.metrics.classification import binary_metrics, multiclass_metrics
from cxr.models.card import ModelCard
from cxr.numbers import number

SHIFT_JSON = "shift.json"

Perturb = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Perturbation:
    name: str
    parameter: str  # what the strength means, for the axis
    identity: float  # the strength that leaves the image as it is
    strengths: tuple[float, ...]
    apply: Perturb  # one (S, S) uint8 image -> the same shape


def _pil(image: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    return np.asarray(fn(Image.fromarray(image)), dtype=np.uint8)


def _gamma(image, g, rng):
    return np.round(255.0 * (image / 255.0) ** g).astype(np.uint8)


def _blur(image, sigma, rng):
    return (
        gaussian_filter(image.astype(np.float32), sigma * image.shape[0] / 224)
        .round()
        .astype(np.uint8)
    )


def _noise(image, sd, rng):
    return np.clip(image + rng.normal(0, sd, image.shape), 0, 255).round().astype(np.uint8)


def _jpeg(image, quality, rng):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("L"), dtype=np.uint8)


def _resolution(image, factor, rng):
    size = image.shape[0]
    small = max(2, round(size * factor))
    return _pil(
        image,
        lambda im: im.resize((small, small), Image.Resampling.BILINEAR).resize(
            (size, size), Image.Resampling.BILINEAR
        ),
    )


def _rotation(image, degrees, rng):
    angle = degrees * rng.choice([-1, 1])  # either way, as a tilted patient would be
    return _pil(image, lambda im: im.rotate(angle, Image.Resampling.BILINEAR, fillcolor=0))


def _crop(image, keep, rng):
    size = image.shape[0]
    side = round(size * keep)
    top = (size - side) // 2
    return _pil(
        image,
        lambda im: im.crop((top, top, top + side, top + side)).resize(
            (size, size), Image.Resampling.BILINEAR
        ),
    )


PERTURBATIONS = (
    Perturbation("contrast (gamma)", "gamma", 1.0, (0.6, 0.8, 1.25, 1.6), _gamma),
    Perturbation("Gaussian blur", "sigma (px at 224)", 0.0, (1.0, 2.0, 4.0), _blur),
    Perturbation("Gaussian noise", "SD (grey levels)", 0.0, (4.0, 8.0, 16.0), _noise),
    Perturbation(
        "JPEG re-encoding", "quality (100: as stored)", 100.0, (60.0, 30.0, 15.0, 5.0), _jpeg
    ),
    Perturbation("lower resolution", "scale, then back up", 1.0, (0.5, 0.33, 0.25), _resolution),
    Perturbation("rotation", "degrees", 0.0, (5.0, 10.0, 15.0), _rotation),
    Perturbation("central crop", "share of the side kept", 1.0, (0.95, 0.9, 0.8), _crop),
)


def _figures(card: ModelCard, targets: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    if card.binary:
        m = binary_metrics(*card.binary_view(targets, probs), card.threshold_value)
        return {k: m[k] for k in ("auroc", "sensitivity", "specificity")}
    m = multiclass_metrics(targets, probs, list(card.classes))
    return {"macro_auroc": m["macro_auroc"], "accuracy": m["accuracy"]}


def shift_check(
    predictor: Predictor,
    images: np.ndarray,
    targets: np.ndarray,
    baseline: np.ndarray,
    seed: int = 0,
    batch_size: int = 64,
) -> dict:
    """Figures per perturbation and strength; `baseline` (the unperturbed probabilities, as the
    evaluation scored them) gives the identity point, so it equals the evaluation's own figures.
    `images`: (N, S, S) uint8 at the model's input size."""
    card = predictor.card
    prep = card.preprocessing
    rng = np.random.default_rng(seed)
    out = {
        "n": len(images),
        "threshold": card.threshold.value if card.threshold else None,
        "perturbations": [],
    }
    for pert in PERTURBATIONS:
        rows = {
            "strength": [pert.identity],
            **{k: [v] for k, v in _figures(card, targets, baseline).items()},
        }
        for strength in pert.strengths:
            changed = np.stack([pert.apply(image, strength, rng) for image in images])
            x = prep.normalise(changed)[:, None]
            probs = np.concatenate(
                [predictor.predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
            )
            rows["strength"].append(strength)
            for key, value in _figures(card, targets, np.round(probs, 6)).items():
                rows[key].append(value)
        order = np.argsort(rows["strength"])
        out["perturbations"].append(
            {
                "name": pert.name,
                "parameter": pert.parameter,
                "identity": pert.identity,
                **{k: [float(v[i]) for i in order] for k, v in rows.items()},
            }
        )
    return out


def shift_conclusion(shift: dict) -> str:
    """The largest drop, in words."""
    key = "auroc" if shift["perturbations"][0].get("auroc") else "macro_auroc"
    worst = None
    for p in shift["perturbations"]:
        base = p[key][p["strength"].index(p["identity"])]
        for s, v in zip(p["strength"], p[key], strict=True):
            if worst is None or base - v > worst[0]:
                worst = (base - v, p["name"], p["parameter"], s, base, v)
    _, name, parameter, strength, base, value = worst
    return (
        f"Under simulated acquisition changes on these {shift['n']} images, "
        f"{key.replace('_', ' ').replace('auroc', 'AUROC')}"
        f" fell most under {name} ({parameter} {strength:g}): from {number(base)} to "
        f"{number(value)}."
    )
