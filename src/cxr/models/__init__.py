"""Model registry: `create_model(name, pretrained=, num_classes=, in_chans=)`, `list_models()`."""

from cxr.models import cnn, ensemble, pretrained, xrv  # noqa: F401  (registers the models)
from cxr.models.io import load_model, save_model
from cxr.models.registry import (
    ModelSpec,
    create_model,
    list_models,
    model_spec,
    register_model,
    spec_of,
)

__all__ = [
    "ModelSpec",
    "create_model",
    "list_models",
    "load_model",
    "model_spec",
    "register_model",
    "save_model",
    "spec_of",
]
