"""Fixtures: the real datasets in $CXR_DATA (../shared/data) and damaged copies made per test."""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest

from cxr.doctor import gather, lines
from cxr.settings import data_root
from cxr.training.config import load_config
from cxr.training.fit import fit

SHOTS = os.environ.get("CXR_SHOTS")  # a folder to keep the screenshots in, to look at them


def pytest_report_header(config: pytest.Config) -> list[str]:
    """`cxr doctor` at the top of every run's log: the host class (GPU, bf16 CPU, threads), the
    precision `auto` trains in, and the packages and servers this run had."""
    return ["cxr doctor:", *(f"  {line}" for line in lines(gather()))]


@pytest.fixture(scope="session")
def data() -> Path:
    root = data_root()
    assert (root / "chest_xray" / "train").is_dir(), f"shared data missing at {root.resolve()}"
    return root


@pytest.fixture()
def damaged_folder(tmp_path: Path, data: Path) -> Path:
    """A class folder with four good images and exactly three bad ones."""
    folder = tmp_path / "ds" / "NORMAL"
    folder.mkdir(parents=True)
    good = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:4]
    for path in good:
        shutil.copy(path, folder / path.name)
    whole = good[0].read_bytes()
    (folder / "truncated.jpeg").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.jpeg").write_bytes(b"")
    (folder / "notes.png").write_text("this is a text file, not a PNG\n")
    (folder / "README.txt").write_text("ignored: not an image suffix")
    return tmp_path / "ds"


def save_tiny_model(path: Path, calibration: str = "temperature") -> Path:
    """A seeded, untrained cxr_cnn with a complete binary card (threshold 0.5 on PNEUMONIA, a
    temperature of 1.5 or none): real weights and a real file, for tests that need a model but
    not a good one."""
    import dataclasses

    import torch

    from cxr.metrics.calibration import Calibration
    from cxr.models import create_model, save_model
    from cxr.models.card import Threshold

    torch.manual_seed(0)
    model = create_model("cxr_cnn").eval()
    model.card = dataclasses.replace(
        model.card,
        classes=("NORMAL", "PNEUMONIA"),
        threshold=Threshold(0.5, "fixed:0.5", "PNEUMONIA"),
        calibration=Calibration("temperature", (1 / 1.5, 1 / 1.5), (0.0, 0.0))
        if calibration == "temperature"
        else Calibration(),
        data_fingerprint="0123456789abcdef",
        metrics={"tuning_auroc": 0.5},
    )
    return save_model(path, model)


def patch_dicom(source: Path, **fields: str) -> bytes:
    """`source` with header fields set to raw text pydicom itself would refuse to write (such as
    NumberOfFrames "abc"): written with a 4-character placeholder, then the bytes replaced."""
    ds = pydicom.dcmread(source)
    for keyword in fields:
        setattr(ds, keyword, "1234")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    out = buffer.getvalue()
    for keyword, text in fields.items():
        tag = pydicom.datadict.tag_for_keyword(keyword)
        vr = pydicom.datadict.dictionary_VR(tag).encode()
        head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack("<H", 4)
        assert out.count(head + b"1234") == 1, keyword
        out = out.replace(head + b"1234", head + text.encode().ljust(4)[:4])
    return out


def deflate_bomb(inflated: int) -> bytes:
    """A Deflated-transfer-syntax DICOM of about 1 MB per GiB that inflates to `inflated` bytes."""
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    head = io.BytesIO()
    head.write(b"\0" * 128 + b"DICM")
    pydicom.filewriter.write_file_meta_info(head, meta, enforce_standard=True)
    ds = pydicom.Dataset()
    ds.Modality, ds.Rows, ds.Columns = "DX", 4096, 4096
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 16, 15
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    body = pydicom.filebase.DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(body, ds)
    body.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, inflated))
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = packer.compress(body.getvalue()) + packer.flush(zlib.Z_FULL_FLUSH)
    zeros = 2**22
    block = packer.compress(b"\0" * zeros) + packer.flush(zlib.Z_FULL_FLUSH)  # self-contained
    return head.getvalue() + start + block * (inflated // zeros) + packer.flush()


@pytest.fixture(scope="session")
def hostile_dicoms(tmp_path_factory, data: Path) -> Path:
    """The DICOMs an attack test of the service crashed it with (one GiB bomb included)."""
    folder = tmp_path_factory.mktemp("hostile")
    source = data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0117-0001.dcm"
    window = data / "dicom_samples" / "MR_small_16bit_window.dcm"
    cases = {
        "frames_abc.dcm": patch_dicom(source, NumberOfFrames="abc"),
        "slope_abc.dcm": patch_dicom(source, RescaleSlope="abc", RescaleIntercept="0"),
        "window_abc.dcm": patch_dicom(window, WindowCenter="abc"),
        "width_zero.dcm": patch_dicom(window, WindowWidth="0"),
        "deflate_bomb.dcm": deflate_bomb(2**30),
    }
    for name, change in {
        "unknown_syntax.dcm": lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.3.4.5"),
        "rows_huge.dcm": lambda ds: ds.update({"Rows": 65535, "Columns": 65535}),
    }.items():
        ds = pydicom.dcmread(source)
        change(ds)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        cases[name] = buffer.getvalue()
    for name, content in cases.items():
        (folder / name).write_bytes(content)
    return folder


@contextmanager
def as_nobody():
    """Root reads every file, so permission tests drop to `nobody` for the read itself."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def train_tiny(tmp: Path, data: Path, name: str, *overrides: str, epochs: int = 1) -> Path:
    """A real training run of seconds: 64 Kermany images at 48 px, into `tmp`/runs."""
    return fit(
        load_config(
            None,
            [
                f"name={name}",
                f"data.root={data / 'chest_xray'}",
                "data.limit=64",
                "data.workers=0",
                "data.batch_size=16",
                f"optim.epochs={epochs}",
                "model.size=48",
                f"runs_dir={tmp / 'runs'}",
                *overrides,
            ],
        )
    )


# The innermost elements whose content spills out of their own box (text with no break point,
# a child too wide), outside any scrolling box, so a failure names what to fix.
SPILLING = """Array.from(document.body.querySelectorAll('*'))
  .filter(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
  .filter(e => { for (let a = e; a; a = a.parentElement)
                   if (getComputedStyle(a).overflowX !== 'visible') return false;
                 return true; })
  .filter((e, _, all) => !all.some(d => d !== e && e.contains(d)))
  .slice(0, 5)
  .map(e => `<${e.tagName.toLowerCase()}> ${e.textContent.trim().slice(0, 70)}`)"""


def look(page, folder: Path, name: str) -> None:
    """A full-page screenshot (also into $CXR_SHOTS, for a person to look at) and the check
    that nothing spills sideways out of the page."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SHOTS) / path.name)
    overflow = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    culprits = page.evaluate(SPILLING) if overflow > 0 else []
    assert overflow <= 0, f"{name}: {overflow} px wider than the window; spilling: {culprits}"
