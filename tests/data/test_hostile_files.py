"""Files crafted to break the reader: each must come out as an ImageReadError with a reason, in
bounded memory, never as another exception. Ends with a property-based fuzz over real files."""

import io
import resource
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from cxr.data.reader import read_image
from cxr.errors import ImageProblem, ImageReadError
from tests.conftest import as_nobody, patch_dicom

EXPECTED = {
    "frames_abc.dcm": (ImageProblem.CORRUPT, "NumberOfFrames 'abc' is not a number"),
    "slope_abc.dcm": (ImageProblem.CORRUPT, "RescaleSlope 'abc' is not a number"),
    "window_abc.dcm": (ImageProblem.CORRUPT, "WindowCenter 'abc' is not a number"),
    "width_zero.dcm": (ImageProblem.CORRUPT, "WindowWidth 0 < 1"),
    "unknown_syntax.dcm": (ImageProblem.UNSUPPORTED, "unknown transfer syntax 1.2.3.4.5"),
    "rows_huge.dcm": (ImageProblem.TOO_LARGE, "65535x65535 px"),
    "deflate_bomb.dcm": (ImageProblem.TOO_LARGE, "inflates past 128 MiB"),
}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_crafted_dicoms_are_typed_refusals(hostile_dicoms, name):
    problem, words = EXPECTED[name]
    with pytest.raises(ImageReadError) as caught:
        read_image(hostile_dicoms / name)
    assert caught.value.problem is problem and words in caught.value.detail, str(caught.value)
    assert name in str(caught.value)


def test_the_deflate_bomb_is_refused_without_inflating_it(hostile_dicoms):
    bomb = hostile_dicoms / "deflate_bomb.dcm"
    assert bomb.stat().st_size < 2 * 2**20  # 1 GiB inflated
    before = _peak_mib()
    with pytest.raises(ImageReadError):
        read_image(bomb)
    assert _peak_mib() - before < 64  # chunks of 1 MiB, output discarded


