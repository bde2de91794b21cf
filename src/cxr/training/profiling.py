"""Where a training step's time goes: torch.profiler over whole optimiser steps, every operator's
own time charged to an operator type (depthwise / 1x1 / kxk convolution, batch norm + activation,
...) and to a part of the model (stem, each stage of `blocks`, head), backward included.

Module hooks open a profiler range per part and per leaf module on the way forward; the backward
kernels are charged to the forward operator that created them through autograd's sequence number,
so the backward of a block's convolutions counts against that block and that convolution type.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from cxr.models import create_model
from cxr.training.benchmark import train_step

PART, OP = "part:", "op:"
PADS = ("aten::pad", "aten::constant_pad_nd")  # timm's Conv2dSame pads before convolving
OUTSIDE = "loss + optimiser"  # what no module ran: the loss, AdamW's update, zero_grad


@dataclass(frozen=True)
class Share:
    name: str
    percent: float  # of the profiled step's operator time
    gflop: float  # per training step (3x the forward: backward taken as twice the forward)
    gflops: float  # achieved: gflop / the time charged here


@dataclass(frozen=True)
class StepProfile:
    model: str
    variant: str  # fp32-nchw, fp32-channels_last, bf16-channels_last
    batch: int
    size: int
    images_per_s: float  # unprofiled steps, best round
    step_gflop: float
    by_operator: list[Share] = field(default_factory=list)
    by_part: list[Share] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _parts(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Top-level children in order; a `blocks` sequence is split into its stages, and what comes
    before it is the stem, what comes after the head (timm's EfficientNet, MobileNet, ...)."""
    children = list(model.named_children())
    names = [n for n, _ in children]
    if "blocks" not in names:
        return {n: [m] for n, m in children}
    at = names.index("blocks")
    parts = {"stem": [m for _, m in children[:at]]}
    parts |= {f"blocks.{i}": [m] for i, m in enumerate(children[at][1])}
    parts["head"] = [m for _, m in children[at + 1 :]]
    return {n: ms for n, ms in parts.items() if ms}


def _op_label(module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv2d):
        k = "x".join(map(str, module.kernel_size))
        if module.groups > 1 and module.groups == module.in_channels:
            return f"conv depthwise {k}"
        return "conv 1x1" if k == "1x1" else f"conv {k}"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "batch norm + activation"  # timm's BatchNormAct2d: the activation runs inside
    if isinstance(module, nn.Linear):
        return "linear"
    if not list(module.children()):
        return type(module).__name__.lower()
    return None


def _forward_gflop(module: nn.Module, out: torch.Tensor) -> float:
    if isinstance(module, nn.Conv2d):
        per_output = (
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        )
        return 2 * out.numel() * per_output / 1e9
    if isinstance(module, nn.Linear):
        return 2 * out.numel() * module.in_features / 1e9
    return 0.0


class _Ranges:
    """Forward hooks that open and close a profiler range per part and per leaf module, and count
    each range's forward FLOPs."""

    def __init__(self, model: nn.Module) -> None:
        self.open: dict[int, record_function] = {}
        self.gflop: dict[tuple[str, str], float] = defaultdict(float)
        self.handles = []
        for name, modules in _parts(model).items():
            self._range(modules[0], modules[-1], PART + name)
            for module in modules:
                self._label(module, name)

    def _label(self, module: nn.Module, part: str) -> None:
        """A range on each outermost module with an operator type (BatchNormAct2d, not the
        activation inside it)."""
        label = _op_label(module)
        if label:
            self._range(module, module, OP + label, part, label)
            return
        for child in module.children():
            self._label(child, part)

    def _range(self, first, last, label, part=None, op=None) -> None:
        key = id(first), label

        def enter(*_):
            self.open[key] = record_function(label).__enter__()

        def leave(module, _, out):
            self.open.pop(key).__exit__(None, None, None)
            if op is not None and torch.is_grad_enabled():
                self.gflop[part, op] += _forward_gflop(module, out)

        # an operator's range closes before the part's range around it on the same module
        self.handles += [
            first.register_forward_pre_hook(enter),
            last.register_forward_hook(leave, prepend=op is not None),
        ]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _charge(events) -> dict[tuple[str, str], float]:
    """Self time (µs) per (part, operator type): forward events by their enclosing ranges,
    backward events by the forward operator with the same autograd sequence number."""
    by_seq: dict[int, tuple[str, str]] = {}
    found: dict[int, tuple[str, str] | None] = {}

    def where(event) -> tuple[str, str] | None:
        if event.id in found:
            return found[event.id]
        part = op = None
        node = event
        while node is not None:
            name = node.name
            if node.sequence_nr >= 0 and name.startswith("autograd::engine::evaluate_function"):
                part, op = by_seq.get(node.sequence_nr, (None, None))
                break
            if op is None and name in PADS:
                op = "pad (TF 'same')"
            if op is None and name.startswith(OP):
                op = name.removeprefix(OP)
            if name.startswith(PART):
                part = name.removeprefix(PART)
                break
            node = node.cpu_parent
        result = (part, op or event.name) if part else None
        found[event.id] = result
        return result

    events = sorted(events, key=lambda e: e.time_range.start)  # forwards before their backwards
    for event in events:  # the forward pass: remember which (part, op) made each sequence number
        if event.sequence_nr >= 0 and not event.name.startswith("autograd::"):
            place = where(event)
            if place and place[1] != event.name:
                by_seq.setdefault(event.sequence_nr, place)
    time_by: dict[tuple[str, str], float] = defaultdict(float)
    for event in events:
        if event.name.startswith((PART, OP)) or event.device_type.name != "CPU":
            continue
        place = where(event) or (OUTSIDE, OUTSIDE)
        time_by[place] += event.self_cpu_time_total
    return time_by


