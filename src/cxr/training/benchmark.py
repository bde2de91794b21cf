"""Training throughput of one model in one process: fp32 vs bf16 autocast, NCHW vs channels-last,
fp32 channels-last with BatchNorm frozen (`optim.freeze_bn`) where the model has BatchNorm, and
fp32 channels-last with the stem and first 3 stages frozen (`optim.freeze_stages=3`, the demo
config) where it has a stage map.

All variants run interleaved in the same process, so their ratios hold on a shared, noisy machine.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from cxr.models import create_model
from cxr.speed import forward_gflop
from cxr.training.finetuning import early_stages
from cxr.training.module import freeze_batchnorm

STAGES = 3  # the demo config's optim.freeze_stages


@dataclass(frozen=True)
class TrainSpeed:
    model: str
    size: int
    batch: int
    precision: str
    memory_format: str
    batchnorm: str  # "batch": statistics of each batch; "frozen": the stored ones (eval mode)
    frozen_stages: int  # stem and first stages with no gradient (optim.freeze_stages)
    images_per_s: float
    # training step: 3x the forward FLOPs counted by torch's FlopCounterMode, less the backward
    # (2x the forward) of the frozen stages
    gflop_per_image: float
    achieved_gflops: float

    def to_dict(self) -> dict:
        return asdict(self)


def train_step(model, optimizer, x, y, bf16: bool) -> None:
    """One plain optimiser step, as the benchmarks and the profile time it."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(x).float(), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train_throughput(
    name: str,
    batch: int = 32,
    steps: int = 5,
    rounds: int = 2,
    size: int | None = None,
    pretrained: bool = False,
) -> list[TrainSpeed]:
    torch.manual_seed(0)
    base = create_model(name, pretrained=pretrained, num_classes=2)
    size = size or base.card.preprocessing.size  # the model's own input side
    x = torch.randn(batch, 1, size, size)
    y = torch.randint(0, 2, (batch,))
    # Backward is taken as twice the forward: FlopCounterMode's own backward count for the
    # depthwise convolutions of EfficientNet came out at 14x the forward, which cannot be right.
    forward = forward_gflop(base, size)
    variants = [(p, f, "batch", 0) for p in ("fp32", "bf16") for f in ("nchw", "channels_last")]
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in base.modules()):
        variants.append(("fp32", "channels_last", "frozen", 0))
        if hasattr(base, "group_matcher"):  # a timm stage map: optim.freeze_stages works
            # the demo's recipe in both precisions: what bf16 buys on a host with bf16 hardware
            variants += [(p, "channels_last", "batch", STAGES) for p in ("fp32", "bf16")]
    setups, gflop = {}, {}
    for precision, fmt, batchnorm, stages in variants:
        key = (precision, fmt, batchnorm, stages)
        model = copy.deepcopy(base).train()
        if batchnorm == "frozen":  # as XrayClassifier does under optim.freeze_bn
            freeze_batchnorm(model)
        frozen = early_stages(model, stages)  # as XrayClassifier does under optim.freeze_stages
        for layer in frozen:
            model.get_submodule(layer).requires_grad_(False).eval()
        gflop[key] = 3 * forward - 2 * forward_gflop(base, size, frozen) if frozen else 3 * forward
        memory = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        model = model.to(memory_format=memory)
        xs = x.contiguous(memory_format=memory)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-4)
        train_step(model, optimizer, xs, y, precision == "bf16")  # warm-up: allocations, kernels
        setups[key] = (model, optimizer, xs)
    best: dict[tuple[str, str, str, int], float] = {}
    for _ in range(rounds):  # interleaved rounds; the best round of each variant counts
        for key, (model, optimizer, xs) in setups.items():
            start = time.perf_counter()
            for _ in range(steps):
                train_step(model, optimizer, xs, y, key[0] == "bf16")
            rate = steps * batch / (time.perf_counter() - start)
            best[key] = max(best.get(key, 0.0), rate)
    return [
        TrainSpeed(
            name, size, batch, *key, round(r, 1), round(gflop[key], 3), round(r * gflop[key], 1)
        )
        for key, r in best.items()
    ]
