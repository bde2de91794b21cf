"""`ensemble`: several trained models as one registered architecture, so an ensemble is one model
file that evaluate, predict, export and serve read like any other.

Its arguments hold each member's architecture, arguments and calibration; its state dict holds
the members' weights (`members.<i>.…`). The output is the mean of the members' calibrated
log-probabilities (a geometric mean of their probabilities), which the ensemble's own card then
calibrates again, like any model's logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cxr.data.preprocess import Preprocessing
from cxr.data.views import Views
from cxr.errors import CxrError
from cxr.metrics.calibration import Calibration
from cxr.models.registry import create_model, register_model
from cxr.models.views import averaged_logits

ENSEMBLE = "ensemble"


class Ensemble(nn.Module):
    def __init__(
        self, members: list[nn.Module], calibrations: list[Calibration], views: list[Views]
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.calibrations, self.views = calibrations, views

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each member as it scores alone: its own test-time views, then its calibration."""
        logp = [
            c.logits(averaged_logits(m, v, x)).log_softmax(1)
            for m, c, v in zip(self.members, self.calibrations, self.views, strict=True)
        ]
        return torch.stack(logp).mean(0)


@register_model(
    Preprocessing(), target_layer="members.0", head="members", name=ENSEMBLE, trainable=False
)
def ensemble(
    pretrained: bool = False,
    num_classes: int = 2,
    in_chans: int = 1,
    members: list[dict[str, Any]] = (),
) -> nn.Module:
    """`members`: [{"architecture", "args", "calibration": {"method", "scale", "shift"},
    "views": {"hflip", "scales"} (absent: none)}, ...]."""
    if not members:
        raise CxrError("an ensemble is made from trained models by `cxr ensemble`, not trained")
    models, calibrations, views = [], [], []
    for m in members:
        models.append(create_model(m["architecture"], pretrained=False, **m["args"]))
        c = m["calibration"]
        calibrations.append(Calibration(c["method"], tuple(c["scale"]), tuple(c["shift"])))
        v = m.get("views") or {}
        views.append(Views(v.get("hflip", False), tuple(v.get("scales", (1.0,)))))
    return Ensemble(models, calibrations, views)
