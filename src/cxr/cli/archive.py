"""`cxr predict` at archive scale (--devices, --num-nodes, --list, --dicomweb, --resume): the
command-line side of `cxr.inference.archive`. Every rank runs this same command line (Lightning's
children, torchrun, SLURM); only rank 0 checks and creates `--out`, draws the bar and prints."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from cxr.cli.common import in_file, new_output, progress, say
from cxr.errors import CxrError
from cxr.outputs import must_be_new, write_atomically

WORKLIST, SUMMARY = "worklist", "summary.json"


def launched_rank() -> int:
    """This process's global rank as its launcher set it (torchrun, SLURM, or Lightning's own
    children), before any process group exists."""
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key])
    return int(os.environ.get("LOCAL_RANK", 0)) + int(os.environ.get("NODE_RANK", 0))


def out_unless_resumed(ctx: typer.Context, path: Path | None) -> Path | None:
    """`--out` must be new, except when `--resume` continues it, and except in the other ranks
    of an archive run (rank 0 made it)."""
    if path is None or ctx.params.get("resume") or launched_rank() != 0:
        return path
    return new_output(path)


Devices = Annotated[
    int | None,
    typer.Option(help="Archive scoring: processes per machine (Lightning devices).", min=1),
]
NumNodes = Annotated[
    int, typer.Option(help="Archive scoring: machines (torchrun or SLURM starts them).", min=1)
]
Strategy = Annotated[
    str, typer.Option(help="Archive scoring: Lightning strategy (auto: ddp for 2+).")
]
Lists = Annotated[
    list[Path] | None,
    in_file("Archive scoring: a listing of paths (text or CSV 'path').", "--list"),
]
DicomWeb = Annotated[
    str | None, typer.Option(help="Archive scoring: a DICOMweb server's URL (with --study).")
]
Studies = Annotated[
    list[str] | None,
    typer.Option("--study", help="Archive scoring: a Study Instance UID to score."),
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume", is_eager=True, help="Archive scoring: finish the run in --out FOLDER."
    ),
]


@dataclass
class ArchiveRun:
    """What the archive options asked for."""

    lists: list[Path]
    dicomweb: str | None
    studies: list[str]
    devices: int | None
    num_nodes: int
    strategy: str
    resume: bool

    @property
    def wanted(self) -> bool:
        asked = self.lists or self.dicomweb or self.studies or self.devices or self.resume
        return bool(asked) or self.num_nodes > 1 or self.strategy != "auto"


def run_archive(
    run: ArchiveRun,
    model: Path,
    images: list[Path],
    out: Path | None,
    fmt: str,
    batch: int,
    workers: int,
    pseudonymize: bool,
    score_anyway: bool,
) -> None:
    """Score into the folder `out`: parts, then (rank 0) the merged worklist and a summary."""
    if out is None:
        raise CxrError("archive scoring writes a folder: give --out FOLDER")
    if run.resume and not out.exists():
        raise CxrError(f"--resume: {out} does not exist; start without --resume")
    import torch

    from cxr.inference.archive import Launch, per_rank, score_archive, threads_per_process
    from cxr.inference.archive_listing import listing_for
    from cxr.inference.predictor import OnnxPredictor, TorchPredictor
    from cxr.inference.shards import check_manifest
    from cxr.models.io import load_model

    listing = listing_for(images, run.lists, run.dicomweb, run.studies, pseudonymize)
    devices = run.devices or 1
    threads = threads_per_process(devices)
    torch.set_num_threads(threads)
    onnx = model.suffix == ".onnx"
    predictor = OnnxPredictor(model, threads) if onnx else TorchPredictor(load_model(model), model)
    launch = Launch(devices, run.num_nodes, run.strategy)
    if launched_rank() != 0:
        score_archive(predictor, listing, out, launch, batch, workers)
        return
    manifest = {
        "model": hashlib.sha256(model.read_bytes()).hexdigest(),
        "inputs": [str(p) for p in images],
        "lists": [str(p) for p in run.lists],
        "dicomweb": run.dicomweb,
        "studies": list(run.studies),
        "pseudonymize_names": pseudonymize,
    }
    check_manifest(out, manifest, run.resume)
    total = sum(1 for _ in listing)
    with progress() as stages:
        worklist = score_archive(
            predictor, listing, out, launch, batch, workers, stages, total, score_anyway
        )
    target = out / f"{WORKLIST}.{fmt}"
    text = worklist.json_text() if fmt == "json" else worklist.csv_text()
    replace_file(target, text, run.resume)
    reasons = Counter(why.split(":", 1)[0] for _, why in worklist.failures)
    summary = {
        "images": len(worklist.rows) + len(worklist.not_scored) + len(worklist.failures),
        "ranked": len(worklist.rows),
        "not_scored": len(worklist.not_scored),
        "skipped": len(worklist.failures),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "ranks": per_rank(out),
    }
    replace_file(out / SUMMARY, json.dumps(summary, indent=2) + "\n", run.resume)
    for line in summary_lines(summary):
        say(line)
    say(f"worklist: {target}")
    if worklist.failures:
        raise SystemExit(1)


def summary_lines(summary: dict) -> list[str]:
    """The summary as a person reads it: what was scored, set apart and skipped, and how fast."""
    lines = [
        f"{summary['images']} images: {summary['ranked']} ranked, {summary['not_scored']} not "
        f"scored (probably not frontal chest X-rays), {summary['skipped']} skipped"
    ]
    lines += [f"  skipped, {why}: {n}" for why, n in summary["skipped_by_reason"].items()]
    ranks = summary["ranks"]
    lines += [
        f"  rank {r['rank']}: {r['images']} images in {r['seconds']:.1f} s, "
        f"{r['img_per_s']:.1f} img/s"
        + (f"; {r['done_before']} done before" if r["done_before"] else "")
        for r in ranks
    ]
    longest = max((r["seconds"] for r in ranks), default=0)
    if len(ranks) > 1 and longest:
        together = sum(r["images"] for r in ranks) / longest
        lines.append(f"  all ranks: {together:.1f} img/s (images over the slowest rank's time)")
    return lines


def replace_file(path: Path, text: str, resume: bool) -> None:
    """Written whole under a temporary name, then renamed; a resumed run replaces its own
    earlier merge, a new run never replaces anything."""
    if not resume:
        must_be_new(path)
    write_atomically(path, text)