def _shares(time_by: dict[str, float], gflop_by: dict[str, float], seconds: float) -> list[Share]:
    total = sum(time_by.values())
    rows = []
    for name, micro in sorted(time_by.items(), key=lambda kv: -kv[1]):
        gflop = 3 * gflop_by.get(name, 0.0)
        spent = seconds * micro / total
        rows.append(
            Share(name, round(100 * micro / total, 1), round(gflop, 2), round(gflop / spent, 1))
        )
    return rows


def profile_training_step(
    name: str,
    batch: int = 32,
    variants: tuple[str, ...] = ("fp32-nchw", "fp32-channels_last"),
    steps: int = 3,
    size: int | None = None,
) -> list[StepProfile]:
    """One profile per variant (`precision-memoryformat`), variants interleaved step by step."""
    torch.manual_seed(0)
    base = create_model(name, num_classes=2)
    size = size or base.card.preprocessing.size
    x = torch.randn(batch, 1, size, size)
    y = torch.randint(0, 2, (batch,))
    setups = {}
    for variant in variants:
        precision, fmt = variant.split("-")
        memory = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        model = copy.deepcopy(base).train().to(memory_format=memory)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        xs = x.contiguous(memory_format=memory)
        train_step(model, optimizer, xs, y, precision == "bf16")  # warm-up: allocations, kernels
        setups[variant] = (model, optimizer, xs, precision == "bf16")
    best: dict[str, float] = defaultdict(float)
    for _ in range(2):  # unprofiled, interleaved: the step time the shares divide
        for variant, (model, optimizer, xs, bf16) in setups.items():
            start = time.perf_counter()
            for _ in range(steps):
                train_step(model, optimizer, xs, y, bf16)
            best[variant] = max(best[variant], steps * batch / (time.perf_counter() - start))
    results = []
    for variant, (model, optimizer, xs, bf16) in setups.items():
        ranges = _Ranges(model)
        try:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(steps):
                    train_step(model, optimizer, xs, y, bf16)
        finally:
            ranges.remove()
        charged = _charge(prof.events())
        seconds = batch / best[variant]  # one unprofiled step
        by_op: dict[str, float] = defaultdict(float)
        by_part: dict[str, float] = defaultdict(float)
        gflop_op: dict[str, float] = defaultdict(float)
        gflop_part: dict[str, float] = defaultdict(float)
        for (part, op), micro in charged.items():
            by_op[op] += micro
            by_part[part] += micro
        for (part, op), gflop in ranges.gflop.items():
            gflop_op[op] += gflop / steps
            gflop_part[part] += gflop / steps
        step_gflop = 3 * sum(gflop_op.values())
        results.append(
            StepProfile(
                name,
                variant,
                batch,
                size,
                round(best[variant], 1),
                round(step_gflop, 1),
                _shares(by_op, gflop_op, seconds),
                _shares(by_part, gflop_part, seconds),
            )
        )
    return results
