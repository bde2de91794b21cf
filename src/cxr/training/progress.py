"""Lightning's rich progress bar, counting epochs as a user counts them ("Epoch 1/2", not
"Epoch 0/1") and without the logger's version number in the metrics column."""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar


class EpochProgress(RichProgressBar):
    def _get_train_description(self, current_epoch: int) -> str:
        text = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None:
            text += f"/{self.trainer.max_epochs}"
        return f"{text:{len(self.validation_description)}}"

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
