"""The report's verdicts, each computed from the figures it states: whether a model beats chance,
whether its probabilities read as probabilities on a set, whether the stored operating point
still meets its target there, how much a set differs from the internal test, and what to do
next. No sentence here is fixed text: every number in one is a number of the evaluation."""

from __future__ import annotations

import math
import re

from cxr.evaluation.calibration import recalibrate
from cxr.evaluation.predictions import Predictions
from cxr.numbers import interval, number

READABLE_ECE = 0.05  # an ECE (upper 95 % bound) at most this: probabilities read as such
Z95 = 1.959964
HELD_OUT = "internal-test"
CHOSEN_ON = {"tuning", "train"}  # sets the model learned from or was tuned on


def _ci(scores: dict, key: str) -> tuple[float, float] | None:
    lo_hi = scores["ci95"].get(key)
    return (float(lo_hi[0]), float(lo_hi[1])) if lo_hi else None


def _with_ci(scores: dict, key: str) -> str:
    value, lo_hi = scores["metrics"][key], _ci(scores, key)
    return number(value) + (f" (95 % CI {interval(lo_hi)})" if lo_hi else "")


def auroc_key(p: Predictions) -> str:
    return "auroc" if p.binary else "macro_auroc"


def beats_chance(p: Predictions, scores: dict) -> bool | None:
    """Whether the AUROC's 95 % interval lies above 0.5 (None: no interval to judge by)."""
    lo_hi = _ci(scores, auroc_key(p))
    return None if lo_hi is None else lo_hi[0] > 0.5


def chance_verdict(p: Predictions, scores: dict) -> str | None:
    key = auroc_key(p)
    if beats_chance(p, scores) is not False:
        return None
    return (
        f"This model does not beat chance on these images: its {key.replace('_', ' ').upper()} "
        f"{_with_ci(scores, key)} has an interval that includes 0.5, so its scores say nothing "
        "here and it must not be used on them."
    )


def readable(scores: dict) -> bool | None:
    """Whether the probabilities can be read as probabilities: ECE at most READABLE_ECE, by
    the upper end of its interval where there is one."""
    ece = scores["metrics"].get("ece")
    if ece is None or (isinstance(ece, float) and math.isnan(ece)):
        return None
    lo_hi = _ci(scores, "ece")
    return (lo_hi[1] if lo_hi else ece) <= READABLE_ECE


def calibration_verdict(p: Predictions, scores: dict) -> str | None:
    """On this set, not on the tuning split: a verdict made there is not pasted here."""
    ok = readable(scores)
    if ok is None:
        return None
    ece = _with_ci(scores, "ece")
    if ok:
        return (
            f"On these images the probabilities can be read as probabilities: expected "
            f"calibration error {ece}, at most {READABLE_ECE}."
        )
    point = scores["metrics"]["ece"]
    why = (
        f"{ece}, above {READABLE_ECE}"
        if point > READABLE_ECE
        else f"{ece}: its interval reaches above {READABLE_ECE}, too few images to show it is not"
    )
    return (
        f"On these images the probabilities cannot be read as probabilities: expected "
        f"calibration error {why}; rank by them, but recalibrate "
        "(`cxr calibrate MODEL --predictions` on labelled images of this population) before "
        "reading 0.8 as an 80 % chance."
    )


def recalibration_verdict(p: Predictions) -> str | None:
    """Calibration before and after on a site's own set: what `cxr calibrate` on these labelled
    predictions would choose, its ECE measured on patients held out of each fit in turn. None on
    the model's own splits (their calibration is the card's) and where no fold can be held out."""
    if not p.binary or p.split in CHOSEN_ON | {HELD_OUT}:
        return None
    try:
        fitted = recalibrate(p.probs, p.targets, p.positive, p.patients, "auto")
    except ValueError:
        return None
    held = fitted.candidates
    if not held:
        return None
    if fitted.method == "none":
        tried = ", ".join(f"{m} {number(v)}" for m, v in held.items() if m != "none")
        return (
            f"Recalibrating on these images' labels would not help: no calibration lowers the "
            f"expected calibration error below its {number(held['none'])} here on patients held "
            f"out of the fit ({tried})."
        )
    return (
        f"Calibration before and after recalibrating on these {len(p.paths)} labelled images "
        f"(`cxr calibrate`, {fitted.method} scaling, patients held out of each fit in turn): "
        f"expected calibration error {number(held['none'])} → {number(held[fitted.method])}; "
        "the decisions stay as they are (the threshold moves with the calibration)."
    )


def target_sensitivity(p: Predictions) -> float | None:
    """The sensitivity the stored threshold was chosen to reach ("sensitivity>=0.95")."""
    rule = getattr(p.threshold, "rule", "") or ""
    found = re.fullmatch(r"sensitivity>=([0-9.]+)", rule)
    return float(found.group(1)) if found else None


