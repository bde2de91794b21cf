"""`cxr levers`: is a change to the recipe worth keeping? Each lever (a set of config overrides)
is trained beside the baseline on the same patient split and judged on the same internal-test
images with a paired DeLong test, with its wall time; optionally across patient folds as well.
Where the config declares an external judge (`evaluation.external`), each lever is also scored on
it and paired against the baseline there: the internal test cannot tell a recipe that fits this
hospital's split from one that holds outside it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxr.errors import CxrError
from cxr.numbers import interval, number
from cxr.outputs import default_output_dir, must_be_new
from cxr.training.config import load_config

if TYPE_CHECKING:
    from cxr.evaluation.predictions import Predictions

BASELINE = "baseline"


@dataclass(frozen=True)
class Lever:
    name: str
    overrides: tuple[str, ...]


def parse_lever(text: str) -> Lever:
    """`"label smoothing: optim.label_smoothing=0.1"`; several overrides separated by spaces."""
    name, sep, rest = text.partition(":")
    overrides = tuple(rest.split())
    if not sep or not name.strip() or not overrides or any("=" not in o for o in overrides):
        raise CxrError(f"lever {text!r}: write 'NAME: key=value [key=value ...]'")
    if name.strip() == BASELINE:
        raise CxrError(f"lever {text!r}: '{BASELINE}' is the config itself; name the lever")
    return Lever(name.strip(), overrides)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "lever"


def run_levers(
    config: Path | None,
    overrides: list[str],
    levers: list[Lever],
    out: Path | None = None,
    folds: int | None = None,
    bootstrap: int = 1000,
    on_run: Callable[[str, dict], None] | None = None,
) -> Path:
    """Train the baseline (`config` with `overrides`) and every lever (its overrides on top) into
    `out`; levers.json and levers.md hold the table."""
    names = [BASELINE, *(lever.name for lever in levers)]
    if len(set(map(_slug, names))) < len(names):
        raise CxrError(f"lever names must differ: {names}")
    every = [Lever(BASELINE, ()), *levers]
    for lever in every:  # a mistyped key is refused now, not after the baseline has trained
        load_config(config, [*overrides, *lever.overrides])
    from cxr.evaluation.cv import read_cv, run_cv  # PyTorch loads once the levers are valid
    from cxr.evaluation.held_out import train_and_test

    if out is None:
        out = default_output_dir("levers", Path(config).stem if config else "levers")
    else:
        must_be_new(out).mkdir(parents=True)
    rows: list[dict] = []
    payload = {"config": str(config), "overrides": overrides, "folds": folds, "rows": rows}
    base = None
    for lever in every:
        slug = _slug(lever.name)
        cfg = load_config(config, [*overrides, *lever.overrides, f"name={slug}", f"runs_dir={out}"])
        start, cpu = time.perf_counter(), time.process_time()
        run, result = train_and_test(cfg, bootstrap)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        row = {
            "lever": lever.name,
            "overrides": list(lever.overrides),
            "run": run.name,
            "wall_s": round(wall, 1),  # training and the internal-test evaluation
            "cpu_s": round(cpu, 1),  # all of this process's threads: less load-dependent
            "metrics": _numbers(result.scores["metrics"]),
            "ci95": result.scores["ci95"],
        }
        if result.external:  # the config's external judge, beside the internal test
            row["external"] = dict(result.external.figures)
        if folds:
            cv = run_cv(cfg, folds, out / f"{slug}-cv{folds}", bootstrap=200)
            row["folds"] = [f["metrics"] for f in read_cv(cv)["folds"]]
        if base is None:
            base = result
        else:  # paired on the very same images; refuses a lever that moved the internal test
            row.update(_paired(base.predictions, result.predictions))
            if base.external and result.external:
                row["external"].update(
                    _paired(base.external.predictions, result.external.predictions)
                )
            if folds:
                row["fold_auroc_difference"] = _fold_differences(rows[0], row)
        rows.append(row)
        # written after every lever: a long table that stops early keeps what it measured
        (out / "levers.json").write_text(json.dumps(payload, indent=2))
        (out / "levers.md").write_text(lever_table(payload))
        if on_run:
            on_run(lever.name, row)
    return out


def _paired(base: Predictions, lever: Predictions) -> dict:
    """The lever's AUROC against the baseline's on the same images (DeLong, lever - baseline)."""
    from cxr.evaluation.compare import aligned
    from cxr.metrics.stats import delong_test

    base, lever = aligned([base, lever])
    if not (base.binary_view() and lever.binary_view()):
        return {}
    truth, base_scores = base.binary_view()
    delong = delong_test(truth, lever.binary_view()[1], base_scores)
    return {
        "auroc_difference": delong.difference,
        "auroc_difference_ci95": list(delong.ci),
        "delong_p": delong.p_value,
    }


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def _fold_differences(base: dict, row: dict) -> dict:
    key = "auroc" if "auroc" in base["folds"][0] else "macro_auroc"
    diff = np.array([r[key] - b[key] for b, r in zip(base["folds"], row["folds"], strict=True)])
    return {
        "mean": float(diff.mean()),
        "sd": float(diff.std(ddof=1)),
        "better": int((diff > 0).sum()),
    }


def lever_table(payload: dict) -> str:
    """The markdown table docs/benchmarks.md quotes: one row per lever, baseline first."""
    folds = payload["folds"]
    head = [
        "lever",
        "overrides",
        "internal-test AUROC (95 % CI)",
        "Δ AUROC vs baseline (95 % CI)",
        "DeLong p",
        "sensitivity / specificity at its threshold",
        "ECE",
        "train + test: wall / CPU",
    ]
    judge = next((r["external"]["judge"] for r in payload["rows"] if "external" in r), None)
    if judge:
        head += [f"{judge} {k} (95 % CI)" for k in ("AUROC", "specificity")]
        head.append(f"{judge} Δ AUROC vs baseline, DeLong p")
    if folds:
        head.append(f"Δ AUROC over {folds} folds: mean ± sd (folds better)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in payload["rows"]:
        m, ci = row["metrics"], row["ci95"]
        key = "auroc" if "auroc" in m else "macro_auroc"
        cells = [
            row["lever"],
            " ".join(f"`{o}`" for o in row["overrides"]) or "(the config)",
            f"{number(m[key])} ({interval(ci.get(key))})",
            (
                f"{row['auroc_difference']:+.4f} ({interval(row['auroc_difference_ci95'])})"
                if "auroc_difference" in row
                else "–"
            ),
            number(row["delong_p"]) if "delong_p" in row else "–",
            (
                f"{number(m['sensitivity'])} / {number(m['specificity'])}"
                if "sensitivity" in m
                else "–"
            ),
            number(m.get("ece")),
            f"{row['wall_s']:.0f} s / {row['cpu_s']:.0f} s",
        ]
        if judge:
            cells += _judge_cells(row.get("external"))
        if folds:
            d = row.get("fold_auroc_difference")
            cells.append(f"{d['mean']:+.4f} ± {d['sd']:.4f} ({d['better']}/{folds})" if d else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _judge_cells(judged: dict | None) -> list[str]:
    """A lever's external-judge cells: AUROC and specificity with intervals, the paired test."""
    if not judged:
        return ["–"] * 3
    cells = [
        f"{number(judged[k])} ({interval(judged[f'{k}_ci95'])})" for k in ("auroc", "specificity")
    ]
    if "delong_p" not in judged:
        return [*cells, "–"]
    return [*cells, f"{judged['auroc_difference']:+.4f}, p {number(judged['delong_p'])}"]
