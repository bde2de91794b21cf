"""`cxr report`: one self-contained HTML file per study. Every sentence in its conclusions comes
from a rule over the numbers (`conclusions`), never from free text."""

from __future__ import annotations

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
from cxr.data.split import INTERNAL_TEST
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
from cxr.evaluation.external import EXTERNAL_JSON
from cxr.evaluation.predictions import Predictions, load_predictions, score
from cxr.evaluation.shift import SHIFT_JSON, shift_conclusion
from cxr.inline import data_uri
from cxr.metrics.stats import EXACT_BELOW
from cxr.models.card import ModelCard
from cxr.models.io import run_name
from cxr.numbers import interval, number
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
    external: list[dict] = field(default_factory=list)  # its figures on external judges


def figure_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return data_uri(buffer.getvalue())


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


def _share(k: int, n: int, scores: dict, key: str) -> str:
    """`k of n` with the rate and its interval as the report prints proportions; a rate of 0 or 1
    is left to the count ("12 of 12", never a certain 1.0000 or 100.0 %)."""
    ci = scores["ci95"].get(key)
    shown = [] if k in (0, n) else [number(k / n)]
    if ci:
        shown.append(f"95 % CI {interval(ci)}")
    return f"{k} of {n}" + (f" ({', '.join(shown)})" if shown else "")


def _with_ci(value: float, ci: list | None) -> str:
    return number(value) if ci is None else f"{number(value)} (95 % CI {interval(ci)})"


def _interval(scores: dict, key: str) -> str:
    return _with_ci(scores["metrics"][key], scores["ci95"].get(key))


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
    out = _binary_lines(s) if p.binary else _multiclass_lines(s)
    if p.learned_from:
        out[0] = (
            f"Not a held-out measurement ({p.learned_from} of these {m['n']} images were the "
            f"model's own training or tuning images): {out[0]}"
        )
    return warning_lines(p) + out + verdicts(p, s.scores)


def _binary_lines(s: Section) -> list[str]:
    """Misses and false alarms at the model's threshold, then prevalence and calibration."""
    p, m = s.predictions, s.scores["metrics"]
    pos, neg = p.classes[p.positive], p.classes[1 - p.positive]
    thr = p.threshold
    how = f"rule {thr.rule}, chosen on the {thr.source}" if thr else "none chosen: the default"
    negatives = m["n"] - m["positives"]
    missed, flagged = _of(m["fn"], m["positives"], pos), _of(m["fp"], negatives, neg)
    out = [
        f"On {m['n']} images, AUROC is {_interval(s.scores, 'auroc')}. At the "
        f"threshold {number(p.card.threshold_value)} ({how}), "
        f"{missed} {'was' if m['fn'] == 1 else 'were'} missed and {flagged} "
        f"{'was' if m['fp'] == 1 else 'were'} flagged: sensitivity "
        f"{_interval(s.scores, 'sensitivity')}, specificity "
        f"{_interval(s.scores, 'specificity')}."
    ]
    if m["positives"] < EXACT_BELOW or negatives < EXACT_BELOW:
        out.append(
            f"With so few images ({m['positives']} {pos}, {negatives} {neg}) "
            "these rates are rough: read the width of the intervals, not the point values."
        )
    ppv = _share(m["tp"], m["tp"] + m["fp"], s.scores, "precision")
    npv = _share(m["tn"], m["tn"] + m["fn"], s.scores, "npv")
    out.append(
        f"With {_pct(m['positives'] / m['n'])} {pos} here, {ppv} positive calls were right "
        f"(PPV) and {npv} negative ones (NPV); "
        "both move with prevalence, so expect other numbers where the case mix differs."
    )
    out.append(
        f"Calibration here: expected calibration error {number(m['ece'])}, Brier score "
        f"{number(m['brier'])}."
    )
    return out


