"""What one image can cost the reader at its limits: files made at the worst size each format is
allowed, each read in a fresh process (peak memory is per process), against a real radiograph
read the same way as the yardstick. Behind `cxr benchmark decode`; the figures go in
docs/benchmarks.md."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from cxr.data.image import MAX_DECODED_BYTES
from cxr.data.jpeg import MAX_JPEG_SCANS

SIDE = 8000  # reader.MAX_PIXELS is 8000 x 8000
SIDE_32BIT = int((MAX_DECODED_BYTES / 4) ** 0.5)  # 32-bit pixels at the decoded-bytes limit

# Peak memory from /proc: getrusage's ru_maxrss survives fork and exec, so a child started by a
# parent holding torch would report the parent's peak. Writing 5 to clear_refs resets VmHWM.
_CHILD = """
import json, sys, time
from pathlib import Path
from cxr.data.reader import read_file, read_image
from cxr.errors import ImageReadError
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
data = read_file(Path(sys.argv[1]))
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
before = status("VmRSS")
cpu = time.process_time()
try:
    outcome = "read %dx%d" % read_image(data, sys.argv[1]).pixels.shape[::-1]
except ImageReadError as exc:
    outcome = "refused: %s" % exc.detail
print(json.dumps({"cpu_s": time.process_time() - cpu, "outcome": outcome[:120],
    "extra_mib": status("VmHWM") - before}))
"""


@dataclass(frozen=True)
class DecodeCost:
    case: str
    file_mib: float
    extra_mib: float  # peak resident memory added by reading it
    cpu_s: float
    times_yardstick: float  # CPU against the real radiograph read in the same run
    outcome: str


def make_worst_cases(folder: Path) -> dict[str, Path]:
    """One file per format at the reader's limits, and the hostile ones it must refuse cheaply."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.tile(np.linspace(0, 255, SIDE).astype(np.uint8), (SIDE, 1))
    made = {
        "JPEG baseline 8000 px": _raster(folder / "baseline.jpg", ramp, "JPEG", quality=95),
        "PNG 16-bit 8000 px": _raster(
            folder / "16bit.png", ramp.astype(np.uint16) * 257, "PNG", compress_level=1
        ),
        "PNG RGB 6500 px": _raster(
            folder / "rgb.png", np.dstack([ramp[:6500, :6500]] * 3), "PNG", compress_level=1
        ),
    }
    progressive = io.BytesIO()
    Image.fromarray(ramp).save(progressive, "JPEG", progressive=True, quality=95)
    stream = progressive.getvalue()
    last = stream.rfind(b"\xff\xda")
    scans = stream.count(b"\xff\xda")
    at_limit = stream[:last] + stream[last:-2] * (MAX_JPEG_SCANS - scans + 1) + stream[-2:]
    made[f"JPEG progressive, {MAX_JPEG_SCANS} scans (last repeated)"] = _write(
        folder / "scans16.jpg", at_limit
    )
    flat = io.BytesIO()
    Image.new("L", (SIDE, SIDE), 90).save(flat, "JPEG", progressive=True)
    data = flat.getvalue()
    last = data.rfind(b"\xff\xda")
    made["JPEG progressive, 500 scans"] = _write(
        folder / "scans500.jpg", data[:last] + data[last:-2] * 500 + data[-2:]
    )
    made["PNG RGBA 8000 px"] = _raster(
        folder / "rgba.png",
        np.dstack([ramp] * 3 + [np.full_like(ramp, 255)]),
        "PNG",
        compress_level=1,
    )
    ramp16 = np.tile(np.linspace(0, 4095, SIDE).astype(np.uint16), (SIDE, 1))
    made["DICOM 16-bit 8000 px"] = _dicom(folder / "16bit.dcm", ramp16.tobytes(), SIDE, 16)
    ramp32 = np.tile(np.linspace(0, 2**31, SIDE_32BIT).astype(np.uint32), (SIDE_32BIT, 1))
    made[f"DICOM 32-bit {SIDE_32BIT} px"] = _dicom(
        folder / "32bit.dcm", ramp32.tobytes(), SIDE_32BIT, 32
    )
    made[f"DICOM RLE 32-bit {SIDE_32BIT} px (2 MB)"] = _dicom(
        folder / "rle.dcm", _flat_rle(SIDE_32BIT**2), SIDE_32BIT, 32, RLELossless
    )
    j2k = io.BytesIO()
    Image.new("L", (12000, 12000)).save(j2k, "JPEG2000")
    made["DICOM JPEG 2000, 12000 px stream in a 512 px header"] = _dicom(
        folder / "j2k.dcm", encapsulate([j2k.getvalue()]), 512, 8, JPEG2000Lossless
    )
    return made


def measure(cases: dict[str, Path], yardstick: Path) -> list[DecodeCost]:
    base = read_in_child(yardstick)
    rows = [_cost(f"yardstick: {yardstick.name}", yardstick, base, base)]
    return rows + [_cost(name, path, read_in_child(path), base) for name, path in cases.items()]


def _cost(case: str, path: Path, got: dict, base: dict) -> DecodeCost:
    return DecodeCost(
        case,
        round(path.stat().st_size / 2**20, 1),
        round(got["extra_mib"]),
        round(got["cpu_s"], 3),
        round(got["cpu_s"] / max(base["cpu_s"], 1e-3), 1),
        got["outcome"],
    )


def read_in_child(path: Path) -> dict:
    """{cpu_s, extra_mib, outcome} of reading `path` in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=600
    )
    if result.returncode:
        return {"cpu_s": float("nan"), "extra_mib": float("nan"), "outcome": result.stderr[-120:]}
    return json.loads(result.stdout)


def to_json(rows: list[DecodeCost]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _raster(path: Path, pixels: np.ndarray, fmt: str, **options) -> Path:
    Image.fromarray(pixels).save(path, fmt, **options)
    return path


def _dicom(path: Path, pixel_data: bytes, side: int, bits: int, syntax=ExplicitVRLittleEndian):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = (
        SecondaryCaptureImageStorage,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality, ds.Rows, ds.Columns = "DX", side, side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    ds.PixelData = pixel_data
    if syntax != ExplicitVRLittleEndian:
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _flat_rle(pixels: int) -> bytes:
    """One RLE frame of 32-bit pixels, all equal: 4 byte planes of 128-byte replicate runs."""

    def plane(value: int) -> bytes:
        runs, rest = divmod(pixels, 128)
        tail = bytes([257 - rest, value]) if rest > 1 else bytes([0, value])[: 2 * rest]
        body = bytes([0x81, value]) * runs + tail
        return body + b"\0" * (len(body) % 2)

    planes = [plane(v) for v in (0x12, 0x34, 0x56, 0x78)]
    offsets, at = [], 64
    for p in planes:
        offsets.append(at)
        at += len(p)
    header = (4).to_bytes(4, "little") + b"".join(o.to_bytes(4, "little") for o in offsets)
    return encapsulate([header + b"\0" * (64 - len(header)) + b"".join(planes)])
