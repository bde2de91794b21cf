"""Which parts of a pretrained model train.

Head first, then everything: Lightning's BaseFinetuning freezes the backbone (BatchNorm
statistics included) for the warm-up epochs and makes it trainable again afterwards. The backbone
is already in the optimiser (at its own learning rate); frozen parameters just get no gradient.

Early stages never: `optim.freeze_stages` keeps the stem and the first stages as pretrained, found
by timm's own stage map (`group_matcher`, the one its layer-wise learning-rate decay uses)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning
from timm.models import group_modules
from torch import nn

from cxr.models.registry import spec_of
from cxr.training.config import ConfigError


def early_stages(model: nn.Module, stages: int) -> list[str]:
    """The names of the leaf modules of the stem and the first `stages` stages; [] for 0."""
    if not stages:
        return []
    name = model.card.architecture
    matcher = getattr(model, "group_matcher", None)
    if matcher is None:
        raise ConfigError(
            f"optim.freeze_stages: {name} has no stage map; timm backbones have one "
            "(efficientnet_lite0, efficientnet_lite1, efficientnet_lite2)"
        )
    groups = group_modules(model, matcher(coarse=True))
    order = sorted(groups)
    if stages > len(order) - 2:  # the last group holds the head, which always trains
        raise ConfigError(
            f"optim.freeze_stages={stages}: {name} has {len(order) - 2} stages after its stem"
        )
    return [name for g in order[: stages + 1] for name in groups[g]]


class HeadFirst(BaseFinetuning):
    def __init__(self, warmup_epochs: int) -> None:
        super().__init__()
        self.warmup_epochs = warmup_epochs

    def _backbone(self, pl_module: L.LightningModule):
        """Every leaf module outside the head (the head may sit inside a container, as VGG's
        `classifier.6` does) and outside the early stages that never train."""
        head = spec_of(pl_module.model.card).head
        frozen = {id(m) for m in pl_module.frozen}
        return [
            module
            for name, module in pl_module.model.named_modules()
            if not list(module.children())
            and not (name == head or name.startswith(head + "."))
            and id(module) not in frozen
        ]

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        self.freeze(self._backbone(pl_module), train_bn=False)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer) -> None:
        if epoch == self.warmup_epochs:
            self.make_trainable(self._backbone(pl_module))
