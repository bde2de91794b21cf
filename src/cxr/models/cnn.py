"""CNNs trained from scratch: `cxr_cnn` (small, modern), `classic_cnn` (the student notebooks'
baseline) and `lenet5` (LeCun 1998, where the literature's comparisons start)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cxr.data.preprocess import Preprocessing
from cxr.models.registry import register_model


class FeaturesHead(nn.Module):
    """A feature extractor and a classifier head: the split that linear probing and Grad-CAM use."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


@register_model(Preprocessing(size=128), target_layer="features", head="head")  # any depth
def cxr_cnn(
    pretrained: bool = False,
    num_classes: int = 2,
    in_chans: int = 1,
    width: int = 16,
    depth: int = 4,
    dropout: float = 0.3,
) -> nn.Module:
    """`depth` stages of two conv-BN-ReLU and a 2x2 max-pool, channels doubling from `width`;
    global average pooling keeps it small (0.3 M parameters by default) and size-agnostic."""
    stages, cin = OrderedDict(), in_chans
    for i in range(depth):
        cout = width * 2**i
        block = [*_conv_bn_relu(cin, cout), *_conv_bn_relu(cout, cout), nn.MaxPool2d(2)]
        stages[f"stage{i}"] = nn.Sequential(*block)
        cin = cout
    head = nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes)
    )
    return FeaturesHead(nn.Sequential(stages), head)


@register_model(Preprocessing(size=150), target_layer="features.10", head="head")
def classic_cnn(pretrained: bool = False, num_classes: int = 2, in_chans: int = 1) -> nn.Module:
    """The 4-block CNN of the Kermany student notebooks: 3x3 convs of 32-64-128-512 filters, each
    followed by 2x2 max-pooling (Keras 'valid' padding), then dense 512, dropout 0.5, at 150 px;
    an adaptive max-pool lets `model.size` feed it other sizes with the same head."""
    layers, cin = [], in_chans
    for cout in (32, 64, 128, 512):
        layers += [nn.Conv2d(cin, cout, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        cin = cout
    with torch.no_grad():
        side = nn.Sequential(*layers)(torch.zeros(1, in_chans, 150, 150)).shape[-1]
    # the identity at 150 px; at another `model.size` it feeds the dense layer the same 7x7 grid
    # (appended last, so the weights' names are those of earlier model files)
    features = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(side))
    flat = cin * side * side
    head = nn.Sequential(
        nn.Flatten(),
        nn.Linear(flat, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(512, num_classes),
    )
    return FeaturesHead(features, head)


@register_model(Preprocessing(size=32), target_layer="features.4", head="head")
def lenet5(pretrained: bool = False, num_classes: int = 2, in_chans: int = 1) -> nn.Module:
    """LeCun et al. 1998's LeNet-5 at its native 32 px, the first network of the comparisons:
    5x5 convs of 6 and 16 maps with tanh, each followed by 2x2 average pooling, then C5 (120),
    F6 (84) and the output. An adaptive pool to 5x5 (the identity at 32 px) lets `model.size`
    feed it larger images with the same head."""
    features = nn.Sequential(
        nn.Conv2d(in_chans, 6, 5),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.Tanh(),
        nn.AvgPool2d(2),
    )
    head = nn.Sequential(
        nn.AdaptiveAvgPool2d(5),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )
    return FeaturesHead(features, head)
