"""The evaluation figures, each a matplotlib Figure built from Predictions (or a run's history),
so `evaluate` saves them as PNG and `report` embeds the very same drawings."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import auc, precision_recall_curve, roc_curve

from cxr.data.reader import read_image
from cxr.errors import CxrError
from cxr.evaluation.predictions import Predictions
from cxr.metrics.classification import reliability_bins
from cxr.numbers import percent, share


def _curves_of(p: Predictions) -> list[tuple[str, np.ndarray, np.ndarray, float | None]]:
    """(label, truth, score, operating threshold): the positive class of a binary model, else each
    class against the rest; only where both sides are present (a curve needs both)."""
    if p.binary:
        value = p.threshold.value if p.threshold else None
        curves = [(p.name, *p.binary_view(), value)]
    else:
        curves = [
            (f"{p.name}: {c}", (p.targets == i).astype(int), p.probs[:, i], None)
            for i, c in enumerate(p.classes)
        ]
    return [c for c in curves if 0 < c[1].sum() < len(c[1])]


def _legend_or_note(ax, loc: str) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc=loc, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no curve: these images hold one class only", ha="center", fontsize=9)


def roc_figure(models: list[Predictions]) -> Figure:
    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.subplots()
    for k, p in enumerate(models):
        for label, truth, s, value in _curves_of(p):
            fpr, tpr, _ = roc_curve(truth, s)

            line = ax.plot(fpr, tpr, label=f"{label} (AUROC {auc(fpr, tpr):.3f})")[0]
            if value is not None:  # a binary model's own decision, as the card makes it
                decided = p.decisions() == p.positive
                sens = decided[truth == 1].mean()
                fpr_at = decided[truth == 0].mean()
                ax.plot(fpr_at, sens, "o", color=line.get_color(), markersize=8)
                ax.annotate(
                    f"threshold {value:.3g}\nsens {share(sens)}, spec {share(1 - fpr_at)}",
                    (fpr_at, sens),
                    xytext=(14, -30 - 28 * k),
                    textcoords="offset points",
                    fontsize=8,
                )
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
    ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity", title="ROC")
    _legend_or_note(ax, "lower right")
    fig.tight_layout()
    return fig


def pr_figure(models: list[Predictions]) -> Figure:
    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.subplots()
    for p in models:
        for label, truth, s, _ in _curves_of(p):
            precision, recall, _ = precision_recall_curve(truth, s)
            ax.plot(recall, precision, label=f"{label} (prevalence {truth.mean():.2f})")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall")
    ax.set_ylim(0, 1.02)
    _legend_or_note(ax, "lower left")
    fig.tight_layout()
    return fig


def threshold_figure(p: Predictions) -> Figure:
    """Sensitivity, specificity and precision against the threshold; the frozen one marked."""
    if p.binary:
        truth, s = p.binary_view()
        what = p.classes[p.positive]
    else:
        view = p.binary_view()
        if view is None:
            raise CxrError(f"{p.name}: no binary view (no 'normal' class)")
        (truth, s), what = view, "not normal"
    grid = np.linspace(0, 1, 201)
    decided = s[None, :] >= grid[:, None]
    sens = (decided & (truth == 1)).sum(1) / max(truth.sum(), 1)
    spec = (~decided & (truth == 0)).sum(1) / max((truth == 0).sum(), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = (decided & (truth == 1)).sum(1) / decided.sum(1)
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.subplots()
    ax.plot(grid, sens, label="sensitivity (recall)")
    ax.plot(grid, spec, label="specificity")
    ax.plot(grid, prec, label="precision (PPV)")
    if p.binary and p.threshold:
        # in the legend, not beside the line: near 1 a label there runs over the curves
        ax.axvline(p.threshold.value, color="black", linestyle="--", linewidth=1,
                   label=f"chosen threshold {share(p.threshold.value)}")  # fmt: skip
    ax.set(xlabel=f"threshold on P({what})", ylabel="rate", title="Trade-off against threshold")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(p: Predictions) -> Figure:
    y, d, k = p.targets, p.decisions(), len(p.classes)
    counts = np.array([[int(((y == t) & (d == q)).sum()) for q in range(k)] for t in range(k)])
    rates = counts / np.clip(counts.sum(1, keepdims=True), 1, None)
    fig = Figure(figsize=(4.2 * 2 + 0.6 * k, 3.2 + 0.4 * k))
    panels = ((counts, "counts", str), (rates, "share of each true class", share))
    for ax, (values, title, shown) in zip(fig.subplots(1, 2), panels, strict=True):
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for t in range(k):
            for q in range(k):
                colour = "white" if rates[t, q] > 0.6 else "black"
                ax.text(q, t, shown(values[t, q]), ha="center", va="center", color=colour)
        ax.set_xticks(range(k), p.classes, rotation=30, ha="right")
        ax.set_yticks(range(k), p.classes)
        ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix: {title}")
    fig.tight_layout()
    return fig


def reliability_figure(p: Predictions, bins: int = 10) -> Figure:
    """Observed frequency against predicted probability (positive class, or the arg-max's
    confidence for a multi-class model), with how many predictions each bin holds."""
    if p.binary:
        truth, s = p.binary_view()
        what = f"P({p.classes[p.positive]})"
    else:
        s, truth, what = p.probs.max(1), (p.probs.argmax(1) == p.targets).astype(int), "confidence"
    centres, observed, counts = reliability_bins(truth, s, bins)
    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot(centres, observed, "o-", label=p.name)
    for x, y, n in zip(centres, observed, counts, strict=True):
        ax.annotate(str(n), (x, y), xytext=(4, -10), textcoords="offset points", fontsize=7)
    ax.set(xlabel=f"predicted {what}", ylabel="observed frequency", title="Reliability")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def read_history(history: Path) -> dict[str, np.ndarray]:
    """A run's history.csv (one row per epoch, counted from 1) as columns of floats."""
    with history.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = rows[0].keys() if rows else []
    return {k: np.array([float(r[k]) if r.get(k) else np.nan for r in rows]) for k in keys}


