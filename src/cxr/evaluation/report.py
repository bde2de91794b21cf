"""`cxr report`: one self-contained HTML file per study. Every sentence in its conclusions comes
from a rule over the numbers (`conclusions`), never from free text."""

from __future__ import annotations

import base64
import io
import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from matplotlib.figure import Figure

from cxr.data.inspect import Summary, plot_class_distribution, summarise
from cxr.errors import CxrError
from cxr.evaluation import plots
from cxr.evaluation.compare import Comparison, compare
from cxr.evaluation.conclusions import (
    READABLE_ECE,
    study_conclusions,
    verdicts,
    warning_lines,
)
from cxr.evaluation.cv import read_cv
from cxr.evaluation.explorer import WIDGET, predictions_explorer
from cxr.evaluation.numbers import interval, number
from cxr.evaluation.predictions import EXACT_BELOW, Predictions, load_predictions, score
from cxr.evaluation.shift import SHIFT_JSON, shift_conclusion
from cxr.models.card import ModelCard, Threshold
from cxr.outputs import must_be_new
from cxr.progress import Stages, silent
from cxr.settings import resolve_data

SIGNIFICANCE = 0.05


@dataclass
class Section:
    """One evaluation: a model on one set of images."""

    predictions: Predictions
    scores: dict
    figures: dict[str, str]  # title -> data URI
    shift: dict | None = None  # `cxr evaluate --shift` figures: {"conclusion", "figure"}
    explorer: dict | None = None  # the operating-point explorer's counts (explorer_data)


@dataclass
class Entry:
    """One model in the report: its card, its learning curves and its evaluations."""

    name: str
    card: ModelCard
    learning_curves: str | None
    overfitting: str | None
    sections: list[Section] = field(default_factory=list)


def data_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def overfitting(history: Path) -> str | None:
    """Read the learning curves the way a reviewer would: where validation peaked and whether
    validation loss rose while training loss kept falling."""
    h = plots.read_history(history)
    if len(h.get("epoch", ())) < 2:
        return None
    val_loss, train_loss, auroc = h["val_loss"], h["train_loss"], h["val_auroc"]
    best, last = int(np.nanargmax(auroc)), len(auroc) - 1
    low = int(np.nanargmin(val_loss))
    text = f"Tuning-split AUROC peaked at epoch {best + 1} of {last + 1} ({auroc[best]:.3f}); "
    if low < last and val_loss[last] > 1.1 * val_loss[low] and train_loss[last] < train_loss[low]:
        text += (
            f"tuning-split loss rose from {val_loss[low]:.3f} (epoch {low + 1}) to "
            f"{val_loss[last]:.3f} while training loss kept falling, a sign of over-fitting "
            f"after epoch {low + 1} (or of a noisy validation loss); the kept weights are those "
            f"of epoch {best + 1}, chosen by tuning-split AUROC."
        )
    else:
        gap = val_loss[best] - train_loss[best]
        text += (
            f"no sign of over-fitting: at that epoch tuning-split loss {val_loss[best]:.3f} "
            f"against training loss {train_loss[best]:.3f} (gap {gap:+.3f})."
        )
    return text


def _pct(x: float) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{100 * x:.1f} %"


def _interval(scores: dict, key: str) -> str:
    value = scores["metrics"][key]
    lo_hi = scores["ci95"].get(key)
    if lo_hi is None:
        return number(value)
    return f"{number(value)} (95 % CI {interval(lo_hi)})"


def interval_methods(scores: dict) -> str:
    """Which kind of interval each figure got, in words."""
    methods = scores.get("ci_method", {})
    exact = sorted(k for k, m in methods.items() if m == "Wilson")
    b = scores["bootstrap"]
    text = f"95 % intervals: {b['resamples']} bootstrap resamples by {b['unit']}, seed {b['seed']}"
    if exact:
        text += (
            f"; for {', '.join(k.replace('_', ' ') for k in exact)} the bootstrap degenerates "
            f"here (fewer than {EXACT_BELOW} cases behind the proportion, a proportion of 0 or 1, "
            "or a zero-width interval), so those are exact Wilson score intervals, which treat "
            "images as independent"
        )
    return text + "."


def _of(k: int, n: int, what: str) -> str:
    """Counts in words: "none of the 12 X images", "3 of the 40 X images", "all 7 X images"."""
    if n == 0:
        return f"no {what} images"
    if k == 0:
        return f"none of the {n} {what} images"
    if k == n:
        return f"all {n} {what} images" if n > 1 else f"the one {what} image"
    return f"{k} of the {n} {what} images"