def _multiclass_lines(s: Section) -> list[str]:
    """Macro AUROC and accuracy, the most frequent confusion, the hardest pair and the
    normal-against-the-rest view."""
    p, m = s.predictions, s.scores["metrics"]
    cm = np.array(m["confusion_matrix"], float)
    rates = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
    np.fill_diagonal(rates, 0)
    t, q = np.unravel_index(np.argmax(rates), rates.shape)
    out = [
        f"On {m['n']} images, macro AUROC is {_interval(s.scores, 'macro_auroc')} "
        f"and accuracy {_interval(s.scores, 'accuracy')}.",
        f"The most frequent confusion: {_pct(rates[t, q])} of {p.classes[t]} images are "
        f"called {p.classes[q]}.",
    ]
    pairs = m.get("pairwise_auroc", {})
    if pairs:
        worst = min(pairs, key=lambda k: pairs[k])
        out.append(
            f"The hardest pair to tell apart is {worst} (AUROC "
            f"{_with_ci(pairs[worst], s.scores['ci95'].get('auroc ' + worst))} among those two "
            "classes only)."
        )
    view = m.get("abnormal_vs_normal")
    if view:
        out.append(
            f"As a normal-vs-abnormal test it reaches AUROC {number(view['auroc'])}, "
            f"sensitivity {_pct(view['sensitivity'])} and specificity "
            f"{_pct(view['specificity'])} at P(abnormal) ≥ {p.card.threshold_value:g}."
        )
    return out


def model_conclusions(entry: Entry) -> list[str]:
    """One model's sets against each other (see cxr.evaluation.conclusions), then its external
    judges against its internal test."""
    lines = study_conclusions([(s.predictions, s.scores) for s in entry.sections])
    return lines + [line for judge in entry.external for line in judge_lines(entry, judge)]


def _internal_test(entry: Entry) -> Section | None:
    return next(
        (
            s
            for s in entry.sections
            if s.predictions.split == INTERNAL_TEST and s.predictions.binary
        ),
        None,
    )


def judge_lines(entry: Entry, judge: dict) -> list[str]:
    """The judge's figures beside the internal test's, and how far its few normals let its
    specificity be read."""
    internal = _internal_test(entry)
    text = (
        f"On the {judge['judge']} external judge ({judge['images']} images of another source: "
        f"{judge['normal']} normal, {judge['pneumonia']} pneumonia), AUROC is "
        f"{_with_ci(judge['auroc'], judge['auroc_ci95'])} and specificity at the stored "
        f"threshold {number(judge['threshold'])} is "
        f"{_with_ci(judge['specificity'], judge['specificity_ci95'])}"
    )
    low, high = judge["specificity_ci95"]
    width = f"{high - low:.2f} wide"
    if internal:
        m, ci = internal.scores["metrics"], internal.scores["ci95"]
        text += (
            f", against AUROC {_with_ci(m['auroc'], ci.get('auroc'))} and specificity "
            f"{_with_ci(m['specificity'], ci.get('specificity'))} on the internal test"
        )
        if ci.get("specificity"):
            width += f", the internal test's {ci['specificity'][1] - ci['specificity'][0]:.2f}"
    return [
        text + ".",
        f"With {judge['normal']} normal images the judge's specificity interval is {width}: "
        "recipes whose specificities differ by less than that are not told apart on it.",
    ]


JUDGED = ("auroc", "sensitivity", "specificity", "ece")  # the figures set beside the judges'


def judge_rows(entry: Entry) -> list[dict]:
    """The table beside the model's internal test: one row per set, figures with intervals."""
    internal, rows = _internal_test(entry), []
    if internal:
        m, ci = internal.scores["metrics"], internal.scores["ci95"]
        rows.append(_row("internal test", m["n"] - m["positives"], m["positives"], m, ci))
    for j in entry.external:
        ci = {k: j[f"{k}_ci95"] for k in JUDGED}
        rows.append(_row(f"external judge {j['judge']}", j["normal"], j["pneumonia"], j, ci))
    return rows


def _row(name: str, normal: int, pneumonia: int, values: dict, ci: dict) -> dict:
    figures = {k: _with_ci(values[k], ci.get(k)) for k in JUDGED}
    return {"set": name, "images": f"{normal} normal / {pneumonia} pneumonia", **figures}


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
        uri = data_uri(path.read_bytes())
    return summary, uri


def _figures(p: Predictions) -> dict[str, str]:
    return {title: figure_uri(fig) for title, fig in plots.evaluation_figures(p).values()}


Scored = tuple[Predictions, dict]  # an evaluation and its scores (metrics, intervals)


