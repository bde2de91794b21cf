"""What a bug report needs to know about this host and this install, gathered in one place:
`cxr doctor` prints it, and the test suite's header shows it, so every log says which host class
it ran on (a bf16 CPU, a GPU, how many threads) and which packages and servers it found.

Importing this module costs nothing: torch and the precision rule load only when `gather` runs.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from cxr.settings import cache_root, data_root

# The CPU features behind this host's speed: bf16 matrix units (AVX-512 BF16, AMX) decide whether
# bf16 autocast runs natively or emulated; VNNI speeds INT8 (ONNX int8); AVX2 / AVX-512F set
# which kernels torch dispatches to.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
PACKAGES = ("torch", "torchvision", "lightning", "onnxruntime", "timm", "numpy")
EXTRAS = {
    "dicom": ("pylibjpeg", "pylibjpeg-libjpeg"),
    "xrv": ("torchxrayvision",),
    "pacs": ("sqlalchemy", "alembic", "pynetdicom", "highdicom", "psycopg"),
}
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")


def gather() -> dict[str, Any]:
    """Every fact, JSON-ready: versions, GPU, CPU, threads, precision, data, cache, extras,
    servers."""
    return {
        "cxr": cxr_facts(),
        "python": {
            "version": platform.python_version(),
            "executable": sys.executable,
            "platform": platform.platform(),
        },
        "packages": package_facts(),
        "cuda": cuda_facts(),
        "cpu": cpu_facts(),
        "threads": thread_facts(),
        "precision": precision_facts(),
        "data": data_facts(),
        "cache": cache_facts(),
        "extras": {group: _versions(names) for group, names in EXTRAS.items()},
        "servers": server_facts(),
    }


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _versions(names: tuple[str, ...]) -> dict[str, str | None]:
    return {name: _version(name) for name in names}


def cxr_facts() -> dict[str, Any]:
    """The version and where the package is imported from: a source tree (editable install,
    where package-data mistakes hide) or an installed wheel."""
    import cxr

    folder = Path(cxr.__file__).resolve().parent
    installed = "site-packages" in folder.parts or "dist-packages" in folder.parts
    return {"version": cxr.__version__, "path": str(folder), "installed": installed}


def package_facts() -> dict[str, Any]:
    facts: dict[str, Any] = _versions(PACKAGES)
    providers: list[str] = []
    if facts["onnxruntime"]:
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
    facts["onnxruntime_providers"] = providers
    return facts


def cuda_facts() -> dict[str, Any]:
    """The CUDA build of torch and each GPU it sees, with whether it computes bf16 natively."""
    import torch

    devices = []
    available = torch.cuda.is_available()
    for index in range(torch.cuda.device_count() if available else 0):
        props = torch.cuda.get_device_properties(index)
        devices.append(
            {
                "name": props.name,
                "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1),
                "bf16": props.major >= 8,  # Ampere and later; older cards emulate it slowly
            }
        )
    cudnn = torch.backends.cudnn.version() if available else None
    return {"build": torch.version.cuda, "available": available, "cudnn": cudnn, "devices": devices}


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpuinfo_flags() -> set[str]:
    """The kernel's CPU flags; empty where /proc/cpuinfo is absent."""
    return set(_cpuinfo().get("flags", "").split())