def section_conclusions(s: Section) -> list[str]:
    p, m = s.predictions, s.scores["metrics"]
    out = []
    if p.binary:
        pos = p.classes[p.positive]
        neg = p.classes[1 - p.positive]
        thr = p.threshold or Threshold(0.5, "fixed:0.5", pos, "default")
        negatives = m["n"] - m["positives"]
        missed, flagged = _of(m["fn"], m["positives"], pos), _of(m["fp"], negatives, neg)
        out.append(
            f"On {m['n']} images, AUROC is {_interval(s.scores, 'auroc')}. At the "
            f"threshold {number(thr.value)} (rule {thr.rule}, chosen on the {thr.source}), "
            f"{missed} {'was' if m['fn'] == 1 else 'were'} missed and {flagged} "
            f"{'was' if m['fp'] == 1 else 'were'} flagged: sensitivity "
            f"{_interval(s.scores, 'sensitivity')}, specificity "
            f"{_interval(s.scores, 'specificity')}."
        )
        if m["positives"] < EXACT_BELOW or negatives < EXACT_BELOW:
            out.append(
                f"With so few images ({m['positives']} {pos}, {negatives} {neg}) "
                "these rates are rough: read the width of the intervals, not the point values."
            )
        out.append(
            f"With {_pct(m['positives'] / m['n'])} {pos} here, a positive call is right "
            f"{_pct(m['precision'])} of the time (PPV) and a negative one {_pct(m['npv'])} (NPV); "
            "both move with prevalence, so expect other numbers where the case mix differs."
        )
        out.append(
            f"Calibration here: expected calibration error {number(m['ece'])}, Brier score "
            f"{number(m['brier'])}."
        )
    else:
        cm = np.array(m["confusion_matrix"], float)
        rates = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
        np.fill_diagonal(rates, 0)
        t, q = np.unravel_index(np.argmax(rates), rates.shape)
        out.append(
            f"On {m['n']} images, macro AUROC is {_interval(s.scores, 'macro_auroc')} "
            f"and accuracy {_interval(s.scores, 'accuracy')}."
        )
        out.append(
            f"The most frequent confusion: {_pct(rates[t, q])} of {p.classes[t]} images are "
            f"called {p.classes[q]}."
        )
        pairs = m.get("pairwise_auroc", {})
        if pairs:
            worst = min(pairs, key=lambda k: pairs[k])
            out.append(
                f"The hardest pair to tell apart is {worst} (AUROC {number(pairs[worst])} among "
                "those two classes only)."
            )
        view = m.get("abnormal_vs_normal")
        if view:
            out.append(
                f"As a normal-vs-abnormal test it reaches AUROC {number(view['auroc'])}, "
                f"sensitivity {_pct(view['sensitivity'])} and specificity "
                f"{_pct(view['specificity'])} at P(abnormal) ≥ 0.5."
            )
    if p.learned_from:
        out[0] = (
            f"Not a held-out measurement ({p.learned_from} of these {m['n']} images were the "
            f"model's own training or tuning images): {out[0]}"
        )
    return warning_lines(p) + out + verdicts(p, s.scores)


def model_conclusions(entry: Entry) -> list[str]:
    """One model's sets against each other (see cxr.evaluation.conclusions)."""
    return study_conclusions([(s.predictions, s.scores) for s in entry.sections])


def comparison_conclusions(c: Comparison) -> list[str]:
    key = "auroc" if c.models[0].binary else "macro_auroc"
    best = c.best()
    ranked = sorted(range(len(c.models)), key=lambda i: -c.scores[i]["metrics"][key])
    n = c.scores[best]["metrics"]["n"]
    unfair = c.unfair()
    if unfair:
        out = [
            f"No winner is called on these {n} images: {'; '.join(unfair)}, so its figures "
            "here are not held out and the tests below do not compare like with like."
        ]
    else:
        out = [
            f"On these {n} images the best model by {key} is "
            f"{c.models[best].name} ({number(c.scores[best]['metrics'][key])})."
        ]
    runner = ranked[1]
    for pair in c.pairs:
        names = {pair.a, pair.b}
        if names != {c.models[best].name, c.models[runner].name}:
            continue
        if pair.delong:
            verdict = "significant" if pair.delong.p_value < SIGNIFICANCE else "not significant"
            out.append(
                f"Its AUROC lead over {c.models[runner].name} is "
                f"{abs(pair.delong.difference):.4f} (DeLong p = {pair.delong.p_value:.3g}, "
                f"{verdict} at {SIGNIFICANCE})."
            )
        m = pair.mcnemar
        verdict = "differ" if m.p_value < SIGNIFICANCE else "do not differ significantly"
        out.append(
            f"At their chosen thresholds {pair.a} alone is right on {m.only_a_right} images and "
            f"{pair.b} alone on {m.only_b_right}: their accuracies {verdict} "
            f"(McNemar p = {m.p_value:.3g})."
        )
    return out


