"""What a training step computes; Lightning decides devices, precision and loops."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from cxr.evaluation.metrics import auroc
from cxr.training.config import OptimConfig

STRATEGIES = ("scratch", "finetune", "linear_probe")
HISTORY_FIELDS = [
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_auroc",
    "lr",
    "seconds",
]


class XrayClassifier(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        optim: OptimConfig,
        strategy: str,
        class_weights: torch.Tensor | None,
        history: Path | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
        self.model, self.optim, self.strategy, self.history = model, optim, strategy, history
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.register_buffer("class_weights", class_weights, persistent=False)
        self._head = model.get_submodule(model.head_name)
        self._head_ids = {id(p) for p in self._head.parameters()}
        self._train: list[tuple[float, int, int]] = []
        self._val: list[tuple[torch.Tensor, torch.Tensor, float]] = []
        self._val_row: dict[str, float] = {}
        self._started = time.perf_counter()

    def backbone_parameters(self):
        return (p for p in self.model.parameters() if id(p) not in self._head_ids)

    def backbone_frozen(self) -> bool:
        if self.strategy == "linear_probe":
            return True
        return self.strategy == "finetune" and self.current_epoch < self.optim.warmup_epochs

    def train(self, mode: bool = True):
        """A frozen backbone also keeps its BatchNorm statistics: those layers stay in eval mode."""
        super().train(mode)
        if mode and self.strategy != "scratch" and self.backbone_frozen():
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and module is not self._head:
                    module.eval()
        return self

    def on_train_epoch_start(self) -> None:
        frozen = self.backbone_frozen()
        for p in self.backbone_parameters():
            p.requires_grad_(not frozen)
        self.train(True)
        self._started = time.perf_counter()
        self._lr = self.optimizers().param_groups[0]["lr"]

    def on_fit_start(self) -> None:
        self.model.to(memory_format=self.memory_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strategy == "linear_probe":  # x holds the head's inputs (cxr.training.features)
            return self._head(x)
        return self.model(x.contiguous(memory_format=self.memory_format))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits.float(), y, weight=self.class_weights)
        self._train.append(
            (float(loss.detach()) * len(y), int((logits.argmax(1) == y).sum()), len(y))
        )
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x).float()
        loss = F.cross_entropy(logits, y, weight=self.class_weights)
        self._val.append((logits.softmax(1).cpu(), y.cpu(), float(loss) * len(y)))

    def on_validation_epoch_end(self) -> None:
        probs = torch.cat([p for p, _, _ in self._val]).numpy()
        targets = torch.cat([t for _, t, _ in self._val]).numpy()
        row = {
            "val_loss": sum(s for _, _, s in self._val) / len(targets),
            "val_acc": float((probs.argmax(1) == targets).mean()),
            "val_auroc": auroc(targets, probs),
        }
        self._val.clear()
        self.log_dict(row, prog_bar=True, sync_dist=True)
        self._val_row = row

    def on_train_epoch_end(self) -> None:
        n = sum(k for _, _, k in self._train) or 1
        row = {
            "epoch": self.current_epoch,
            "train_loss": sum(s for s, _, _ in self._train) / n,
            "train_acc": sum(c for _, c, _ in self._train) / n,
            **self._val_row,
            "lr": self._lr,
            "seconds": round(time.perf_counter() - self._started, 2),
        }
        self._train.clear()
        if self.history is not None and self.trainer.is_global_zero:
            new = not self.history.exists()
            with self.history.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, HISTORY_FIELDS)
                if new:
                    writer.writeheader()
                writer.writerow({k: row.get(k, "") for k in HISTORY_FIELDS})

    def configure_optimizers(self):
        backbone_lr = self.optim.lr * (
            self.optim.backbone_lr_factor if self.strategy == "finetune" else 1
        )
        groups = [{"params": list(self._head.parameters()), "lr": self.optim.lr}]
        if self.strategy != "linear_probe":
            groups.append({"params": list(self.backbone_parameters()), "lr": backbone_lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=self.optim.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(self.optim.epochs, 1))
        return {"optimizer": optimizer, "lr_scheduler": schedule}