def cpu_facts() -> dict[str, Any]:
    import torch

    info = _cpuinfo()
    present = set(info.get("flags", "").split())
    return {
        "model": info.get("model name") or platform.processor() or platform.machine(),
        "flags": {flag: flag in present for flag in CPU_FLAGS},
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _cgroup_cpus() -> float | None:
    """A container's CPU quota (cgroup v2 `cpu.max`): os.cpu_count() ignores it."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else round(int(quota) / int(period), 2)


def thread_facts() -> dict[str, Any]:
    import torch

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "torch": torch.get_num_threads(),
        "torch_interop": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "affinity": affinity,
        "cgroup_cpus": _cgroup_cpus(),
        "environment": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }


def precision_facts() -> dict[str, str]:
    """What `trainer.precision: auto` resolves to here, and why: the training code's own rule."""
    from cxr.training.precision import resolve_precision

    chosen, why = resolve_precision("auto", "auto")
    return {"auto": chosen, "reason": why}


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total


def data_facts() -> dict[str, Any]:
    root = data_root().resolve()
    datasets = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return {"root": str(root), "exists": root.is_dir(), "datasets": datasets}


def cache_facts() -> dict[str, Any]:
    """The decoded-pixel cache: it can be deleted and re-made, and can grow to gigabytes."""
    root = cache_root().resolve()
    return {"path": str(root), "bytes": _size(root) if root.is_dir() else 0}


def server_facts() -> dict[str, str | None]:
    """The Debian programs the department tests and `cxr listen` work with, where found."""
    initdb = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return {
        "Orthanc": shutil.which("Orthanc"),
        "orthanc-dicomweb": str(DICOMWEB_PLUGIN) if DICOMWEB_PLUGIN.is_file() else None,
        "storescu": shutil.which("storescu"),
        "echoscu": shutil.which("echoscu"),
        "initdb": str(initdb[-1]) if initdb else shutil.which("initdb"),
        "chromium": shutil.which("chromium"),
    }


def _named(found: dict[str, str | None], versions: bool = True) -> str:
    """'a 1.0, b 2.0, missing c d': what is there (with its version), then what is not."""
    have = [f"{name} {value}" if versions else name for name, value in found.items() if value]
    missing = [name for name, value in found.items() if not value]
    return ", ".join(have + ([f"missing {' '.join(missing)}"] if missing else []))


def _bytes(n: float) -> str:
    units = ("B", "KB", "MB", "GB", "TB")
    k = 0
    while n >= 1000 and k < len(units) - 1:
        n, k = n / 1000, k + 1
    return f"{n:.0f} B" if k == 0 else f"{n:.1f} {units[k]}"


def lines(facts: dict[str, Any]) -> list[str]:
    """The facts as aligned `name  value` lines: what `cxr doctor` prints and pytest's header."""
    pkg, cuda, cpu, threads = facts["packages"], facts["cuda"], facts["cpu"], facts["threads"]
    where = "installed" if facts["cxr"]["installed"] else "source tree"
    providers = [p.removesuffix("ExecutionProvider") for p in pkg["onnxruntime_providers"]]
    versions = [f"{n} {pkg[n] or 'missing'}" for n in PACKAGES]
    versions[PACKAGES.index("onnxruntime")] += f" [{' '.join(providers)}]"
    if cuda["devices"]:
        gpus = "; ".join(
            f"{d['name']} (sm {d['capability']}, {d['memory_gib']} GiB"
            f"{', bf16' if d['bf16'] else ', no native bf16'})"
            for d in cuda["devices"]
        )
        gpu = f"CUDA {cuda['build']}, cuDNN {cuda['cudnn']}: {gpus}"
    else:
        build = f"torch built for CUDA {cuda['build']}" if cuda["build"] else "CPU-only torch"
        gpu = f"none ({build}; no GPU visible)"
    has = [f for f, on in cpu["flags"].items() if on]
    lacks = [f for f, on in cpu["flags"].items() if not on]
    flags = " ".join(has) + (f"; lacks {' '.join(lacks)}" if lacks else "")
    quota = f", cgroup quota {threads['cgroup_cpus']}" if threads["cgroup_cpus"] else ""
    env = "".join(f", {k}={v}" for k, v in threads["environment"].items())
    data = facts["data"]
    found = ", ".join(data["datasets"]) if data["exists"] else "missing (set CXR_DATA)"
    rows = {
        "cxr": f"{facts['cxr']['version']} ({where}: {facts['cxr']['path']})",
        "python": f"{facts['python']['version']} ({facts['python']['executable']})",
        "os": facts["python"]["platform"],
        "packages": ", ".join(versions),
        "gpu": gpu,
        "cpu": f"{cpu['model']}: {flags}; torch kernels {cpu['torch_capability']}",
        "threads": f"torch {threads['torch']} (interop {threads['torch_interop']}), "
        f"cpu_count {threads['cpu_count']}, affinity {threads['affinity']}{quota}{env}",
        "precision": f"{facts['precision']['auto']} — {facts['precision']['reason']}",
        "data": f"{data['root']}: {found}",
        "cache": f"{facts['cache']['path']}: {_bytes(facts['cache']['bytes'])}",
        "extras": "; ".join(f"{g}: {_named(v)}" for g, v in facts["extras"].items()),
        "servers": _named(facts["servers"], versions=False),
    }
    width = max(map(len, rows))
    return [f"{name:<{width}}  {value}" for name, value in rows.items()]
