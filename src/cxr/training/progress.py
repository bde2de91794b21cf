"""Lightning's rich progress bar, counting epochs as a user counts them ("Epoch 1/2", not
"Epoch 0/1") and without the logger's version number in the metrics column. Where the output is
not a terminal (a log, `cxr study` in a pipeline, a test), a redrawn bar repeats itself line
after line: there it prints one line per epoch instead."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import RichProgressBar

SHOWN = ("train_loss_epoch", "val_loss", "val_auroc")  # the epoch line's figures


class EpochProgress(RichProgressBar):
    def __init__(self) -> None:
        super().__init__()
        self._lines = not sys.stdout.isatty()
        if self._lines:
            self.disable()

    def enable(self) -> None:
        if not self._lines:
            super().enable()

    def _get_train_description(self, current_epoch: int) -> str:
        text = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None:
            text += f"/{self.trainer.max_epochs}"
        return f"{text:{len(self.validation_description)}}"

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._lines:
            super().on_train_epoch_end(trainer, pl_module)
            return
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        figures = trainer.callback_metrics
        shown = [
            f"{k.removesuffix('_epoch')} {float(figures[k]):.4f}" for k in SHOWN if k in figures
        ]
        total = f"/{trainer.max_epochs}" if trainer.max_epochs is not None else ""
        print(f"epoch {trainer.current_epoch + 1}{total}: {', '.join(shown)}", flush=True)
