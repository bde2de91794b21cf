"""Linear probing's fast path: a frozen backbone gives the same features every epoch, so each image
goes through it once and the head trains on those features (no augmentation: it would change them).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from cxr.data.discovery import Dataset
from cxr.models.registry import spec_of
from cxr.training.config import DataConfig
from cxr.training.datamodule import PixelTensors, XrayDataModule


class HeadInputs(TorchDataset):
    def __init__(self, features: torch.Tensor, targets: list[int]) -> None:
        self.features, self.targets = features, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.features[index], self.targets[index]


@torch.inference_mode()
def head_inputs(
    model: nn.Module,
    images: PixelTensors,
    device: torch.device,
    batch_size: int,
    bf16: bool,
    channels_last: bool = True,
) -> torch.Tensor:
    """What the model's head receives for each image, from the backbone in eval mode."""
    prep = model.card.preprocessing
    head = model.get_submodule(spec_of(model.card).head)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _, args: captured.append(args[0].float().cpu()))
    was_training = model.training
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.eval().to(device, memory_format=layout)
    try:
        for x, _ in DataLoader(images, batch_size=batch_size):
            x = (x.to(device).float() / 255.0 - prep.mean) / prep.std  # float32, as in training
            # only the forward is autocast; the hook hands the head's inputs back in float32
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                model(x.contiguous(memory_format=layout))
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured)


class ProbeDataModule(XrayDataModule):
    """Serves the head inputs of `model` (frozen) instead of images; `train_images` and
    `tune_images` stay images."""

    def __init__(
        self, cfg: DataConfig, model: nn.Module, dataset: Dataset, bf16: bool, channels_last: bool
    ) -> None:
        super().__init__(cfg, model.card, dataset)
        self.model, self.bf16, self.channels_last = model, bf16, channels_last

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        for name in ("train_set", "tune_set"):
            images = getattr(self, name)
            features = head_inputs(
                self.model, images, device, self.cfg.batch_size, self.bf16, self.channels_last
            )
            setattr(self, name, HeadInputs(features, images.targets))
