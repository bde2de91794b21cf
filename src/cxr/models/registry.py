"""One way in for every model, ours and pretrained: `create_model(name, ...)`, like timm's registry.

A registered builder returns a bare `nn.Module`; the registry attaches a model card (architecture,
arguments, preprocessing) as `model.card`, the one extra attribute, which training completes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from cxr.data.preprocess import Preprocessing
from cxr.errors import CxrError
from cxr.models.card import ModelCard

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Builder
    preprocessing: Preprocessing
    target_layer: str  # dotted module path whose activations Grad-CAM explains
    head: str  # dotted module path of the classifier: trained first, frozen never
    pretrained_source: str | None  # where ImageNet (or X-ray) weights come from; None: scratch only
    trainable: bool = True  # False: built from trained models (an ensemble), never trained


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    preprocessing: Preprocessing,
    target_layer: str,
    head: str,
    pretrained_source: str | None = None,
    name: str | None = None,
    trainable: bool = True,
) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        key = name or builder.__name__
        _REGISTRY[key] = ModelSpec(
            key, builder, preprocessing, target_layer, head, pretrained_source, trainable
        )
        return builder

    return add


def list_models(pretrained: bool = False) -> list[str]:
    """The models a config can train (those with pretrained weights, if asked)."""
    return sorted(
        n for n, s in _REGISTRY.items() if s.trainable and (not pretrained or s.pretrained_source)
    )


def model_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise CxrError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name]


def spec_of(card: ModelCard) -> ModelSpec:
    """Where a carded model's head and Grad-CAM layer are. The card knows nothing of the registry
    (as timm's pretrained_cfg knows nothing of its): the registry reads the card."""
    spec = model_spec(card.architecture)
    if card.members:  # an ensemble: Grad-CAM explains its output through its first member
        first = card.args["members"][0]
        layer = model_spec(first["architecture"]).target_layer
        spec = dataclasses.replace(spec, target_layer=f"members.0.{layer}")
    return spec


def create_model(
    name: str, pretrained: bool = False, num_classes: int = 2, in_chans: int = 1, **kwargs
) -> nn.Module:
    """Build a model; `model.card` says what it is, `model_spec(name)` where its head and Grad-CAM
    layer are."""
    spec = model_spec(name)
    if pretrained and spec.pretrained_source is None:
        raise CxrError(f"{name} has no pretrained weights; it is trained from scratch")
    model = spec.builder(
        pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs
    )
    model.card = ModelCard(
        architecture=name,
        args={"num_classes": num_classes, "in_chans": in_chans, **kwargs},
        classes=tuple(str(i) for i in range(num_classes)),
        preprocessing=spec.preprocessing,
    )
    return model
