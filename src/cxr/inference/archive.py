"""`cxr predict` at archive scale: Lightning's `Trainer.predict` on N processes or nodes, as
training runs (devices, num_nodes, strategy; torchrun and SLURM launch it unchanged).

The listing is cut into batches of `batch` images in listing order, and rank r takes batches
r, r + world, ... (each DataLoader worker a share of those): disjoint, deterministic, and the same
batches a one-process run forms, so every image is scored in the same company and the merged
worklist is byte-identical to it. Results go to per-rank part files (`cxr.inference.shards`);
rank 0 draws one bar over all ranks and merges the parts at the end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cxr.data.reader import read_image
from cxr.errors import ImageReadError
from cxr.inference.archive_listing import Listing
from cxr.inference.predict import Notes, Worklist, notes
from cxr.inference.predictor import Predictor
from cxr.inference.shards import (
    PROGRESS,
    PartWriter,
    Record,
    done,
    merge,
    read_progress,
    write_progress,
)
from cxr.progress import Stages, silent


def threads_per_process(devices: int) -> int:
    """The cores shared among this machine's processes, so N processes do not oversubscribe."""
    return max(1, (os.cpu_count() or 1) // devices)


@dataclass
class Item:
    index: int
    name: str
    digest: str
    array: np.ndarray | None = None
    notes: Notes | None = None
    reason: str = ""


@dataclass
class Batch:
    items: list[Item] = field(default_factory=list)
    resumed: int = 0  # images of this batch a previous run finished, not scored again


def batched(items: Iterator, size: int) -> Iterator[tuple]:
    """`itertools.batched` (Python 3.12) for 3.11."""
    items = iter(items)
    while chunk := tuple(islice(items, size)):
        yield chunk


class Shard(IterableDataset):
    """This rank's batches of the listing, each read and preprocessed in a DataLoader worker."""

    def __init__(self, listing: Listing, batch: int, rank: int, world: int, done: dict, card):
        self.listing, self.batch, self.rank, self.world = listing, batch, rank, world
        self.done, self.prep, self.population = done, card.preprocessing, card.population

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for k, chunk in enumerate(batched(enumerate(self.listing), self.batch)):
            if k % self.world == self.rank and (k // self.world) % workers == worker:
                yield self.prepare(chunk)

    def prepare(self, chunk: tuple[tuple[int, tuple[str, str]], ...]) -> Batch:
        if self.listing.stable_names and all(name in self.done for _, (name, _) in chunk):
            return Batch([], len(chunk))
        fetched = [(i, name, *self.fetch(locator, name)) for i, (name, locator) in chunk]
        if all(self.done.get(name, None) == digest for _, name, digest, _ in fetched):
            return Batch([], len(chunk))  # the same bytes were scored before
        return Batch([self.decode(*f) for f in fetched])

    def fetch(self, locator: str, name: str) -> tuple[str, bytes | str]:
        """The file's digest and bytes, or "" and why it could not be read."""
        try:
            data = self.listing.fetch(locator, name)
        except ImageReadError as exc:
            return "", f"{exc.problem.value}: {exc.detail}"
        return hashlib.sha256(data).hexdigest(), data

    def decode(self, index: int, name: str, digest: str, data: bytes | str) -> Item:
        if isinstance(data, str):
            return Item(index, name, digest, reason=data)
        try:
            image = read_image(data, name)
        except ImageReadError as exc:
            return Item(index, name, digest, reason=f"{exc.problem.value}: {exc.detail}")
        return Item(
            index, name, digest, self.prep.to_array(image.pixels), notes(image, self.population)
        )


class Scorer(L.LightningModule):
    """The predictor (PyTorch or ONNX Runtime) behind Lightning's predict loop."""

    def __init__(
        self, predictor: Predictor, listing: Listing, batch: int, workers: int, done: dict
    ) -> None:
        super().__init__()
        self.predictor, self.listing, self.done = predictor, listing, done
        self.batch, self.workers = batch, workers

    def predict_dataloader(self) -> DataLoader:
        shard = Shard(
            self.listing,
            self.batch,
            self.trainer.global_rank,
            self.trainer.world_size,
            self.done,
            self.predictor.card,
        )
        return DataLoader(shard, batch_size=None, num_workers=self.workers)

    def transfer_batch_to_device(self, batch: Batch, device, dataloader_idx: int) -> Batch:
        return batch  # numpy arrays for the predictor, which places them itself

    def predict_step(self, batch: Batch) -> list[Record]:
        good = [item for item in batch.items if item.array is not None]
        probs = self.predictor.predict(np.stack([i.array for i in good])) if good else []
        scored = [
            Record(i.index, i.name, i.digest, [float(v) for v in p], str(p.dtype),
                   i.notes.flags, i.notes.warnings)
            for i, p in zip(good, probs, strict=True)
        ]  # fmt: skip
        failed = [Record(i.index, i.name, i.digest, reason=i.reason) for i in batch.items
                  if i.array is None]  # fmt: skip
        return scored + failed


class PartsWriter(BasePredictionWriter):
    """Each batch's records into this rank's part file as soon as they exist; this rank's counts
    into its progress file; on rank 0, one bar summed over all ranks."""

    def __init__(self, out: Path, stages: Stages, total: int) -> None:
        super().__init__(write_interval="batch")
        self.out, self.stages, self.total = out, stages, total

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            shutil.rmtree(self.out / PROGRESS, ignore_errors=True)  # an earlier run's counts
        trainer.strategy.barrier("cxr-archive-setup")
        self.rank = trainer.global_rank
        self.part = PartWriter(self.out, self.rank)
        self.state = {"rank": self.rank, "images": 0, "passed": 0, "seconds": 0.0, "end": False}
        self.shown = 0
        self.step = self.stages("scoring", self.total) if trainer.is_global_zero else None
        self.started = time.monotonic()
        self.polled = 0.0

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if prediction:
            self.part.write(prediction)
        self.state["images"] += len(prediction)
        self.state["passed"] += batch.resumed
        self.report()

    def report(self, end: bool = False) -> None:
        self.state |= {"seconds": time.monotonic() - self.started, "end": end}
        write_progress(self.out, self.rank, self.state)
        if self.step is not None and (end or time.monotonic() - self.polled > 1.0):
            self.polled = time.monotonic()
            states = read_progress(self.out)
            now = sum(s["images"] + s["passed"] for s in states)
            self.step(now - self.shown)
            self.shown = now

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.part.close()
        self.report(end=True)
        if self.step is not None:  # the bar follows the other ranks until each has finished
            while len([s for s in read_progress(self.out) if s["end"]]) < trainer.world_size:
                time.sleep(0.5)
                self.report(end=True)
        trainer.strategy.barrier("cxr-archive-end")


@dataclass
class Launch:
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "cpu"


def score_archive(
    predictor: Predictor,
    listing: Listing,
    out: Path,
    launch: Launch,
    batch: int = 32,
    workers: int = 0,
    stages: Stages = silent,
    total: int = 0,
    score_anyway: bool = False,
) -> Worklist | None:
    """Score `listing` into `out` (parts, progress) on every rank; on rank 0, return the merged
    worklist of everything `out` holds, this run's and earlier ones'."""
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r"Couldn't infer the batch indices")  # none needed
    finished = done(out)
    strategy = launch.strategy
    if strategy == "auto" and launch.devices * launch.num_nodes > 1:
        strategy = "ddp"
    writer = PartsWriter(out, stages, total)
    trainer = L.Trainer(
        accelerator=launch.accelerator,
        devices=launch.devices,
        num_nodes=launch.num_nodes,
        strategy=strategy,
        callbacks=[writer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=out,
    )
    trainer.predict(Scorer(predictor, listing, batch, workers, finished), return_predictions=False)
    if not trainer.is_global_zero:
        return None
    return merge(out, predictor, score_anyway)


def per_rank(out: Path) -> list[dict]:
    """This run's images and img/s of each rank, and the images it found done by an earlier
    run (from the progress files)."""
    return [
        {
            "rank": s["rank"],
            "images": s["images"],
            "done_before": s["passed"],
            "seconds": round(s["seconds"], 2),
            "img_per_s": round(s["images"] / s["seconds"], 2) if s["seconds"] else 0.0,
        }
        for s in sorted(read_progress(out), key=lambda s: s["rank"])
    ]