def test_permission_denied_and_link_loops_are_reported(tmp_path, data):
    locked = tmp_path / "locked.jpeg"
    locked.write_bytes(next((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg")).read_bytes())
    locked.chmod(0)
    with as_nobody(), pytest.raises(ImageReadError) as caught:
        read_image(locked)
    assert caught.value.problem is ImageProblem.UNREADABLE and "ermission" in caught.value.detail
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    with pytest.raises(ImageReadError) as caught:
        read_image(tmp_path / "a.png")
    assert (
        caught.value.problem is ImageProblem.UNREADABLE and "symbolic links" in caught.value.detail
    )


def test_a_16bit_8000px_png_costs_its_size_not_float_copies(tmp_path):
    path = tmp_path / "big16.png"
    ramp = (np.arange(8000, dtype=np.uint16) * 8)[None].repeat(8000, axis=0)
    Image.fromarray(ramp).save(path, compress_level=1)
    before = _peak_mib()
    image = read_image(path)
    assert image.pixels.shape == (8000, 8000) and image.pixels.max() == 255
    # 122 MiB of 16-bit pixels + 61 MiB of output + Pillow's own buffer; float64 cost 2.2 GiB
    assert _peak_mib() - before < 400


# --- property-based fuzz over real files ------------------------------------------------------

SOURCES = [
    "dicom_cxr/kermany_wrapped/normal_IM-0117-0001.dcm",
    "dicom_samples/MR_small_16bit_window.dcm",
    "dicom_samples/CT_small_16bit_signed_rescale.dcm",
    "dicom_samples/vlut_04_VOI_LUT_sequence.dcm",
    "dicom_samples/xrv_chest_CR_MONOCHROME2_jpeg_baseline.dcm",
    "COVID-19_Radiography_Dataset/COVID/images/COVID-1.png",
    "chest_xray/train/NORMAL/IM-0115-0001.jpeg",
]
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _outcome(content: bytes, name: str) -> None:
    try:
        image = read_image(content, name)
    except ImageReadError as exc:
        assert exc.detail and name in str(exc)
        return
    assert image.pixels.dtype.name == "uint8" and image.pixels.ndim == 2


@FUZZ
@given(
    source=st.sampled_from(SOURCES),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=16),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_fuzz_bytes_of_real_files(data, source, edits, cut):
    content = bytearray((data / source).read_bytes())
    for where, value in edits:
        content[min(int(where * len(content)), len(content) - 1)] = value
    if cut is not None:
        content = content[: int(cut * len(content))]
    _outcome(bytes(content), Path(source).name)


HEADER_VALUES = {
    "Rows": st.sampled_from([0, 1, 7, 64, 4096, 65535]),
    "Columns": st.sampled_from([0, 1, 63, 64, 5000, 65535]),
    "BitsAllocated": st.sampled_from([0, 1, 7, 8, 12, 16, 32, 64]),
    "BitsStored": st.sampled_from([0, 1, 8, 12, 16, 17, 40]),
    "HighBit": st.sampled_from([0, 7, 11, 15, 31]),
    "SamplesPerPixel": st.sampled_from([0, 1, 2, 3, 4]),
    "PixelRepresentation": st.sampled_from([0, 1, 2]),
    "PhotometricInterpretation": st.sampled_from(
        ["MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "PALETTE COLOR", "", "XYZ"]
    ),
    "NumberOfFrames": st.sampled_from(["0", "1", "2", "1000000", "abc", "-1"]),
    "RescaleSlope": st.sampled_from(["0", "-1", "1e308", "abc", "nan"]),
    "RescaleIntercept": st.sampled_from(["0", "-1024", "1e308", "abc"]),
    "WindowCenter": st.sampled_from(["0", "40", "-5", "abc", "1e308"]),
    "WindowWidth": st.sampled_from(["0", "-5", "1", "400", "abc", "1e-9"]),
}
TEXT_FIELDS = {"NumberOfFrames", "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"}


@FUZZ
@given(
    source=st.sampled_from([s for s in SOURCES if s.endswith(".dcm")]),
    fields=st.dictionaries(
        st.sampled_from(sorted(HEADER_VALUES)), st.just(None), min_size=1, max_size=4
    ).flatmap(
        lambda keys: st.fixed_dictionaries({k: HEADER_VALUES[k] for k in keys})
    ),
    syntax=st.one_of(
        st.none(),
        st.sampled_from(
            ["1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.50",
             "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99", "1.2.3.4", "junk"]
        ),
    ),
)  # fmt: skip
def test_fuzz_dicom_header_fields(data, source, fields, syntax):
    import pydicom

    from tests.conftest import patch_dicom

    texts = {k: str(v) for k, v in fields.items() if k in TEXT_FIELDS}
    content = patch_dicom(data / source, **{k: v[:4] for k, v in texts.items()})
    ds = pydicom.dcmread(io.BytesIO(content))
    for keyword, value in fields.items():
        if keyword not in TEXT_FIELDS:
            setattr(ds, keyword, value)
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except (ValueError, TypeError, AttributeError, NotImplementedError):
        return  # pydicom itself will not write this combination
    _outcome(buffer.getvalue(), Path(source).name)


def _damaged_streams(raw: bytes, end: bytes) -> dict[str, bytes]:
    middle = len(raw) // 2
    flipped = raw[:middle] + bytes(b ^ 0x55 for b in raw[middle : middle + 200])
    return {
        "cut, end marker put back": raw[:middle] + end,
        "200 bytes altered": flipped + raw[middle + 200 :],
        "cut": raw[:middle],
    }


@pytest.mark.parametrize(
    "source", ["chest_xray_originals/train/PNEUMONIA", "COVID-19_Radiography_Dataset/COVID/images"]
)
def test_damaged_jpeg_and_png_streams_are_refused_not_scored(data, source):
    path = sorted((data / source).iterdir())[0]
    raw = path.read_bytes()
    end = b"\xff\xd9" if path.suffix == ".jpeg" else raw[raw.index(b"IEND") - 4 :]
    for case, content in _damaged_streams(raw, end).items():
        with pytest.raises(ImageReadError) as caught:
            read_image(content, path.name)
        assert caught.value.problem is ImageProblem.CORRUPT, (case, str(caught.value))
    assert read_image(raw, path.name).pixels.ndim == 2  # the whole file still reads


def test_a_damaged_jpeg_inside_a_dicom_is_refused(data):
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    path = data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0117-0001.dcm"
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    ds.PixelData = encapsulate([frame[: len(frame) // 2] + b"\xff\xd9"])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(ImageReadError, match="JPEG data damaged"):
        read_image(buffer.getvalue(), path.name)


def _palette_dicom(data, descriptor: bool = True) -> bytes:
    """A real radiograph stored as PALETTE COLOR: its pixels are indices into a table that
    reverses them, so reading the indices as intensities would give the negative."""
    import pydicom

    ds = pydicom.dcmread(data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0117-0001.dcm")
    ds.decompress()
    ds.PhotometricInterpretation = "PALETTE COLOR"
    table = (np.arange(256)[::-1] * 257).astype(np.uint16).tobytes()
    for colour in ("Red", "Green", "Blue"):
        if descriptor:
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
            ds[f"{colour}PaletteColorLookupTableDescriptor"].VR = "US"
        setattr(ds, f"{colour}PaletteColorLookupTableData", table)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def test_a_palette_colour_dicom_is_looked_up_and_flagged_as_colour(data):
    indices = read_image(data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0117-0001.dcm")
    image = read_image(_palette_dicom(data), "palette.dcm")
    assert image.info.is_colour
    assert np.abs(image.pixels.astype(int) - (255 - indices.pixels.astype(int))).max() <= 1
    with pytest.raises(ImageReadError, match="PALETTE COLOR"):
        read_image(_palette_dicom(data, descriptor=False), "palette.dcm")


@pytest.mark.parametrize("vr", [b"IS", b"UI", b"DS", b"DA"])
def test_header_values_never_reach_warnings_or_logs(data, caplog, vr):
    """pydicom echoes invalid values in its warnings and log ("Invalid value for VR UI:
    '<value>'"): a PatientID stored with a wrong VR must not reach our logs that way."""
    import logging
    import struct
    import warnings

    raw = (data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0117-0001.dcm").read_bytes()
    head = struct.pack("<HH", 0x0010, 0x0020) + b"LO"  # PatientID, explicit VR
    assert raw.count(head) == 1
    crafted = raw.replace(head, head[:4] + vr)
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_image(crafted, "crafted.dcm")
    said = " ".join([r.getMessage() for r in caplog.records] + [str(w.message) for w in caught])
    assert image.info.group_key is not None  # the field was read: pseudonymised, not echoed
    assert "kermany-IM-0117" not in said, said


@pytest.mark.parametrize(
    ("fields", "keyword"),
    [
        ({"RescaleSlope": "nan", "RescaleIntercept": "0"}, "RescaleSlope"),
        ({"RescaleSlope": "1", "RescaleIntercept": "-inf"}, "RescaleIntercept"),
        ({"WindowCenter": "1e308"}, "WindowCenter"),
        ({"WindowWidth": "inf"}, "WindowWidth"),
    ],
)
def test_numbers_that_are_no_finite_grey_levels_are_refused(tmp_path, data, fields, keyword):
    """NaN, infinity and 1e308 parse as floats: without their own refusal they overflow the
    display mapping into a 'nearly constant image' and warnings on the listener's stderr."""
    window = data / "dicom_samples" / "MR_small_16bit_window.dcm"
    path = tmp_path / "field.dcm"
    path.write_bytes(patch_dicom(window, **fields))
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    assert caught.value.problem is ImageProblem.CORRUPT, str(caught.value)
    assert f"{keyword} " in caught.value.detail and "is not a number" in caught.value.detail


@pytest.mark.parametrize(
    ("age", "years"),
    [("044Y", 44.0), ("006M", 0.5), ("5", 5.0), ("-5Y", None), ("NANY", None), ("nan", None),
     ("-INF", None), ("1_0Y", None), ("１２Y", None), ("abc", None)],
)  # fmt: skip
def test_patient_age_is_read_only_from_digits(tmp_path, data, age, years):
    """DICOM's age string is three digits and a unit; Python's float() would also take a sign,
    NaN, infinity, underscores and non-ASCII digits, and the node would store them."""
    source = data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0117-0001.dcm"
    path = tmp_path / "age.dcm"
    path.write_bytes(patch_dicom(source, PatientAge=age))
    assert read_image(path).info.age_years == years


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_a_file_of_several_frames_is_refused_as_multi_frame_dicom_is(tmp_path, data, fmt):
    """An animated PNG or a multi-page TIFF was scored from its first frame without a word."""
    film = Image.open(next((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg")))
    film = film.convert("L").resize((256, 256))
    path = tmp_path / f"pages.{fmt.lower()}"
    film.save(path, format=fmt, save_all=True, append_images=[film.rotate(90)])
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    assert caught.value.problem is ImageProblem.UNSUPPORTED and "2 frames" in caught.value.detail
    film.save(path, format=fmt)  # the same film alone is read
    assert read_image(path).pixels.shape == (256, 256)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_an_empty_pixel_data_element_is_named_as_such(tmp_path, data, syntax):
    """Zero bytes of pixels were refused as "object of type 'NoneType' has no len()"."""
    ds = pydicom.dcmread(data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0117-0001.dcm")
    ds.decompress()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = b""
    path = tmp_path / "empty_pixels.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    assert caught.value.problem is ImageProblem.CORRUPT, str(caught.value)
    assert caught.value.detail == "DICOM PixelData element is empty"
    assert path.name in str(caught.value)