def _dataset_summary(entries: list[Entry], progress: Stages) -> tuple[Summary | None, str | None]:
    card = next((e.card for e in entries if e.card.data), None)
    if card is None:
        return None, None
    try:
        dataset = card.dataset_for()
    except CxrError:
        return None, None
    summary = summarise(dataset, progress(f"reading {dataset.root.name}", len(dataset.records)))
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_class_distribution(summary, Path(tmp))
        uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    return summary, uri


def _figures(p: Predictions) -> dict[str, str]:
    return {title: data_uri(fig) for title, fig in plots.evaluation_figures(p).values()}


Scored = tuple[Predictions, dict]  # an evaluation and its scores (metrics, intervals)


def build_report(
    evaluations: list[Path | Scored],
    out: Path,
    bootstrap: int = 1000,
    seed: int = 0,
    cv: list[Path] = (),
    progress: Stages = silent,
) -> Path:
    """`evaluations`: folders (read and scored here) or evaluations already scored in memory, as
    `cxr study` hands them over, so each is bootstrapped once. `cv`: `cxr cv` folders."""
    must_be_new(out)
    scored: list[Scored] = []
    shifts: dict[int, dict] = {}  # id(predictions) -> its evaluation folder's shift check
    for item in evaluations:
        if isinstance(item, tuple):
            scored.append(item)
        else:
            p = load_predictions(item)
            scored.append((p, score(p, bootstrap, seed, progress)))
            if (Path(item) / SHIFT_JSON).is_file():
                shift = json.loads((Path(item) / SHIFT_JSON).read_text())
                shifts[id(p)] = {
                    "conclusion": shift_conclusion(shift),
                    "figure": data_uri(plots.shift_figure(shift)),
                }
    entries: dict[str, Entry] = {}
    for p, scores in scored:
        key = str(p.model_file.resolve()) if p.model_file else p.name
        if key not in entries:
            entries[key] = Entry(
                name=p.model_file.parent.name
                if p.model_file and p.model_file.name == "model.pt"
                else p.name,
                card=p.card,
                learning_curves=data_uri(plots.learning_curves_figure(p.history))
                if p.history
                else None,
                overfitting=overfitting(p.history) if p.history else None,
            )
        entries[key].sections.append(
            Section(p, scores, _figures(p), shifts.get(id(p)), predictions_explorer(p))
        )
    comparisons = []
    by_images: dict[frozenset, list[Predictions]] = {}
    for p, _ in scored:
        by_images.setdefault(frozenset(p.digest), []).append(p)
    for group in by_images.values():
        if len({p.name for p in group}) >= 2:
            c = compare(group, bootstrap, seed, progress)
            comparisons.append(
                {
                    "comparison": c,
                    "conclusions": comparison_conclusions(c),
                    "roc": data_uri(plots.roc_figure(c.models)),
                    "pr": data_uri(plots.pr_figure(c.models)),
                }
            )
    summary, classes_png = _dataset_summary(list(entries.values()), progress)
    env = Environment(
        loader=PackageLoader("cxr.evaluation", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
    )
    html = env.get_template("report.html.j2").render(
        cards=list(entries.values()),
        comparisons=comparisons,
        summary=summary,
        classes_png=classes_png,
        cv=[read_cv(folder) for folder in cv],
        section_conclusions=section_conclusions,
        model_conclusions=model_conclusions,
        readable_ece=READABLE_ECE,
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        isnan=lambda x: x is None or (isinstance(x, float) and np.isnan(x)),
        number=number,
        interval=interval,
        interval_methods=interval_methods,
        resolve_data=lambda root: str(resolve_data(root)) if root else "?",
        explorer_js=WIDGET.read_text(),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    return out