def build_report(
    evaluations: list[Path | Scored],
    out: Path,
    bootstrap: int = 1000,
    seed: int = 0,
    cv: list[Path] = (),
    progress: Stages = silent,
    external: list[dict] = (),
) -> Path:
    """`evaluations`: folders (read and scored here) or evaluations already scored in memory, as
    `cxr study` hands them over, so each is bootstrapped once. `cv`: `cxr cv` folders.
    `external`: figures on external judges (`judge_model`), each shown with the model it names,
    beside those of the evaluation folders' external.json."""
    must_be_new(out)
    scored, shifts = _scored(evaluations, bootstrap, seed, progress)
    entries = _entries(scored, shifts)
    judged = [*external, *_external_files(evaluations)]
    for entry in entries:
        entry.external = [j for j in judged if j["model"] == entry.name]
    comparisons = _comparisons([p for p, _ in scored], bootstrap, seed, progress)
    summary, classes_png = _dataset_summary(entries, progress)
    html = _render(
        cards=entries,
        comparisons=comparisons,
        summary=summary,
        classes_png=classes_png,
        cv=[read_cv(folder) for folder in cv],
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    return out


def _scored(
    evaluations: list[Path | Scored], bootstrap: int, seed: int, progress: Stages
) -> tuple[list[Scored], dict[int, dict]]:
    """Each evaluation with its scores (folders are read and scored here), and the shift check
    of each evaluation folder that has one, by id(predictions)."""
    scored: list[Scored] = []
    shifts: dict[int, dict] = {}
    for item in evaluations:
        if isinstance(item, tuple):
            scored.append(item)
            continue
        p = load_predictions(item)
        scored.append((p, score(p, bootstrap, seed, progress)))
        if (Path(item) / SHIFT_JSON).is_file():
            shift = json.loads((Path(item) / SHIFT_JSON).read_text())
            shifts[id(p)] = {
                "conclusion": shift_conclusion(shift),
                "figure": figure_uri(plots.shift_figure(shift)),
            }
    return scored, shifts


def _external_files(evaluations: list[Path | Scored]) -> list[dict]:
    """The external judges' figures that evaluation folders hold (`cxr study` writes them)."""
    files = [Path(e) / EXTERNAL_JSON for e in evaluations if not isinstance(e, tuple)]
    return [json.loads(f.read_text()) for f in files if f.is_file()]


def _entries(scored: list[Scored], shifts: dict[int, dict]) -> list[Entry]:
    """One entry per model file (in the order first met), holding its evaluations."""
    entries: dict[str, Entry] = {}
    for p, scores in scored:
        key = str(p.model_file.resolve()) if p.model_file else p.name
        if key not in entries:
            entries[key] = Entry(
                name=run_name(p.model_file) if p.model_file else p.name,
                card=p.card,
                learning_curves=figure_uri(plots.learning_curves_figure(p.history))
                if p.history
                else None,
                overfitting=overfitting(p.history) if p.history else None,
            )
        entries[key].sections.append(
            Section(p, scores, _figures(p), shifts.get(id(p)), predictions_explorer(p))
        )
    return list(entries.values())


def _comparisons(
    evaluated: list[Predictions], bootstrap: int, seed: int, progress: Stages
) -> list[dict]:
    """Two or more models on the very same images, compared with their conclusions and curves."""
    by_images: dict[frozenset, list[Predictions]] = {}
    for p in evaluated:
        by_images.setdefault(frozenset(p.digest), []).append(p)
    comparisons = []
    for group in by_images.values():
        if len({p.name for p in group}) >= 2:
            c = compare(group, bootstrap, seed, progress)
            comparisons.append(
                {
                    "comparison": c,
                    "conclusions": comparison_conclusions(c),
                    "roc": figure_uri(plots.roc_figure(c.models)),
                    "pr": figure_uri(plots.pr_figure(c.models)),
                }
            )
    return comparisons


def _render(**parts) -> str:
    """The report's HTML from its parts (cards, comparisons, summary, classes_png, cv)."""
    env = Environment(
        loader=PackageLoader("cxr.evaluation", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
    )
    return env.get_template("report.html.j2").render(
        **parts,
        section_conclusions=section_conclusions,
        model_conclusions=model_conclusions,
        judge_rows=judge_rows,
        judge_lines=judge_lines,
        readable_ece=READABLE_ECE,
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        isnan=lambda x: x is None or (isinstance(x, float) and np.isnan(x)),
        number=number,
        interval=interval,
        interval_methods=interval_methods,
        resolve_data=lambda root: str(resolve_data(root)) if root else "?",
        explorer_js=WIDGET.read_text(),
    )
