"""`cxr benchmark train | profile | predict`: speed on this machine, against a matmul yardstick."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cxr.cli.common import (
    OptionalImages,
    comma_separated,
    model_file,
    out_option,
    progress,
    say,
    valid_batch_sizes,
)
from cxr.cli.render import print_predict_throughput, print_step_profile, print_train_throughput
from cxr.settings import data_root

benchmark_app = typer.Typer(
    help="Measure speed on this machine.", no_args_is_help=True, rich_markup_mode="markdown"
)
JsonOut = Annotated[Path | None, out_option("Write the figures as JSON here")]
# cxr.inference.benchmark.BACKENDS (importing it loads torch); tests/test_cli.py pins them equal
BACKENDS = ("torch-eager", "torch-fast", "torch-bf16", "onnx-as-traced", "onnx", "onnx-1thread",
            "onnx-nospin", "onnx-int8")  # fmt: skip
VARIANTS = tuple(f"{p}-{f}" for p in ("fp32", "bf16") for f in ("nchw", "channels_last"))


def _file_or_name(value: str) -> str:
    """A registered name has no folder and no suffix; anything else must be a model file."""
    path = Path(value)
    if path.suffix or len(path.parts) > 1 or path.is_dir():
        model_file(path)
    return value


@benchmark_app.command("train")
def benchmark_train(
    models: Annotated[list[str], typer.Argument(metavar="MODEL", help="Registered model names.")],
    batch: Annotated[int, typer.Option(help="Batch size.", min=1)] = 32,
    steps: Annotated[
        int, typer.Option(help="Optimiser steps timed per variant and round.", min=1)
    ] = 5,
    size: Annotated[
        int | None, typer.Option(help="Input side in px (default: each model's own).", min=16)
    ] = None,
    out: JsonOut = None,
) -> None:
    """Training images/s: fp32 vs bf16 autocast, NCHW vs channels-last, frozen BatchNorm
    (`optim.freeze_bn`) and frozen early stages (`optim.freeze_stages=3`), one process,
    interleaved.

    Example: cxr benchmark train cxr_cnn classic_cnn efficientnet_lite0 --out train-bench.json
    """
    import torch

    from cxr.speed import matmul_gflops
    from cxr.training.benchmark import train_throughput

    rows = []
    with progress() as stages:
        step = stages("torch.mm yardstick", 1)
        peak = matmul_gflops()
        step(1)
        step = stages("timing training steps", len(models))
        for name in models:
            rows += train_throughput(name, batch=batch, steps=steps, size=size)
            step(1)
    print_train_throughput(rows, peak, torch.get_num_threads())
    if out:
        out.write_text(
            json.dumps({"matmul_gflops": peak, "results": [r.to_dict() for r in rows]}, indent=2)
        )
        say(f"wrote {out}")


@benchmark_app.command("profile")
def benchmark_profile(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A registered model name.")],
    batch: Annotated[int, typer.Option(help="Batch size.", min=1)] = 32,
    steps: Annotated[int, typer.Option(help="Optimiser steps profiled per variant.", min=1)] = 3,
    variants: Annotated[
        str,
        typer.Option(
            help=f"precision-layout, comma-separated: {', '.join(VARIANTS)}.",
            callback=comma_separated("--variants", "a precision-layout", VARIANTS),
        ),
    ] = "fp32-nchw,fp32-channels_last",
    out: JsonOut = None,
) -> None:
    """Where one training step's time goes (torch.profiler): % of the step and achieved GFLOP/s
    per operator type and per part of the model, against this machine's matrix multiply.

    Example: cxr benchmark profile efficientnet_lite0 --out profile-lite0.json
    """
    from cxr.speed import matmul_gflops
    from cxr.training.profiling import profile_training_step

    chosen = tuple(v.strip() for v in variants.split(","))
    with progress() as stages:
        step = stages("torch.mm yardstick", 1)
        peak = matmul_gflops()
        step(1)
        step = stages("profiling training steps", 1)
        profiles = profile_training_step(model, batch=batch, variants=chosen, steps=steps)
        step(1)
    print_step_profile(model, profiles, peak)
    if out:
        payload = {"matmul_gflops": peak, "profiles": [p.to_dict() for p in profiles]}
        out.write_text(json.dumps(payload, indent=2))
        say(f"wrote {out}")


@benchmark_app.command("predict")
def benchmark_predict(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL",
            help="A model file (model.pt, .onnx) or a registered model name.",
            callback=_file_or_name,
        ),
    ],
    images: OptionalImages = None,
    backend: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated: {', '.join(BACKENDS)}; or all.",
            callback=comma_separated("--backend", "a backend", ("all", *BACKENDS)),
        ),
    ] = "all",
    batches: Annotated[
        str, typer.Option(help="Batch sizes, comma-separated.", callback=valid_batch_sizes)
    ] = "1,8,32",
    out: JsonOut = None,
) -> None:
    """Inference images/s per backend and batch size, in one process, with decode+preprocess
    timed apart on IMAGES (default: $CXR_DATA/chest_xray_originals, first 64), achieved GFLOP/s
    against this machine's matrix multiply, and peak memory.

    Example: cxr benchmark predict efficientnet_lite0 --out predict-bench.json
    """
    chosen = tuple(b.strip() for b in backend.split(","))
    chosen = BACKENDS if "all" in chosen else chosen
    from cxr.inference.benchmark import decode_throughput, model_throughput
    from cxr.inference.predict import expand
    from cxr.speed import matmul_gflops

    sources = images or [data_root() / "chest_xray_originals"]
    with progress() as stages:
        step = stages("torch.mm yardstick", 1)
        peak = matmul_gflops()
        step(1)
        sizes = tuple(int(b) for b in batches.split(","))
        rows = model_throughput(model, chosen, sizes, progress=stages)
        paths = expand(sources)[:64]
        step = stages("decoding", 1)
        decode = decode_throughput(paths, 224) if paths else None
        step(1)
    print_predict_throughput(model, rows, peak)
    where = ", ".join(map(str, sources))
    if decode:
        say(f"decode + preprocess ({len(paths)} images from {where}): {decode:.1f} img/s")
    if out:
        payload = {
            "model": model,
            "matmul_gflops": peak,
            "decode_images_per_s": decode,
            "decode_images": where,
            "results": [r.to_dict() for r in rows],
        }
        out.write_text(json.dumps(payload, indent=2))
        say(f"wrote {out}")


@benchmark_app.command("decode")
def benchmark_decode(
    out: JsonOut = None,
    yardstick: Annotated[
        Path | None,
        typer.Option(
            help="A typical radiograph (default: the first Kermany original).", exists=True
        ),
    ] = None,
) -> None:
    """What one image can cost the reader at its limits: a file per format at the largest size it
    accepts, and the hostile ones it refuses (many JPEG scans, a JPEG 2000 stream larger than its
    DICOM header, RGBA past the decoded-bytes limit), each read in a fresh process: peak memory
    added and CPU seconds, against a real radiograph read the same way.

    Example: cxr benchmark decode --out decode-bench.json
    """
    import tempfile

    from cxr.cli.render import print_decode_costs
    from cxr.data.worst_case import make_worst_cases, measure, to_json

    sample = yardstick or min((data_root() / "chest_xray_originals").rglob("*.jpeg"))
    with tempfile.TemporaryDirectory(prefix="cxr-decode-") as folder, progress() as stages:
        step = stages("making the worst cases", 1)
        cases = make_worst_cases(Path(folder))
        step(1)
        step = stages("reading each in a fresh process", 1)
        rows = measure(cases, sample)
        step(1)
    print_decode_costs(rows)
    if out:
        out.write_text(to_json(rows))
        say(f"wrote {out}")