def meets_target(p: Predictions, scores: dict) -> bool | None:
    """Whether the stored threshold still gives the sensitivity it was chosen for: False only
    when the whole interval lies below the target (a shortfall these images show, not one
    sampling explains); None where there is no target, or the point falls short but the
    interval holds the target."""
    target = target_sensitivity(p)
    if target is None or not p.binary:
        return None
    point, lo_hi = scores["metrics"]["sensitivity"], _ci(scores, "sensitivity")
    if point >= target:
        return True
    return None if lo_hi is not None and lo_hi[1] >= target else False


def operating_point_verdict(p: Predictions, scores: dict) -> str | None:
    target = target_sensitivity(p)
    if target is None or not p.binary:
        return None
    ok, here = meets_target(p, scores), _with_ci(scores, "sensitivity")
    chosen = (
        f"The stored threshold {number(p.threshold.value)}, chosen on the tuning split for "
        f"sensitivity ≥ {number(target, 2)}"
    )
    if ok:
        return f"{chosen}, still meets its target here: sensitivity {here}."
    if ok is False:
        return f"{chosen}, no longer reaches it here: sensitivity {here}."
    return (
        f"{chosen}, gives sensitivity {here} here: below the target, but the interval holds it, "
        "so these images cannot tell whether the threshold still gives its target."
    )


def _se(scores: dict, key: str) -> float | None:
    lo_hi = _ci(scores, key)
    return None if lo_hi is None else (lo_hi[1] - lo_hi[0]) / (2 * Z95)


def change(internal: dict, external: dict, key: str) -> tuple[float, tuple[float, float] | None]:
    """External minus internal, with a 95 % interval from the two sets' independent intervals
    (a normal approximation: the sets share no patients)."""
    d = float(external["metrics"][key]) - float(internal["metrics"][key])
    a, b = _se(internal, key), _se(external, key)
    if a is None or b is None:
        return d, None
    half = Z95 * math.hypot(a, b)
    return d, (d - half, d + half)


def shift_sentence(internal: tuple[Predictions, dict], external: tuple[Predictions, dict]) -> str:
    """How each headline figure moved from the internal test to an external set."""
    (pi, si), (pe, se) = internal, external
    keys = ("auroc", "sensitivity", "specificity", "ece") if pi.binary else ("macro_auroc",)
    parts = []
    for key in keys:
        d, lo_hi = change(si, se, key)
        text = (
            f"{key.upper() if key in ('auroc', 'ece') else key.replace('_', ' ')} "
            f"{number(si['metrics'][key])} → {number(se['metrics'][key])} (change {d:+.4f}"
        )
        parts.append(text + (f", 95 % CI {lo_hi[0]:+.4f} to {lo_hi[1]:+.4f})" if lo_hi else ")"))
    return f"From the internal test to {pe.described}: " + "; ".join(parts) + "."


def next_step(p: Predictions, scores: dict) -> str:
    """The one thing to do next on this set, from the verdicts above, worst first."""
    if beats_chance(p, scores) is False:
        return f"Next step on {p.described}: do not deploy this model there."
    if p.split in CHOSEN_ON or p.learned_from:
        return (
            f"Next step on {p.described}: measure on images the model never saw "
            "(`cxr evaluate --unseen-only`, or the internal test) before drawing any conclusion."
        )
    if meets_target(p, scores) is False:
        return (
            f"Next step on {p.described}: collect labelled images of this population and choose "
            "the threshold again on them; the stored one does not give the sensitivity it was "
            "chosen for."
        )
    if p.binary and readable(scores) is False:  # `cxr calibrate` maps binary models only
        return (
            f"Next step on {p.described}: recalibrate on labelled images of this population "
            "(`cxr calibrate`); the decisions can stay as they are."
        )
    return f"Next step on {p.described}: none from these figures; keep monitoring new batches."


def warning_lines(p: Predictions) -> list[str]:
    """The evaluation's warnings, said before any figure they qualify."""
    return [f"Warning: {w.rstrip('.')}." for w in p.warnings]


def verdicts(p: Predictions, scores: dict) -> list[str]:
    """Chance, operating point and calibration, each judged on this set's own figures."""
    return [
        line
        for line in (
            chance_verdict(p, scores),
            operating_point_verdict(p, scores),
            calibration_verdict(p, scores) if p.binary else None,
            recalibration_verdict(p),
        )
        if line
    ]


def study_conclusions(sections: list[tuple[Predictions, dict]]) -> list[str]:
    """One model's sets against each other: the drop from the internal test to each external
    set, and the next step on every set."""
    internal = next((s for s in sections if s[0].split == HELD_OUT), None)
    out = []
    for p, scores in sections:
        if internal is not None and p.split not in CHOSEN_ON | {HELD_OUT}:
            out.append(shift_sentence(internal, (p, scores)))
        out.append(next_step(p, scores))
    return out
