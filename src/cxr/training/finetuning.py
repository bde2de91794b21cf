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
        head = pl_module.head
        return [m for m in pl_module.model.children() if m is not head]

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        self.freeze(self._backbone(pl_module), train_bn=False)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer) -> None:
        if epoch == self.warmup_epochs:
            self.make_trainable(self._backbone(pl_module))
