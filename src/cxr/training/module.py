"""What a training step computes; Lightning decides devices, precision, loops, logs, syncing."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from timm.data import Mixup
from torch import nn

from cxr.models.registry import spec_of
from cxr.training.augment import BatchAugment
from cxr.training.config import OptimConfig
from cxr.training.finetuning import early_stages


def freeze_batchnorm(model: nn.Module) -> None:
    """Every BatchNorm layer to eval mode: it normalises with its stored statistics, which a
    small batch cannot re-estimate well, and the step skips the batch statistics; its scale and
    shift still learn."""
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


class XrayClassifier(L.LightningModule):
    """Images arrive as uint8 batches; augmentation (training only) and normalisation are done
    here on whole batches, so data loading is a memory copy and never starves the step."""

    def __init__(
        self,
        model: nn.Module,
        optim: OptimConfig,
        strategy: str,
        class_weights: torch.Tensor | None,
        augment: BatchAugment | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.model, self.optim, self.strategy, self.augment = model, optim, strategy, augment
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # before Lightning wraps it: DDP's gradient buckets take the parameters' layout as built
        self.model.to(memory_format=self.memory_format)
        self.register_buffer("class_weights", class_weights, persistent=False)
        prep = model.card.preprocessing
        self.mean, self.std = prep.mean, prep.std
        self.head = model.get_submodule(spec_of(model.card).head)
        self.frozen = [model.get_submodule(n) for n in early_stages(model, optim.freeze_stages)]
        for module in self.frozen:
            module.requires_grad_(False)
        classes = model.card.args["num_classes"]
        # torchmetrics keeps the scores of every rank, so under DDP the logged AUROC is the
        # AUROC of the whole tuning split, not an average of per-rank AUROCs
        self.val_auroc = (
            torchmetrics.AUROC(task="binary")
            if classes == 2
            else torchmetrics.AUROC(task="multiclass", num_classes=classes)
        )
        # soft targets with the label smoothing folded in, so _loss does not smooth them again
        self.mixup = (
            Mixup(
                mixup_alpha=optim.mixup,
                cutmix_alpha=optim.cutmix,
                label_smoothing=optim.label_smoothing,
                num_classes=classes,
            )
            if optim.mixup or optim.cutmix
            else None
        )
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=classes)
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=classes)

    def on_train_epoch_start(self) -> None:
        """`optim.freeze_bn` and `optim.freeze_stages` (fine-tunes only: load_config refuses them
        otherwise) keep pretrained statistics; set at every epoch's start, after the callbacks
        (HeadFirst), because Lightning puts the whole model in training mode before it."""
        if self.optim.freeze_bn:
            freeze_batchnorm(self.model)
        for module in self.frozen:
            module.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strategy == "linear_probe":  # x holds the head's inputs (cxr.training.features)
            return self.head(x)
        return self.model(x.contiguous(memory_format=self.memory_format))

    def _prepare(self, x: torch.Tensor, y: torch.Tensor, train: bool):
        """Data preparation in float32 with autocast switched off, whatever the precision:
        scaling, normalisation and (training only) augmentation and mixing are not the model,
        and under bf16 autocast a convolution inside them returns bf16 into float32 buffers.
        Returns the inputs and the targets (soft when mixed)."""
        if self.strategy == "linear_probe":  # x holds the head's inputs (cxr.training.features)
            return x, y
        with torch.autocast(x.device.type, enabled=False):
            x = x.float() / 255.0
            if train and self.augment is not None:
                x = self.augment(x)
            x = (x - self.mean) / self.std
            # pairs: an odd last batch stays unmixed
            if train and self.mixup is not None and len(x) % 2 == 0:
                return self.mixup(x, y)
        return x, y

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        soft = y.is_floating_point()  # mixed targets already carry the smoothing
        return F.cross_entropy(
            logits.float(),
            y,
            weight=self.class_weights,
            label_smoothing=0.0 if soft else self.optim.label_smoothing,
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        x, target = self._prepare(x, y, train=True)
        logits = self(x)
        loss = self._loss(logits, target)
        self.train_acc.update(logits.argmax(1), y)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(self._prepare(x, y, train=False)[0]).float()
        probs = logits.softmax(1)
        # update, not forward: a batch-level AUROC of a one-class batch is meaningless (and warns)
        self.val_auroc.update(probs[:, 1] if probs.shape[1] == 2 else probs, y)
        self.val_acc.update(logits.argmax(1), y)
        self.log("val_loss", self._loss(logits, y), on_epoch=True, sync_dist=True)
        self.log("val_auroc", self.val_auroc, on_epoch=True, prog_bar=True)
        self.log("val_acc", self.val_acc, on_epoch=True)

    def configure_optimizers(self):
        head = list(self.head.parameters())
        head_ids = {id(p) for p in head}
        groups = [{"params": head, "lr": self.optim.lr}]
        if self.strategy != "linear_probe":
            factor = self.optim.backbone_lr_factor if self.strategy == "finetune" else 1.0
            backbone = [p for p in self.model.parameters() if id(p) not in head_ids]
            groups.append({"params": backbone, "lr": self.optim.lr * factor})
        optimizer = torch.optim.AdamW(groups, weight_decay=self.optim.weight_decay, foreach=True)
        if self.optim.schedule == "onecycle":
            schedule = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[g["lr"] for g in groups],
                total_steps=self.trainer.estimated_stepping_batches,
                pct_start=0.2,
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"},
            }
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(self.optim.epochs, 1))
        return {"optimizer": optimizer, "lr_scheduler": schedule}
