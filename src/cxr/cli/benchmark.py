"""`cxr benchmark train | predict`: speed on this machine, against a matmul yardstick."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cxr.cli.common import console
from cxr.errors import CxrError
from cxr.settings import data_root

benchmark_app = typer.Typer(help="Measure speed on this machine.", no_args_is_help=True)


@benchmark_app.command("train")
def benchmark_train(
    models: Annotated[list[str], typer.Argument(help="Registered model names.")],
    batch: Annotated[int, typer.Option(help="Batch size.")] = 32,
    steps: Annotated[int, typer.Option(help="Optimiser steps timed per variant and round.")] = 5,
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
) -> None:
    """Training images/s: fp32 vs bf16 autocast, NCHW vs channels-last, one process, interleaved.

    Example: cxr benchmark train cxr_cnn classic_cnn efficientnet_lite0 --out train-bench.json
    """
    import json

    import torch

    from cxr.speed import matmul_gflops
    from cxr.training.benchmark import train_throughput

    peak = matmul_gflops()
    table = Table(
        title=f"training throughput, {torch.get_num_threads()} threads; "
        f"torch.mm 2048²: {peak['fp32']} GFLOP/s fp32, {peak['bf16']} bf16"
    )
    for column in (
        "model",
        "px",
        "precision",
        "memory format",
        "images/s",
        "GFLOP/image",
        "GFLOP/s",
        "% of mm peak",
    ):
        table.add_column(column)
    rows = []
    for name in models:
        for r in train_throughput(name, batch=batch, steps=steps):
            rows.append(r.to_dict())
            share = 100 * r.achieved_gflops / peak[r.precision]
            table.add_row(
                r.model,
                str(r.size),
                r.precision,
                r.memory_format,
                f"{r.images_per_s:.1f}",
                f"{r.gflop_per_image:.2f}",
                f"{r.achieved_gflops:.0f}",
                f"{share:.0f} %",
            )
    console.print(table)
    if out:
        out.write_text(json.dumps({"matmul_gflops": peak, "results": rows}, indent=2))
        console.print(f"wrote {out}")


@benchmark_app.command("predict")
def benchmark_predict(
    model: Annotated[str, typer.Argument(help="A model file or a registered model name.")],
    backend: Annotated[
        str, typer.Option(help="torch-eager, torch-fast, torch-bf16, onnx, onnx-int8, or all.")
    ] = "all",
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,8,32",
    images: Annotated[
        Path | None, typer.Option(help="Folder of real images for the decode timing.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
) -> None:
    """Inference images/s per backend and batch size, in one process, with decode+preprocess
    timed apart, achieved GFLOP/s against this machine's matrix multiply, and peak memory.

    Example: cxr benchmark predict efficientnet_lite0 --out predict-bench.json
    """
    from cxr.inference.benchmark import BACKENDS, decode_throughput, model_throughput
    from cxr.inference.predict import expand
    from cxr.speed import matmul_gflops

    chosen = BACKENDS if backend == "all" else tuple(backend.split(","))
    unknown = set(chosen) - set(BACKENDS)
    if unknown:
        raise CxrError(f"unknown backend {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    peak = matmul_gflops()
    rows = model_throughput(model, chosen, tuple(int(b) for b in batch.split(",")))
    folder = images or data_root() / "chest_xray_originals"
    paths = expand([folder])[:64]
    decode = decode_throughput(paths, 224) if paths else None
    table = Table(
        title=f"{model}: inference, {rows[0].gflop_per_image:.2f} GFLOP/image; torch.mm 2048²: "
        f"{peak['fp32']} GFLOP/s fp32, {peak['bf16']} bf16"
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
    if decode:
        console.print(
            f"decode + preprocess ({len(paths)} images from {folder}): {decode:.1f} img/s"
        )
    if out:
        payload = {
            "model": model,
            "matmul_gflops": peak,
            "decode_images_per_s": decode,
            "decode_images": str(folder),
            "results": [r.to_dict() for r in rows],
        }
        out.write_text(json.dumps(payload, indent=2))
        console.print(f"wrote {out}")
