"""Which precision a run trains in, and why, decided before any data is read; whether
torch.compile can run. Imports torch only, so `cxr doctor` and the test header stay cheap."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import torch

from cxr.training.config import ConfigError


def cpu_bf16_flags() -> list[str]:
    """The CPU's bf16 matrix instructions (AVX-512 BF16, AMX): without them bf16 matrix products
    are emulated and slower than fp32 (on an AVX-512 host without either, torch.mm ran 85 GFLOP/s
    in fp32 and 16 in bf16)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [f for f in ("avx512_bf16", "amx_bf16") if f in flags]


def gpu_wanted(accelerator: str) -> bool:
    return accelerator in {"gpu", "cuda"} or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(precision: str, accelerator: str) -> tuple[str, str]:
    """The precision and why, in words. `auto`: float32 on every CPU, so a config's figures do not
    depend on whether the CPU has bf16 (bf16 autocast is an opt-in there: 1.03-1.3x on an
    AVX-512 BF16 host, 0.6x where it is emulated, docs/benchmarks.md); bf16-mixed on a GPU with
    native bf16, 16-mixed on an older one. 16-mixed on a CPU is refused here, before any data is
    read."""
    gpu = gpu_wanted(accelerator)
    if precision == "16-mixed" and not gpu:
        raise ConfigError(
            "trainer.precision=16-mixed needs a CUDA GPU (fp16 autocast with a gradient scaler); "
            "on a CPU use bf16-mixed or 32-true"
        )
    if precision != "auto":
        return precision, "as configured"
    if gpu and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16-mixed", f"auto: {name} has native bf16"
        return "16-mixed", f"auto: {name} has no native bf16"
    if gpu:  # asked for a GPU that is not there: Lightning's refusal says so
        return "bf16-mixed", "auto: a GPU was asked for"
    bf16 = cpu_bf16_flags()
    has = (
        f"this one has {', '.join(bf16)}: trainer.precision=bf16-mixed may train faster"
        if bf16
        else "this one has no bf16 instructions"
    )
    return "32-true", f"auto on a CPU: float32 on every CPU, whatever its bf16 support; {has}"


def compile_unavailable(accelerator: str = "cpu") -> str | None:
    """Why torch.compile cannot run here, or None: inductor builds C++ kernels for a CPU and
    Triton kernels for a GPU."""
    if gpu_wanted(accelerator):
        if importlib.util.find_spec("triton") is None:
            return "Triton is not installed (inductor needs it on a GPU: pip install triton)"
        return None
    compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    if not any(c and shutil.which(c) for c in compilers):
        return "no C++ compiler on PATH (inductor needs one: apt-get install g++)"
    return None
