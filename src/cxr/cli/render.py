"""Tables printed by the commands, apart from the commands themselves."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from cxr.cli.common import console, say
from cxr.numbers import interval, number

BINARY_KEYS = ("auroc", "average_precision", "accuracy", "sensitivity", "specificity",
               "precision", "npv", "f1", "brier", "ece")  # fmt: skip
MULTICLASS_KEYS = ("macro_auroc", "weighted_auroc", "accuracy", "balanced_accuracy")


def print_scores(p, scores: dict) -> None:
    m, ci = scores["metrics"], scores["ci95"]
    table = Table(title=escape(f"{p.name} on {m['n']} images ({p.described})"))
    for column in ("metric", "value", "95 % CI"):
        table.add_column(column)
    for key in BINARY_KEYS if p.binary else MULTICLASS_KEYS:
        exact = " (Wilson)" if scores.get("ci_method", {}).get(key) == "Wilson" else ""
        table.add_row(key, number(m[key]), interval(ci.get(key)) + exact)
    for name, value in (m.get("pairwise_auroc") or {}).items():
        table.add_row(escape(f"AUROC {name}"), number(value), interval(ci.get(f"auroc {name}")))
    console.print(table)
    print_operating_points(scores.get("operating_points"))


def print_external(figures: dict) -> None:
    """A config's external judge beside the internal test: the same figures, another source."""
    table = Table(
        title=escape(
            f"external judge {figures['judge']}: {figures['images']} images of another source "
            f"({figures['normal']} normal, {figures['pneumonia']} pneumonia), at the stored "
            f"threshold {number(figures['threshold'])}"
        )
    )
    for column in ("metric", "value", "95 % CI"):
        table.add_column(column)
    for key in ("auroc", "sensitivity", "specificity", "ece"):
        exact = " (Wilson)" if key in ("sensitivity", "specificity") else ""
        table.add_row(key, number(figures[key]), interval(figures.get(f"{key}_ci95")) + exact)
    console.print(table)


def print_operating_points(points: list[dict] | None) -> None:
    """Thresholds chosen on the tuning split for target sensitivities, with what they give here."""
    if not points:
        return
    table = Table(title="operating points chosen on the tuning split (95 % patient-bootstrap CIs)")
    for column in ("target sensitivity", "threshold", "sensitivity here", "specificity here"):
        table.add_column(column)
    for o in points:
        table.add_row(
            number(o["target_sensitivity"], 2),
            f"{number(o['threshold'])} ({interval(o['threshold_ci95'])})",
            *[
                f"{number(o[k])} ({interval(o[f'{k}_ci95'])}"
                + (", Wilson)" if o[f"{k}_ci_method"] == "Wilson" else ")")
                for k in ("sensitivity", "specificity")
            ],
        )
    console.print(table)


def print_worklist(worklist, show: int) -> None:
    """The ranked X-rays, then the images set apart as probably not frontal chest X-rays."""
    table = Table(
        title=escape(
            f"worklist: {len(worklist.rows)} X-rays, most urgent first "
            f"(urgency = {worklist.urgency_of})"
        )
    )
    for column in ("rank", "file", "urgency", "decision (threshold)", "warnings"):
        table.add_column(column)
    for row in worklist.rows[:show]:
        table.add_row(
            str(row.rank),
            escape(Path(row.path).name),
            f"{row.urgency:.3f}",
            escape(row.decision),
            escape("; ".join(row.warnings)),
        )
    console.print(table)
    if len(worklist.rows) > show:
        say(f"... {len(worklist.rows) - show} more (--show, --out)")
    if worklist.not_scored:
        anyway = any(r.score_anyway for r in worklist.not_scored)
        apart = Table(
            title=f"not scored: {len(worklist.not_scored)} probably not frontal chest X-rays"
        )
        for column in ("file", "why", *(["scored anyway (--score-anyway)"] if anyway else [])):
            apart.add_column(column)
        for row in worklist.not_scored[:show]:
            shown = [escape(row.decision)] if anyway else []
            apart.add_row(escape(Path(row.path).name), escape("; ".join(row.flags)), *shown)
        console.print(apart)


def print_comparison(comparison) -> None:
    table = Table(title=f"{comparison.scores[0]['metrics']['n']} images, the same for every model")
    table.add_column("model")
    for key in comparison.columns:
        table.add_column(key)
    for m, s in zip(comparison.models, comparison.scores, strict=True):
        name = m.name + (f" (trained on {m.learned_from} of these)" if m.learned_from else "")
        table.add_row(escape(name), *[number(s["metrics"][k]) for k in comparison.columns])
    console.print(table)
    for name, warning in comparison.caveats():
        say(f"warning, {name}: {warning}", "yellow")
    unfair = comparison.unfair()
    for pair in comparison.pairs:
        text = f"{pair.a} vs {pair.b}: "
        if pair.delong:
            d = pair.delong
            text += f"AUROC difference {d.difference:+.4f}, DeLong p={d.p_value:.3g}; "
        text += (
            f"McNemar {pair.mcnemar.only_a_right}/{pair.mcnemar.only_b_right} "
            f"p={pair.mcnemar.p_value:.3g}"
        )
        if unfair:
            text += f" (no winner: {'; '.join(unfair)})"
        say(text)


