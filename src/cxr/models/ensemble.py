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
from cxr.errors import CxrError
from cxr.metrics.calibration import Calibration
from cxr.models.registry import create_model, register_model

ENSEMBLE = "ensemble"


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module], calibrations: list[Calibration]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.calibrations = calibrations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = [
            c.logits(m(x).float()).log_softmax(1)
            for m, c in zip(self.members, self.calibrations, strict=True)
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
    """`members`: [{"architecture", "args", "calibration": {"method", "scale", "shift"}}, ...]."""
    if not members:
        raise CxrError("an ensemble is made from trained models by `cxr ensemble`, not trained")
    models, calibrations = [], []
    for m in members:
        models.append(create_model(m["architecture"], pretrained=False, **m["args"]))
        c = m["calibration"]
        calibrations.append(Calibration(c["method"], tuple(c["scale"]), tuple(c["shift"])))
    return Ensemble(models, calibrations)
