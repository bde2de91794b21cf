"""`cxr benchmark train | profile | predict`: speed on this machine, against a matmul yardstick."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cxr.cli.common import (
    ModelFileOrName,
    OptionalImages,
    RegistryName,
    RegistryNames,
    in_file,
    out_file,
    progress,
    say,
    several,
    valid_batch_sizes,
)
from cxr.cli.render import print_predict_throughput, print_step_profile, print_train_throughput
from cxr.progress import Stages
from cxr.settings import data_root

benchmark_app = typer.Typer(
    help="Measure speed on this machine.", no_args_is_help=True, rich_markup_mode="markdown"
)
JsonOut = Annotated[Path | None, out_file("The JSON file for the figures")]


class Backend(StrEnum):
    """cxr.inference.benchmark.BACKENDS (importing it loads torch); tests/test_cli.py pins them
    equal."""

    torch_eager = "torch-eager"
    torch_fast = "torch-fast"
    torch_bf16 = "torch-bf16"
    onnx_as_traced = "onnx-as-traced"
    onnx = "onnx"
    onnx_1thread = "onnx-1thread"
    onnx_nospin = "onnx-nospin"
    onnx_int8 = "onnx-int8"


class Variant(StrEnum):
    """A training step's precision and memory layout (cxr.training.profiling)."""

    fp32_nchw = "fp32-nchw"
    fp32_channels_last = "fp32-channels_last"
    bf16_nchw = "bf16-nchw"
    bf16_channels_last = "bf16-channels_last"


BACKENDS = tuple(b.value for b in Backend)


def _yardstick(stages: Stages) -> float:
    """This machine's matrix-multiply GFLOP/s, the figure every speed is read against."""
    from cxr.speed import matmul_gflops

    step = stages("torch.mm yardstick", 1)
    peak = matmul_gflops()
    step(1)
    return peak


@benchmark_app.command("train")
def benchmark_train(
    models: RegistryNames,
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

    from cxr.training.benchmark import train_throughput

    rows = []
    with progress() as stages:
        peak = _yardstick(stages)
        step = stages("timing training steps", len(models))
        for name in models:
            rows += train_throughput(name.value, batch=batch, steps=steps, size=size)
            step(1)
    print_train_throughput(rows, peak, torch.get_num_threads())
    if out:
        out.write_text(
            json.dumps({"matmul_gflops": peak, "results": [r.to_dict() for r in rows]}, indent=2)
        )
        say(f"wrote {out}")


@benchmark_app.command("profile")
def benchmark_profile(
    model: RegistryName,
    batch: Annotated[int, typer.Option(help="Batch size.", min=1)] = 32,
    steps: Annotated[int, typer.Option(help="Optimiser steps profiled per variant.", min=1)] = 3,
    variants: Annotated[
        str,
        several("--variants", "a precision-layout", Variant, "Precision-layouts to profile."),
    ] = "fp32-nchw,fp32-channels_last",
    out: JsonOut = None,
) -> None:
    """Where one training step's time goes (torch.profiler): % of the step and achieved GFLOP/s
    per operator type and per part of the model, against this machine's matrix multiply.

    Example: cxr benchmark profile efficientnet_lite0 --out profile-lite0.json
    """
    from cxr.training.profiling import profile_training_step

    chosen = tuple(v.strip() for v in variants.split(","))
    with progress() as stages:
        peak = _yardstick(stages)
        step = stages("profiling training steps", 1)
        profiles = profile_training_step(model.value, batch=batch, variants=chosen, steps=steps)
        step(1)
    print_step_profile(model.value, profiles, peak)
    if out:
        payload = {"matmul_gflops": peak, "profiles": [p.to_dict() for p in profiles]}
        out.write_text(json.dumps(payload, indent=2))
        say(f"wrote {out}")


@benchmark_app.command("predict")
def benchmark_predict(
    model: ModelFileOrName,
    images: OptionalImages = None,
    backend: Annotated[
        str, several("--backend", "a backend", Backend, "Backends to time (all: every one).", "all")
    ] = "all",
    batches: Annotated[
        str,
        typer.Option(
            metavar="N,...", help="Batch sizes, comma-separated.", callback=valid_batch_sizes
        ),
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

    sources = images or [data_root() / "chest_xray_originals"]
    with progress() as stages:
        peak = _yardstick(stages)
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
        Path | None, in_file("A typical radiograph (default: the first Kermany original).")
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
