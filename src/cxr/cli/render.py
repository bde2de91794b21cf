"""Tables printed by several commands, apart from the commands themselves."""

from __future__ import annotations

from rich.table import Table

from cxr.cli.common import console


def print_scores(p, scores: dict) -> None:
    m, ci = scores["metrics"], scores["ci95"]
    keys = (
        (
            "auroc",
            "average_precision",
            "accuracy",
            "sensitivity",
            "specificity",
            "precision",
            "npv",
            "f1",
            "brier",
            "ece",
        )
        if p.binary
        else ("macro_auroc", "weighted_auroc", "accuracy", "balanced_accuracy")
    )
    table = Table(title=f"{p.name} on {m['n']} images ({p.described})")
    for column in ("metric", "value", "95 % CI"):
        table.add_column(column)
    for key in keys:
        lo_hi = ci.get(key)
        exact = " (exact)" if key in scores.get("ci_method", {}) else ""
        interval = f"{lo_hi[0]:.4f}–{lo_hi[1]:.4f}{exact}" if lo_hi else ""
        table.add_row(key, f"{m[key]:.4f}", interval)
    for name, value in (m.get("pairwise_auroc") or {}).items():
        table.add_row(f"AUROC {name}", f"{value:.4f}", "")
    console.print(table)


def print_cv(folder) -> None:
    from cxr.evaluation.cv import read_cv

    cv = read_cv(folder)
    table = Table(title=f"{cv['name']}: {len(cv['folds'])} patient folds, internal test each")
    for column in ("metric", "mean", "SD", "min", "max"):
        table.add_column(column)
    for key, v in cv["summary"].items():
        table.add_row(key, *[f"{v[k]:.4f}" for k in ("mean", "sd", "min", "max")])
    console.print(table)
