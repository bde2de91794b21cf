"""Head first, then everything: Lightning's BaseFinetuning freezes the backbone (BatchNorm
statistics included) for the warm-up epochs and makes it trainable again afterwards. The backbone
is already in the optimiser (at its own learning rate); frozen parameters just get no gradient."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning


class HeadFirst(BaseFinetuning):
    def __init__(self, warmup_epochs: int) -> None:
        super().__init__()
        self.warmup_epochs = warmup_epochs

    def _backbone(self, pl_module: L.LightningModule):
        """Every leaf module outside the head (the head may sit inside a container, as VGG's
        `classifier.6` does)."""
        head = pl_module.model.card.spec.head
        return [
            module
            for name, module in pl_module.model.named_modules()
            if not list(module.children()) and not (name == head or name.startswith(head + "."))
        ]

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        self.freeze(self._backbone(pl_module), train_bn=False)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer) -> None:
        if epoch == self.warmup_epochs:
            self.make_trainable(self._backbone(pl_module))
