"""`cxr benchmark train | profile | predict`: speed on this machine, against a matmul yardstick."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cxr.cli.common import OptionalImages, out_option, progress, say
from cxr.cli.render import print_predict_throughput, print_step_profile, print_train_throughput
from cxr.errors import CxrError
from cxr.settings import data_root

benchmark_app = typer.Typer(
    help="Measure speed on this machine.", no_args_is_help=True, rich_markup_mode="markdown"
)
JsonOut = Annotated[Path | None, out_option("Write the figures as JSON here")]


def _file_or_name(value: str) -> str:
    """A registered name has no folder and no suffix; anything else must be a file."""
    path = Path(value)
    if (path.suffix or len(path.parts) > 1) and not path.is_file():
        raise CxrError(f"{value}: no such model file")
    return value


@benchmark_app.command("train")
def benchmark_train(
    models: Annotated[list[str], typer.Argument(metavar="MODEL", help="Registered model names.")],
    batch: Annotated[int, typer.Option(help="Batch size.")] = 32,
    steps: Annotated[int, typer.Option(help="Optimiser steps timed per variant and round.")] = 5,
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
        typer.Option(help="precision-layout, comma-separated (fp32|bf16)-(nchw|channels_last)."),
    ] = "fp32-nchw,fp32-channels_last",
    out: JsonOut = None,
) -> None:
    """Where one training step's time goes (torch.profiler): % of the step and achieved GFLOP/s
    per operator type and per part of the model, against this machine's matrix multiply.

    Example: cxr benchmark profile efficientnet_lite0 --out profile-lite0.json
    """
    from cxr.profiling import profile_training_step
    from cxr.speed import matmul_gflops

    chosen = tuple(v.strip() for v in variants.split(","))
    for v in chosen:
        precision, _, layout = v.partition("-")
        if precision not in {"fp32", "bf16"} or layout not in {"nchw", "channels_last"}:
            raise CxrError(f"variant {v!r}: write precision-layout, e.g. fp32-channels_last")
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
            help="Comma-separated: torch-eager, torch-fast, torch-bf16, onnx-as-traced, onnx, "
            "onnx-1thread, onnx-nospin, onnx-int8; or all."
        ),
    ] = "all",
    batches: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,8,32",
    out: JsonOut = None,
) -> None:
    """Inference images/s per backend and batch size, in one process, with decode+preprocess
    timed apart on IMAGES (default: $CXR_DATA/chest_xray_originals, first 64), achieved GFLOP/s
    against this machine's matrix multiply, and peak memory.

    Example: cxr benchmark predict efficientnet_lite0 --out predict-bench.json
    """
    from cxr.inference.benchmark import BACKENDS, decode_throughput, model_throughput
    from cxr.inference.predict import expand
    from cxr.speed import matmul_gflops

    chosen = BACKENDS if backend == "all" else tuple(backend.split(","))
    unknown = set(chosen) - set(BACKENDS)
    if unknown:
        raise CxrError(f"unknown backend {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
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