def learning_curves_figure(history: Path) -> Figure:
    """Training against tuning-split figures per epoch: a widening loss gap is over-fitting."""
    h = read_history(history)
    epochs = h["epoch"].astype(int)

    def series(key: str) -> np.ndarray:
        return h.get(key, np.full(len(epochs), np.nan))

    fig = Figure(figsize=(11, 3.4))
    axes = fig.subplots(1, 3)
    for ax, key, title in zip(axes[:2], ("loss", "acc"), ("loss", "accuracy"), strict=True):
        ax.plot(epochs, series(f"train_{key}"), "o-", label="train")
        ax.plot(epochs, series(f"val_{key}"), "o-", label="tuning split")
        ax.set(xlabel="epoch", title=title)
        ax.legend(fontsize=8)
    axes[2].plot(epochs, series("val_auroc"), "o-", color="C1", label="tuning split")
    best = int(np.nanargmax(series("val_auroc")))
    axes[2].plot(epochs[best], series("val_auroc")[best], "*", markersize=14, color="C3")
    axes[2].set(xlabel="epoch", title="tuning-split AUROC (star: kept)")
    for ax in axes:  # epochs are whole: no "1.2" tick between epoch 1 and 2
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def _short(name: str, most: int = 26) -> str:
    return name if len(name) <= most else name[: most - 1] + "…"


def errors_figure(p: Predictions, count: int = 8, columns: int = 4) -> Figure:
    """The most confident mistakes, to look at before trusting the model: up to `columns` a row,
    each captioned with its true and called class, at a size where the captions read."""
    d = p.decisions()
    wrong = np.flatnonzero(d != p.targets)
    confidence = p.probs[wrong, d[wrong]]
    picked = wrong[np.argsort(-confidence)][:count]
    if not len(picked):
        fig = Figure(figsize=(3.2, 0.6))
        fig.text(0.5, 0.5, "no errors on these images", ha="center", va="center", fontsize=11)
        return fig
    rows = -(-len(picked) // columns)
    wide = min(len(picked), columns)
    fig = Figure(figsize=(2.6 * wide, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, wide, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, picked, strict=False):
        try:
            ax.imshow(read_image(p.paths[i]).pixels, cmap="gray")
        except CxrError:
            ax.text(0.5, 0.5, "unreadable", ha="center")
        ax.set_title(
            f"{_short(Path(p.paths[i]).name)}\ntrue {p.labels[i]}\n"
            f"called {p.classes[d[i]]}\n(P({p.classes[d[i]]}) {percent(p.probs[i, d[i]])})",
            fontsize=10,
        )
    return fig


def evaluation_figures(p: Predictions) -> dict[str, tuple[str, Figure]]:
    """The figures of one evaluation, by file stem: (title, figure). `cxr evaluate` saves them,
    `cxr report` embeds them."""
    figures = {
        "roc": ("ROC", roc_figure([p])),
        "precision_recall": ("Precision-recall", pr_figure([p])),
    }
    if p.binary or p.binary_view() is not None:
        figures["threshold"] = (
            "Sensitivity, specificity and precision against threshold",
            threshold_figure(p),
        )
    figures["confusion_matrix"] = ("Confusion matrix", confusion_figure(p))
    figures["reliability"] = ("Reliability", reliability_figure(p))
    figures["errors"] = ("Most confident errors", errors_figure(p))
    return figures


def shift_figure(shift: dict) -> Figure:
    """One panel per acquisition change: AUROC and, at the stored threshold, sensitivity and
    specificity against strength; the unchanged images' value dotted."""
    perturbations = shift["perturbations"]
    cols = 4
    rows = -(-len(perturbations) // cols)
    fig = Figure(figsize=(3.3 * cols, 2.9 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    keys = [k for k in ("auroc", "macro_auroc", "sensitivity", "specificity", "accuracy")
            if k in perturbations[0]]  # fmt: skip
    for ax, p in zip(axes, perturbations, strict=False):
        base = p["strength"].index(p["identity"])
        for k, key in enumerate(keys):
            line = ax.plot(
                p["strength"],
                p[key],
                "o-",
                color=f"C{k}",
                label=key.replace("_", " ").replace("auroc", "AUROC"),
            )
            ax.axhline(p[key][base], color=line[0].get_color(), linestyle=":", linewidth=0.8)
        ax.set_title(p["name"], fontsize=10)
        ax.set_xlabel(p["parameter"], fontsize=8)
        ax.set_ylim(min(0.5, np.nanmin([p[k] for k in keys])) - 0.02, 1.02)
        ax.tick_params(labelsize=8)
    for ax in axes[len(perturbations) :]:
        ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    spare = axes[-1] if len(axes) > len(perturbations) else axes[0]
    spare.legend(handles, labels, fontsize=9, loc="center", title="dotted: unchanged images")
    threshold = shift.get("threshold")
    fig.suptitle(
        f"Acquisition shift on {shift['n']} images"
        + (f" (operating point: threshold {threshold:.4g})" if threshold is not None else ""),
        fontsize=11,
    )
    fig.tight_layout()
    return fig
