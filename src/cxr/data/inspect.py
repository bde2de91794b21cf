"""Look at a dataset before training on it: counts, patients, sizes, duplicates, bad files."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from cxr.data.discovery import Dataset
from cxr.data.duplicates import content_hash, find_duplicates
from cxr.data.preprocess import resize_square
from cxr.data.reader import read_file, read_image
from cxr.errors import ImageReadError


@dataclass
class Summary:
    root: str
    layout: str
    scheme: str
    classes: list[str]
    images: int
    counts: dict[str, dict[str, int]]  # split -> class -> images
    patients: dict[str, dict[str, int]]  # split -> class -> distinct patients / studies
    imbalance_ratio: float  # largest class over smallest, all splits together
    width_range: tuple[int, int]
    height_range: tuple[int, int]
    modes: dict[str, int]
    formats: dict[str, int]
    colour_images: int
    duplicate_groups: int
    redundant_copies: int
    duplicates_across_splits: int
    duplicates_across_labels: int
    unreadable: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def summarise(dataset: Dataset, progress: Callable[[int], None] | None = None) -> Summary:
    """Read every image once (so broken files are found now, not mid-training) and tally."""
    widths, heights, modes, formats, digests = [], [], Counter(), Counter(), []
    colour, unreadable, readable = 0, [], []
    for record in dataset.records:
        try:
            data = read_file(record.path)  # bounded; a FIFO cannot block it
            image = read_image(data, name=str(record.path))
        except (ImageReadError, OSError) as exc:
            unreadable.append({"path": str(record.path), "reason": _reason(exc)})
        else:
            readable.append(record)
            digests.append(content_hash(data))
            info = image.info
            widths.append(info.width)
            heights.append(info.height)
            modes[info.mode] += 1
            formats[info.source_format] += 1
            colour += info.is_colour
        if progress:
            progress(1)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    groups: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for record in readable:
        split = record.split or "all"
        counts[split][record.label] = counts[split].get(record.label, 0) + 1
        groups[split][record.label].add(record.group)
    per_class = Counter(r.label for r in readable)
    dups = find_duplicates(readable, digests)
    return Summary(
        root=str(dataset.root),
        layout=dataset.layout,
        scheme=dataset.scheme.name
        if dataset.scheme.negative is None
        else f"{dataset.scheme.name}, {dataset.scheme.negative} vs {dataset.scheme.positive}",
        classes=dataset.classes,
        images=len(readable),
        counts={s: dict(sorted(c.items())) for s, c in sorted(counts.items())},
        patients={
            s: {c: len(g) for c, g in sorted(cg.items())} for s, cg in sorted(groups.items())
        },
        imbalance_ratio=round(max(per_class.values()) / min(per_class.values()), 3)
        if per_class
        else 0.0,
        width_range=(min(widths, default=0), max(widths, default=0)),
        height_range=(min(heights, default=0), max(heights, default=0)),
        modes=dict(modes.most_common()),
        formats=dict(formats.most_common()),
        colour_images=colour,
        duplicate_groups=len(dups),
        redundant_copies=sum(d.redundant for d in dups),
        duplicates_across_splits=sum(d.crosses_splits for d in dups),
        duplicates_across_labels=sum(d.crosses_labels for d in dups),
        unreadable=unreadable,
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, ImageReadError):
        return f"{exc.problem.value}: {exc.detail}"
    return f"unreadable: {exc}"


def plot_class_distribution(summary: Summary, out: Path) -> Path:
    splits = list(summary.counts)
    fig = Figure(figsize=(1.8 + 1.4 * len(summary.classes), 3.6))
    ax = fig.subplots()
    width = 0.8 / max(len(splits), 1)
    for i, split in enumerate(splits):
        values = [summary.counts[split].get(c, 0) for c in summary.classes]
        xs = [k + i * width for k in range(len(summary.classes))]
        bars = ax.bar(xs, values, width, label=split)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks([k + width * (len(splits) - 1) / 2 for k in range(len(summary.classes))])
    ax.set_xticklabels(summary.classes)
    ax.set_ylabel("images")
    ax.set_title(f"Class distribution (imbalance {summary.imbalance_ratio:.2f} : 1)")
    top = max((max(c.values(), default=0) for c in summary.counts.values()), default=0)
    ax.set_ylim(0, top * 1.25 + 1)  # headroom for the bar labels and the legend
    ax.legend(title="split", fontsize=8, loc="upper right", ncols=len(splits))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path = out / "class_distribution.png"
    fig.savefig(path, dpi=120)
    return path


def plot_montage(dataset: Dataset, out: Path, per_class: int = 6, seed: int = 0) -> Path:
    """A few random readable images per class, squashed the way the model will see them."""
    rng = random.Random(seed)
    classes = dataset.classes
    fig = Figure(figsize=(1.6 * per_class, 2.0 * len(classes) + 0.4))
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for row, label in enumerate(classes):
        candidates = [r for r in dataset.records if r.label == label]
        rng.shuffle(candidates)
        shown = 0
        for record in candidates:
            if shown == per_class:
                break
            try:
                pixels = resize_square(read_image(record.path).pixels, 160)
            except ImageReadError:
                continue
            ax = axes[row][shown]
            ax.imshow(pixels, cmap="gray", vmin=0, vmax=255)
            ax.set_title(record.path.name[:22], fontsize=6)
            shown += 1
        axes[row][0].set_ylabel(label, fontsize=10)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{dataset.root.name}: samples per class", fontsize=11)
    fig.tight_layout()
    path = out / "montage.png"
    fig.savefig(path, dpi=110)
    return path
