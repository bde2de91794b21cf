"""Refusals that need the model's card or the dataset's layout, made before torch is imported.

Loading a model imports torch (seconds); a mistyped class, a missing `--label-map` or a split the
folder lacks should not wait for it. The card is read here as plain data, without torch, onnx or
pydicom, and nothing is verified: whatever cannot be read this way is left to the full load,
which checks the file whole and refuses the same mistakes with the same words.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cxr.data.image import DICOM_SUFFIXES, RASTER_SUFFIXES
from cxr.data.layout import IGNORED_DIRS, LABELS_CSV, SPLIT_NAMES
from cxr.errors import CxrError, DatasetError

PROTOCOL_PARTS = ("tuning", "internal-test")  # cxr.evaluation.evaluate's, pinned alike
ONNX_META_KEY = "cxr"  # cxr.inference.predictor's
_ONNX_METADATA_PROPS = 14  # ModelProto.metadata_props; each entry: key = 1, value = 2


class _CardOnly(pickle.Unpickler):
    """torch.save's pickle with every tensor left out: the card is plain data beside them."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module.partition(".")[0] == "torch":
            return _left_out
        raise pickle.UnpicklingError(f"{module}.{name} is not model file data")

    def persistent_load(self, pid: Any) -> None:
        return None


def _left_out(*args: Any, **kwargs: Any) -> None:
    return None


def _varint(data: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        value, shift, i = value | (byte & 0x7F) << shift, shift + 7, i + 1
        if byte < 0x80:
            return value, i


def _fields(data: memoryview) -> Iterator[tuple[int, memoryview]]:
    """A protobuf message's length-delimited fields as (number, bytes); the others skipped."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        wire = key & 7
        if wire == 2:
            n, i = _varint(data, i)
            yield key >> 3, data[i : i + n]
            i += n
        elif wire in (0, 1, 5):
            i = _varint(data, i)[1] if wire == 0 else i + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"protobuf wire type {wire}")


def _onnx_card(path: Path) -> dict:
    for number, entry in _fields(memoryview(path.read_bytes())):
        if number == _ONNX_METADATA_PROPS:
            item = {k: bytes(v).decode() for k, v in _fields(entry)}
            if item.get(1) == ONNX_META_KEY:
                return json.loads(item[2])
    raise ValueError("no cxr metadata")


def _torch_card(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        return _CardOnly(io.BytesIO(archive.read(name))).load()["card"]


def model_card(path: Path) -> dict | None:
    """The card of a model file as a dict, or None when it cannot be read this way."""
    try:
        card = _onnx_card(path) if path.suffix == ".onnx" else _torch_card(path)
        classes = card["classes"]
    except Exception:  # any damage at all: the full load names it
        return None
    return card if isinstance(classes, list | tuple) and len(classes) >= 2 else None


def _subdirs(folder: Path) -> list[Path]:
    return [
        d
        for d in folder.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name.lower() not in IGNORED_DIRS
    ]


def _holds_images(folder: Path) -> bool:
    """Whether discovery finds an image under `folder`: by suffix, or DICOM by magic bytes."""
    for path in folder.rglob("*"):
        parts = {p.lower() for p in path.relative_to(folder).parts[:-1]}
        if parts & IGNORED_DIRS or path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() in RASTER_SUFFIXES | DICOM_SUFFIXES:
            return True
        try:
            with path.open("rb") as fh:
                if fh.read(132)[128:] == b"DICM":
                    return True
        except OSError:  # unreadable: not an image to discovery either
            continue
    return False


def _layout(root: Path) -> dict[str | None, set[str]]:
    found: dict[str | None, set[str]] = {}
    if (root / LABELS_CSV).is_file():
        with (root / LABELS_CSV).open(newline="") as fh:
            for row in csv.DictReader(fh):
                split = SPLIT_NAMES.get((row.get("split") or "").lower())
                found.setdefault(split, set()).add(row["label"])
        return found
    splits = [(SPLIT_NAMES[d.name.lower()], d) for d in _subdirs(root)
              if d.name.lower() in SPLIT_NAMES]  # fmt: skip
    for split, folder in splits or [(None, root)]:
        found.setdefault(split, set()).update(d.name for d in _subdirs(folder) if _holds_images(d))
    return {split: labels for split, labels in found.items() if labels}


def dataset_layout(root: Path) -> dict[str | None, set[str]] | None:
    """Each split of a dataset folder (None: no split) with its labels under the `folder`
    scheme, as discovery finds them but decoding nothing; None when `root` is not a dataset this
    can read (discovery then says what is wrong with it)."""
    if not root.is_dir():
        return None
    try:
        return _layout(root) or None
    except (OSError, ValueError, KeyError, csv.Error):  # unreadable, undecodable, no label column
        return None


def check_evaluation(
    model: Path,
    root: Path,
    split: str | None,
    label_map: dict[str, str],
    threshold: float | None,
) -> None:
    """What `cxr evaluate` would refuse once the model and the images were loaded."""
    layout = dataset_layout(root)
    if layout is not None and split not in PROTOCOL_PARTS:
        splits = sorted(s for s in layout if s)
        if split is None and splits:
            raise DatasetError(
                f"{root} has splits {', '.join(splits)}: choose one with --split "
                f"(or --split internal-test for the model's own held-out patients)"
            )
        if split is not None and split not in layout:
            raise DatasetError(
                f"{root}: no split {split!r}; it has {', '.join(splits) or 'no splits'} "
                f"(and {', '.join(PROTOCOL_PARTS)})"
            )
    card = model_card(model)
    if card is None:
        return
    classes = list(card["classes"])
    if threshold is not None and len(classes) != 2:
        raise DatasetError("--threshold applies to binary models only")
    if split in PROTOCOL_PARTS and not card.get("data"):
        raise CxrError(f"{model} records no training data settings: --split {split} needs them")
    unknown_targets = sorted(set(label_map.values()) - set(classes))
    if unknown_targets:
        raise DatasetError(
            f"--label-map names {unknown_targets}, not classes of the model ({', '.join(classes)})"
        )
    plain_labels = card.get("label_scheme", "folder") == "folder" and not card.get("negative")
    if layout is None or split in PROTOCOL_PARTS or not plain_labels:
        return
    labels = {label_map.get(label, label) for label in layout[split]}
    unknown = sorted(labels - set(classes))
    if unknown:
        raise DatasetError(
            f"{root}: labels {unknown} are not among the model's classes {classes} "
            f"(map them with --label-map {unknown[0]}=CLASS)"
        )


def check_calibration(model: Path, method: str) -> None:
    """Platt scaling is stated for two classes: refused on a multi-class model now."""
    card = model_card(model)
    if method == "platt" and card is not None and len(card["classes"]) != 2:
        raise CxrError(
            f"--method platt calibrates binary models; {model} has {len(card['classes'])} "
            "classes (use temperature or vector)"
        )


def check_class(model: Path, name: str) -> None:
    """A class the model predicts (`--cam-class`), refused now if it is not one."""
    card = model_card(model)
    if card is not None and name not in card["classes"]:
        raise CxrError(f"no class {name!r} in this model; it predicts {', '.join(card['classes'])}")
