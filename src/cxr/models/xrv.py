"""`xrv_densenet121`: torchxrayvision's DenseNet-121 pretrained on chest X-rays (NIH, CheXpert,
MIMIC, PadChest, RSNA...), the optional extra `cxr[xrv]`. Its weights are a file in xrv's cache
folder (`~/.torchxrayvision/models_data/`); the same clear-error rule as torchvision's applies.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from torch import nn

from cxr.data.preprocess import Preprocessing
from cxr.errors import CxrError
from cxr.models.registry import register_model
from cxr.models.weights import OFFLINE_ENV, WeightsError

WEIGHTS = "densenet121-res224-all"
XRV_LABELS = 18
# xrv expects [-1024, 1024]: (x/255 - 0.5) / (1/2048), i.e. its datasets.normalize(img, 255).
XRV_PREPROCESSING = Preprocessing(size=224, mean=0.5, std=1 / 2048)


def _xrv():
    try:
        return importlib.import_module("torchxrayvision")
    except ImportError as exc:
        raise CxrError("xrv_densenet121 needs torchxrayvision: pip install 'cxr[xrv]'") from exc


def weights_file() -> Path:
    """Where xrv keeps (and looks for) the weights of `densenet121-res224-all`."""
    xrv = _xrv()
    url = xrv.models.model_urls[WEIGHTS]["weights_url"]
    return Path(xrv.utils.get_cache_dir()).expanduser() / Path(url).name


def _pretrained(xrv) -> nn.Module:
    path = weights_file()
    url = xrv.models.model_urls[WEIGHTS]["weights_url"]
    hint = f"fetch {url} on a machine with network access and put it at {path}"
    if not path.is_file() and os.environ.get(OFFLINE_ENV) == "1":
        raise WeightsError(
            f"chest X-ray weights {path.name} are not in {path.parent} "
            f"(offline mode, CXR_OFFLINE=1); {hint}"
        )
    try:
        return xrv.models.DenseNet(weights=WEIGHTS, cache_dir=str(path.parent))
    except Exception as exc:  # xrv raises requests' and torch.load's errors as they come
        raise WeightsError(f"chest X-ray weights {path}: {exc}; {hint}") from exc


@register_model(
    XRV_PREPROCESSING,
    target_layer="features.norm5",
    head="classifier",
    pretrained_source=f"torchxrayvision {WEIGHTS} (~/.torchxrayvision/models_data)",
)
def xrv_densenet121(pretrained: bool = False, num_classes: int = 2, in_chans: int = 1) -> nn.Module:
    """Logits out (xrv's sigmoid/operating-point calibration off) and no forced resize to 224,
    so it trains and explains like every other model here; its 18-label head is replaced
    unless `num_classes` is 18."""
    if in_chans != 1:
        raise CxrError("xrv_densenet121 reads grey images only (in_chans=1)")
    xrv = _xrv()
    if pretrained:
        model = _pretrained(xrv)
        del model.input_resolution
    else:
        model = xrv.models.DenseNet(weights=None, num_classes=XRV_LABELS, in_channels=1)
    model.op_threshs = None
    if num_classes != XRV_LABELS:
        model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    return model.train()
