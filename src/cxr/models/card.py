"""The model card: one typed object that says what a model is and how its outputs are read.

It travels inside the model file (`model.pt` and the ONNX export's metadata) and hangs on a loaded
model as `model.card`, its only extra attribute. Every command asks the card for the rules a model
implies (which class is positive, how a probability becomes a decision, how logits are
calibrated, which data it was trained and tuned on) instead of re-deriving them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxr.data.labels import SCHEMES, LabelScheme
from cxr.data.preprocess import Preprocessing
from cxr.data.views import Views
from cxr.errors import CxrError
from cxr.metrics.calibration import Calibration

NORMAL = "normal"


def normal_index(classes: tuple[str, ...] | list[str]) -> int | None:
    """The index of the 'normal' class (any case), if the model has one."""
    found = [i for i, c in enumerate(classes) if c.lower() == NORMAL]
    return found[0] if found else None


def positive_index(classes: tuple[str, ...] | list[str]) -> int | None:
    """The class a binary model's threshold is about: whichever is not 'normal', else the second.
    Multi-class models have none: they decide by arg-max."""
    if len(classes) != 2:
        return None
    normal = normal_index(classes)
    return 1 - normal if normal is not None else 1


@dataclass(frozen=True)
class Threshold:
    """A binary decision: the positive class iff its probability is >= `value` (the one rule)."""

    value: float
    rule: str  # how it was chosen: sensitivity>=S, youden, fixed:T
    positive_class: str
    source: str = (
        "tuning split"  # where it was chosen; "override (--threshold)" when the user forced it
    )

    def __post_init__(self) -> None:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CxrError(f"threshold {value!r}: not a number")
        if not 0.0 <= value <= 1.0:  # NaN fails too: `p >= nan` would call every image negative
            raise CxrError(f"threshold {value!r}: must be a probability from 0 to 1")


@dataclass(frozen=True)
class ModelCard:
    architecture: str
    args: dict[str, Any]
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    label_scheme: str = "folder"  # folder | kermany3
    negative: str | None = None  # binary 'this class against the rest' scheme
    threshold: Threshold | None = None
    calibration: Calibration = field(default_factory=Calibration)
    views: Views = field(default_factory=Views)  # test-time augmentation (one view: none)
    data: dict[str, Any] = field(default_factory=dict)  # the training run's DataConfig
    data_fingerprint: str | None = None
    strategy: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)  # loss, balance, augmentation, epochs
    # the tuning split's calibrated predictions: the operating-point explorer works from them
    tuning: dict[str, list] = field(default_factory=dict)  # {"targets": [...], "probs": [[...]]}
    metrics: dict[str, Any] = field(default_factory=dict)  # tuning and internal-test figures
    population: dict[str, Any] = field(default_factory=dict)  # training images' ranges
    # a content key per training, tuning and internal-test image: the overlap check runs
    # without the data (cxr.evaluation.overlap; absent in files written before it)
    overlap: dict[str, Any] = field(default_factory=dict)
    members: tuple[str, ...] = ()  # an ensemble's member runs
    versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """One clear error per impossible card: a re-sealed file (card edited, checksum redone)
        must fail here, not as a traceback deep in prediction."""
        classes = self.classes
        if len(classes) < 2 or not all(isinstance(c, str) and c.strip() for c in classes):
            raise CxrError(f"classes {list(classes)}: needs two or more named classes")
        if len(set(classes)) != len(classes):
            raise CxrError(f"classes {list(classes)}: a class is named twice")
        if self.threshold is not None:
            if not self.binary:
                raise CxrError(f"a threshold applies to binary models; classes {list(classes)}")
            if self.threshold.positive_class not in classes:
                raise CxrError(
                    f"threshold's positive class {self.threshold.positive_class!r} is not one of "
                    f"the classes {list(classes)}"
                )
        if self.label_scheme not in SCHEMES:
            raise CxrError(f"unknown label scheme {self.label_scheme!r}; one of {SCHEMES}")
        self.calibration.check_width(len(classes))

    # --- the rules -------------------------------------------------------------------------
    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def positive(self) -> int | None:
        """Index of the class a binary threshold is about (None for multi-class)."""
        if self.threshold is not None:
            return self.classes.index(self.threshold.positive_class)
        return positive_index(self.classes)

    @property
    def positive_class(self) -> str | None:
        return None if self.positive is None else self.classes[self.positive]

    @property
    def threshold_value(self) -> float:
        """Where the binary view turns positive: the chosen threshold, else 0.5 (a binary card
        without one, or a multi-class card's normal-against-the-rest view)."""
        return self.threshold.value if self.threshold else 0.5

    def decide(self, probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Class index per row: P(positive) >= threshold for a binary model, else the arg-max."""
        probs = np.asarray(probs)
        value = threshold if threshold is not None else getattr(self.threshold, "value", None)
        if self.binary and value is not None:
            pos = self.positive
            return np.where(probs[:, pos] >= value, pos, 1 - pos)
        return probs.argmax(1)

    def binary_view(self, targets: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(is positive, P(positive)) for a binary model; (is abnormal, P(not normal)) otherwise."""
        targets, probs = np.asarray(targets), np.asarray(probs)
        if self.binary:
            pos = self.positive
            return (targets == pos).astype(int), probs[:, pos]
        normal = normal_index(self.classes)
        if normal is None:
            raise CxrError(f"classes {list(self.classes)}: no binary view without a normal class")
        return (targets != normal).astype(int), 1 - probs[:, normal]

    def urgency(self, probs: np.ndarray) -> np.ndarray:
        """What ranks a worklist: P(positive), or the largest probability of a non-normal class."""
        probs = np.asarray(probs)
        if self.binary:
            return probs[:, self.positive]
        normal = normal_index(self.classes)
        others = [i for i in range(len(self.classes)) if i != normal]
        return probs[:, others].max(1)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return self.calibration.probabilities(logits)

    def with_threshold(self, value: float, source: str) -> ModelCard:
        """The same card deciding at another threshold (said loudly by whoever asks for it)."""
        if self.threshold is None:
            raise CxrError("a threshold applies to binary models only")
        return dataclasses.replace(
            self, threshold=dataclasses.replace(self.threshold, value=value, source=source)
        )

    # --- the data it came from -------------------------------------------------------------
    def label_scheme_object(self):
        return LabelScheme(self.label_scheme, self.negative)

    def dataset_for(self, root=None):
        """The dataset this model was trained on (or `root` read with the model's label scheme)."""
        from cxr.data.discovery import discover
        from cxr.settings import resolve_data

        if root is None:
            if not self.data.get("root"):
                raise CxrError("this model file records no training data; name a folder")
            root = resolve_data(self.data["root"])
        return discover(root, self.label_scheme_object())

    def extra_training(self, present_only: bool = True) -> dict[str, list]:
        """The records of each `data.extra_train` folder. Evaluation skips a folder moved away:
        the training part is then short, and the split fingerprint check says so; training
        asks for every folder (`present_only=False`), so a missing one stops it."""
        from cxr.data.split import extra_training
        from cxr.settings import resolve_data

        folders = self.data.get("extra_train", ())
        if present_only:
            folders = [f for f in folders if resolve_data(f).is_dir()]
        return extra_training(folders, self.label_scheme_object())

    def protocol(self, dataset=None, extra: dict[str, list] | None = None):
        """The training run's train / tuning / internal-test parts from the card's data settings,
        the one split rule (training builds its parts here too): on `dataset` if given (it must
        hold the same files to be the same split), with `extra` training folders' records if
        already read."""
        from cxr.data.split import add_training, protocol_split

        d = self.data
        if not d:
            raise CxrError("this model file records no training data settings")
        protocol = protocol_split(
            dataset or self.dataset_for(),
            d["tune_fraction"],
            d["test_fraction"],
            d["seed"],
            d.get("limit"),
            d.get("fold"),
            d.get("folds", 5),
        )
        extra = self.extra_training() if extra is None else extra
        return add_training(protocol, extra, self.classes)

    # --- the file --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelCard:
        try:
            raw = dict(raw)
            raw["classes"] = tuple(raw["classes"])
            raw["preprocessing"] = Preprocessing(**raw["preprocessing"])
            if raw.get("threshold"):
                raw["threshold"] = Threshold(**raw["threshold"])
            calibration = dict(raw.get("calibration") or {})
            for key in ("scale", "shift"):
                calibration[key] = tuple(calibration.get(key, ()))
            raw["calibration"] = Calibration(**calibration)
            views = dict(raw.get("views") or {})  # absent in files written before views
            if "scales" in views:
                views["scales"] = tuple(views["scales"])
            raw["views"] = Views(**views)
            raw["members"] = tuple(raw.get("members", ()))
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(raw) - known)
            if unknown:
                raise CxrError(f"unknown model card fields {unknown}")
            return cls(**raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise CxrError(f"not a valid model card ({exc!r})") from exc

    def summary(self) -> dict[str, str]:
        """The card as label -> plain words, for tables on the page and in the report."""
        prep = self.preprocessing
        rows = {
            "model": f"{self.architecture} ({self.strategy or 'trained'})",
            "classes": ", ".join(self.classes),
            "input": f"{prep.size} px grey, whole image squashed, (x - {prep.mean:.3g}) / "
            f"{prep.std:.3g}",
            "decision": (
                f"{self.threshold.positive_class} when P >= {self.threshold.value:.4g} "
                f"(rule {self.threshold.rule}, chosen on the {self.threshold.source})"
                if self.threshold
                else "the most probable class"
            ),
            "calibration": f"{self.calibration.method}: {self.calibration.verdict}".rstrip(": "),
            "trained on": f"{self.data.get('root', '?')} (split fingerprint "
            f"{self.data_fingerprint or '?'})",
        }
        if extra := self.population.get("extra_images"):
            added = ", ".join(f"{n} from {folder}" for folder, n in extra.items())
            rows["extra training images"] = f"{added} (training part only)"
        if self.views.count > 1:
            rows["test-time views"] = self.views.describe()
        if self.members:
            rows["ensemble of"] = ", ".join(self.members)
        return rows
