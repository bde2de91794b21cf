"""Yardsticks shared by the training and inference benchmarks: this machine's matrix-multiply
rate and a model's forward FLOPs."""

from __future__ import annotations

import copy
import time
from collections.abc import Collection

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def matmul_gflops(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """This machine's dense matrix-multiply rate, the yardstick for achieved GFLOP/s."""
    result = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        result[label] = round(2 * n**3 * repeats / (time.perf_counter() - start) / 1e9, 1)
    return result


def forward_gflop(model: nn.Module, size: int, parts: Collection[str] | None = None) -> float:
    """GFLOP of one image's forward pass, as torch's FlopCounterMode counts it; only that of the
    named leaf modules `parts`, if given (the frozen stages a backward pass skips)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        copy.deepcopy(model).eval()(torch.zeros(1, 1, size, size))
    if parts is None:
        return counter.get_total_flops() / 1e9
    counts, root = counter.get_flop_counts(), type(model).__name__
    return sum(sum(counts.get(f"{root}.{name}", {}).values()) for name in parts) / 1e9
