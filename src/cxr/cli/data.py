"""`cxr data`: look at, cache and fetch datasets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cxr.cli.common import NegativeOpt, SchemeOpt, console, progress, say
from cxr.cli.common import dataset as find_dataset
from cxr.errors import CxrError

data_app = typer.Typer(help="Look at, cache and fetch datasets.", no_args_is_help=True)


@data_app.command("inspect")
def data_inspect(
    root: Annotated[
        Path | None, typer.Argument(help="Dataset folder; default $CXR_DATA/chest_xray.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where summary.json and the PNGs go; default outputs/inspect/<folder name>."
        ),
    ] = None,
    scheme: SchemeOpt = "folder",
    negative: NegativeOpt = None,
) -> None:
    """Count images, patients, sizes, duplicates and bad files; chart the classes; draw a montage.

    Example: cxr data inspect ../shared/data/COVID-19_Radiography_Dataset --out outputs/covid
    """
    from cxr.data.inspect import plot_class_distribution, plot_montage, summarise

    dataset = find_dataset(root, scheme, negative)
    with progress(f"Reading {dataset.root.name}", len(dataset.records)) as bar:
        summary = summarise(dataset, progress=lambda n: bar.advance(bar.task_ids[0], n))
    out = out or Path("outputs") / "inspect" / dataset.root.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(summary.to_json())
    chart = plot_class_distribution(summary, out)
    montage = plot_montage(dataset, out)

    table = Table(title=f"{summary.root} ({summary.layout}, scheme {summary.scheme})")
    for column in ("split", "class", "images", "patients/studies"):
        table.add_column(
            column, justify="right" if column in {"images", "patients/studies"} else "left"
        )
    for split, per_class in summary.counts.items():
        for label, n in per_class.items():
            table.add_row(split, label, f"{n:,}", f"{summary.patients[split][label]:,}")
    console.print(table)
    console.print(
        f"images {summary.images:,} | imbalance {summary.imbalance_ratio:.2f} : 1 | "
        f"width {summary.width_range[0]}-{summary.width_range[1]} px, "
        f"height {summary.height_range[0]}-{summary.height_range[1]} px | "
        f"modes {summary.modes} | formats {summary.formats} | colour images {summary.colour_images}"
    )
    console.print(
        f"duplicates: {summary.duplicate_groups} groups, "
        f"{summary.redundant_copies} redundant copies "
        f"({summary.duplicates_across_splits} across splits, "
        f"{summary.duplicates_across_labels} with conflicting labels)"
    )
    console.print(f"unreadable files: {len(summary.unreadable)}")
    for bad in summary.unreadable:
        say("unreadable", f"{bad['path']}: {bad['reason']}")
    console.print(f"wrote {out / 'summary.json'}, {chart}, {montage}")


@data_app.command("cache")
def data_cache(
    root: Annotated[
        Path | None, typer.Argument(help="Dataset folder; default $CXR_DATA/chest_xray.")
    ] = None,
    size: Annotated[int, typer.Option(help="Square side in pixels.")] = 224,
    workers: Annotated[int, typer.Option(help="Decoding processes.")] = 2,
) -> None:
    """Decode and resize every image once into the memory-mapped cache; time a cached pass.

    Example: cxr data cache ../shared/data/chest_xray --size 224
    """
    from cxr.data.cache import PixelCache

    dataset = find_dataset(root, "folder", None)
    paths = [r.path for r in dataset.records]
    cache = PixelCache(size)
    with progress("Caching", len(paths)) as bar:
        start = time.perf_counter()
        first = cache.load(
            paths, workers=workers, progress=lambda n: bar.advance(bar.task_ids[0], n)
        )
        first_s = time.perf_counter() - start
    start = time.perf_counter()
    second = PixelCache(size).load(paths)
    checksum = sum(int(second[i].sum()) for i in range(len(second)))
    second_s = time.perf_counter() - start
    console.print(
        f"{len(first):,} images cached at {size}x{size} in {cache.folder} "
        f"({len(first.failures)} unreadable)"
    )
    console.print(
        f"first pass {first_s:.2f} s, cached pass over every pixel {second_s:.2f} s "
        f"({first_s / max(second_s, 1e-9):.1f}x faster); checksum {checksum}"
    )
    for bad in first.failures:
        say("unreadable", f"{bad.path}: {bad.reason}")


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="Dataset: kermany.")],
    to: Annotated[Path, typer.Option(help="Folder to create the train/test layout in.")],
    from_archive: Annotated[
        Path | None,
        typer.Option(help="Unpack this local ChestXRay2017.zip instead of downloading."),
    ] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected SHA-256 of the archive.")] = None,
) -> None:
    """Download the Kermany set from Mendeley Data (resumable, checksummed) and unpack it.

    Example: cxr data download kermany --to data/kermany
    Example: cxr data download kermany --from-archive ChestXRay2017.zip --to data/kermany
    """
    from dataclasses import replace

    from cxr.data.download import ARCHIVES, fetch, unpack

    if name not in ARCHIVES:
        raise CxrError(f"unknown dataset {name!r}; available: {', '.join(ARCHIVES)}")
    archive = ARCHIVES[name] if sha256 is None else replace(ARCHIVES[name], sha256=sha256)
    if from_archive is None:
        console.print(f"Downloading {archive.name} from {archive.source}")
        from_archive = fetch(archive, to / "downloads")
    counts = unpack(from_archive, to)
    for (split, label), n in sorted(counts.items()):
        console.print(f"{split}/{label}: {n:,}")
    console.print(f"unpacked into {to}")
