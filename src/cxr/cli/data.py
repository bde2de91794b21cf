"""`cxr data`: look at, cache and fetch datasets."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cxr.cli.common import (
    Dataset,
    Negative,
    Scheme,
    SchemeName,
    Workers,
    find_dataset,
    in_file,
    out_folder,
    progress,
    say,
    work_folder_option,
)
from cxr.cli.render import print_summary
from cxr.outputs import default_output_dir

data_app = typer.Typer(
    help="Look at, cache and fetch datasets.", no_args_is_help=True, rich_markup_mode="markdown"
)


@data_app.command("inspect")
def data_inspect(
    images: Dataset = None,
    out: Annotated[
        Path | None,
        out_folder("New folder for summary.json and the PNGs (default outputs/inspect/…)"),
    ] = None,
    scheme: Scheme = SchemeName.folder,
    negative: Negative = None,
) -> None:
    """Count images, patients, sizes, duplicates and bad files; chart the classes; draw a montage.

    Example: cxr data inspect ../shared/data/COVID-19_Radiography_Dataset --out outputs/covid
    """
    from cxr.data.inspect import plot_class_distribution, plot_montage, summarise

    dataset = find_dataset(images, scheme.value, negative)
    with progress() as stages:
        summary = summarise(dataset, stages(f"reading {dataset.root.name}", len(dataset.records)))
    if out is None:
        out = default_output_dir("inspect", dataset.root.name)
    else:
        out.mkdir(parents=True)
    (out / "summary.json").write_text(summary.to_json())
    chart = plot_class_distribution(summary, out)
    montage = plot_montage(dataset, out)
    print_summary(summary)
    say(f"wrote {out / 'summary.json'}, {chart}, {montage}")


@data_app.command("cache")
def data_cache(
    images: Dataset = None,
    size: Annotated[int, typer.Option(help="Square side in pixels.", min=16)] = 224,
    workers: Workers = 2,
) -> None:
    """Decode and resize every image once into the memory-mapped cache; time a cached pass.

    Example: cxr data cache ../shared/data/chest_xray --size 224
    """
    from cxr.data.cache import PixelCache

    dataset = find_dataset(images, "folder", None)
    paths = [r.path for r in dataset.records]
    cache = PixelCache(size)
    with progress() as stages:
        start = time.perf_counter()
        first = cache.load(paths, workers=workers, progress=stages("caching", len(paths)))
        first_s = time.perf_counter() - start
    start = time.perf_counter()
    second = PixelCache(size).load(paths)
    checksum = sum(int(second[i].sum()) for i in range(len(second)))
    second_s = time.perf_counter() - start
    say(
        f"{len(first):,} images cached at {size}x{size} in {cache.folder} "
        f"({len(first.failures)} unreadable)"
    )
    say(
        f"first pass {first_s:.2f} s, cached pass over every pixel {second_s:.2f} s "
        f"({first_s / max(second_s, 1e-9):.1f}x faster); checksum {checksum}"
    )
    for bad in first.failures:
        say(f"  {bad.path}: {bad.reason}", "red")


class ArchiveName(StrEnum):
    """The datasets `cxr data download` knows (cxr.data.download.ARCHIVES, pinned equal by
    tests/test_grammar.py)."""

    kermany = "kermany"


@data_app.command("download")
def data_download(
    name: Annotated[ArchiveName, typer.Argument(metavar="DATASET", help="The dataset.")],
    out: Annotated[
        Path,
        work_folder_option(
            "Folder to create the train/test layout in; resumable: files already there with the "
            "same content are kept, others never overwritten.",
            "--out",
        ),
    ],
    from_archive: Annotated[
        Path | None, in_file("Unpack this local ChestXRay2017.zip instead of downloading.")
    ] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected SHA-256 of the archive.")] = None,
) -> None:
    """Download the Kermany set from Mendeley Data (resumable, checksummed) and unpack it; files
    already there with the same content are kept, different ones are never overwritten.

    Example: cxr data download kermany --out data/kermany

    Example: cxr data download kermany --from-archive ChestXRay2017.zip --out data/kermany
    """
    from dataclasses import replace

    from cxr.data.download import ARCHIVES, fetch, unpack

    archive = (
        ARCHIVES[name.value] if sha256 is None else replace(ARCHIVES[name.value], sha256=sha256)
    )
    if from_archive is None:
        say(f"Downloading {archive.name} from {archive.source}")
        from_archive = fetch(archive, out / "downloads")
    counts = unpack(from_archive, out)
    for (split, label), n in sorted(counts.items()):
        say(f"{split}/{label}: {n:,}")
    say(f"unpacked into {out}")