def print_summary(summary) -> None:
    """`cxr data inspect`: split x class counts, then one line per kind of finding."""
    table = Table(title=escape(f"{summary.root} ({summary.layout}, scheme {summary.scheme})"))
    for column in ("split", "class", "images", "patients/studies"):
        table.add_column(
            column, justify="right" if column in {"images", "patients/studies"} else "left"
        )
    for split, per_class in summary.counts.items():
        for label, n in per_class.items():
            table.add_row(
                escape(split), escape(label), f"{n:,}", f"{summary.patients[split][label]:,}"
            )
    console.print(table)
    say(
        f"images {summary.images:,} | imbalance {summary.imbalance_ratio:.2f} : 1 | "
        f"width {summary.width_range[0]}-{summary.width_range[1]} px, "
        f"height {summary.height_range[0]}-{summary.height_range[1]} px | "
        f"modes {summary.modes} | formats {summary.formats} | colour images {summary.colour_images}"
    )
    say(
        f"duplicates: {summary.duplicate_groups} groups, "
        f"{summary.redundant_copies} redundant copies "
        f"({summary.duplicates_across_splits} across splits, "
        f"{summary.duplicates_across_labels} with conflicting labels)"
    )
    say(f"unreadable files: {len(summary.unreadable)}")
    for bad in summary.unreadable:
        say(f"  {bad['path']}: {bad['reason']}", "red")


def print_train_throughput(rows, peak: dict, threads: int) -> None:
    table = Table(
        title=f"training throughput, {threads} threads; "
        f"torch.mm 2048²: {peak['fp32']} GFLOP/s fp32, {peak['bf16']} bf16"
    )
    for column in ("model", "px", "precision", "memory format", "BatchNorm", "frozen stages",
                   "images/s", "GFLOP/image", "GFLOP/s", "% of mm peak"):  # fmt: skip
        table.add_column(column)
    for r in rows:
        share = 100 * r.achieved_gflops / peak[r.precision]
        table.add_row(
            r.model, str(r.size), r.precision, r.memory_format, r.batchnorm, str(r.frozen_stages),
            f"{r.images_per_s:.1f}", f"{r.gflop_per_image:.2f}", f"{r.achieved_gflops:.0f}",
            f"{share:.0f} %",
        )  # fmt: skip
    console.print(table)


def print_predict_throughput(model: str, rows, peak: dict) -> None:
    table = Table(
        title=escape(
            f"{model}: inference, {rows[0].gflop_per_image:.2f} GFLOP/image; torch.mm 2048²: "
            f"{peak['fp32']} GFLOP/s fp32, {peak['bf16']} bf16"
        )
    )
    for column in ("backend", "batch", "images/s", "GFLOP/s", "% of fp32 mm", "peak RSS MiB"):
        table.add_column(column)
    for r in rows:
        share = 100 * r.achieved_gflops / peak["fp32"]
        table.add_row(
            r.backend, str(r.batch), f"{r.images_per_s:.1f}", f"{r.achieved_gflops:.0f}",
            f"{share:.0f} %", f"{r.peak_rss_mib:.0f}",
        )  # fmt: skip
    console.print(table)


def print_step_profile(model: str, profiles, peak: dict) -> None:
    """Share of the step and achieved GFLOP/s (against the run's mm) per operator type and part."""
    for key in ("by_operator", "by_part"):
        table = Table(
            title=f"{model}, batch {profiles[0].batch}, {profiles[0].size} px: training step "
            f"{key[3:]}; torch.mm 2048²: {peak['fp32']} GFLOP/s fp32, {peak['bf16']} bf16"
        )
        table.add_column(key[3:])
        for p in profiles:
            table.add_column(f"{p.variant}: % of step")
            table.add_column("GFLOP/s (% mm)")
        for name in dict.fromkeys(s.name for p in profiles for s in getattr(p, key)):
            cells = []
            for p in profiles:
                share = {s.name: s for s in getattr(p, key)}.get(name)
                mm = peak[p.variant.split("-")[0]]
                cells += (
                    [
                        f"{share.percent:.1f}",
                        f"{share.gflops:.1f} ({100 * share.gflops / mm:.1f} %)",
                    ]
                    if share and share.gflop
                    else [f"{share.percent:.1f}" if share else "–", "–"]
                )
            table.add_row(escape(name), *cells)
        console.print(table)
    for p in profiles:
        achieved = p.images_per_s * p.step_gflop / p.batch
        mm = peak[p.variant.split("-")[0]]
        say(
            f"{p.variant}: {p.images_per_s:.1f} img/s unprofiled, {p.step_gflop / p.batch:.2f} "
            f"GFLOP/image, {achieved:.1f} GFLOP/s = {100 * achieved / mm:.1f} % of mm"
        )


def print_cv(folder) -> None:
    from cxr.evaluation.cv import read_cv

    cv = read_cv(folder)
    table = Table(title=f"{cv['name']}: {len(cv['folds'])} patient folds, internal test each")
    for column in ("metric", "mean", "SD", "min", "max"):
        table.add_column(column)
    for key, v in cv["summary"].items():
        table.add_row(key, *[number(v[k]) for k in ("mean", "sd", "min", "max")])
    console.print(table)


def print_decode_costs(rows) -> None:
    """`cxr benchmark decode`: memory and CPU one image can cost, against a real radiograph."""
    table = Table(title="the reader at its limits, each file read in a fresh process")
    for column in ("case", "file MiB", "+ peak MiB", "CPU s", "× yardstick", "outcome"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            escape(r.case), f"{r.file_mib:g}", f"{r.extra_mib:.0f}", f"{r.cpu_s:.2f}",
            f"{r.times_yardstick:g}", escape(r.outcome),
        )  # fmt: skip
    console.print(table)
