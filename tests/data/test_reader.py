import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.data.preprocess import resize_square
from cxr.data.reader import MAX_PIXELS, read_image
from cxr.errors import ImageProblem, ImageReadError


def _png(tmp_path: Path, image: Image.Image, name: str = "x.png") -> Path:
    path = tmp_path / name
    image.save(path)
    return path


def test_jpeg_reads_as_grey_uint8(data):
    image = read_image(data / "chest_xray_originals/train/NORMAL/IM-0117-0001.jpeg")
    assert image.pixels.dtype == np.uint8 and image.pixels.ndim == 2
    assert image.info.source_format == "jpeg"
    assert (image.info.width, image.info.height) == image.pixels.shape[::-1]


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_png_8bit_modes_agree_with_grey(tmp_path, mode):
    grey = np.tile(np.arange(0, 256, 2, dtype=np.uint8), (80, 1))
    image = Image.fromarray(grey).convert(mode)
    out = read_image(_png(tmp_path, image)).pixels
    assert np.abs(out.astype(int) - grey).max() <= 1


def test_png_16bit_is_stretched_to_full_range(tmp_path):
    values = np.linspace(1000, 5000, 100 * 100).reshape(100, 100).astype(np.uint16)
    path = _png(tmp_path, Image.fromarray(values))
    image = read_image(path)
    assert image.pixels.min() == 0 and image.pixels.max() == 255
    assert image.info.bits == 16


def test_colour_photo_is_flagged(tmp_path):
    rgb = np.zeros((100, 100, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = np.arange(100, dtype=np.uint8)
    assert read_image(_png(tmp_path, Image.fromarray(rgb))).info.is_colour
    xray = read_image(_png(tmp_path, Image.fromarray(rgb[..., 2]).convert("RGB"), "g.png"))
    assert not xray.info.is_colour


def test_exif_orientation_is_honoured(tmp_path):
    pixels = np.zeros((80, 120), np.uint8)
    pixels[:, :10] = 255  # a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rot.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    out = read_image(path).pixels
    assert out.shape == (120, 80)
    assert out[:10].mean() > 200  # the band is now at the top


def test_bytes_and_path_agree(data):
    path = data / "chest_xray/train/PNEUMONIA/person1000_bacteria_2931.jpeg"
    a = read_image(path).pixels
    b = read_image(path.read_bytes(), name="upload.jpeg").pixels
    assert np.array_equal(a, b)


def _kermany_wrapped(data):
    root = data / "dicom_cxr/kermany_wrapped"
    with (root / "labels.csv").open() as fh:
        for row in csv.DictReader(fh):
            yield row, root / row["file"], data / "chest_xray_originals/train" / row["source_image"]


def test_wrapped_dicoms_decode_to_their_source_pixels(data):
    seen = set()
    for row, dcm, source in _kermany_wrapped(data):
        got = read_image(dcm)
        want = read_image(source).pixels
        assert got.info.source_format == "dicom"
        if row["encoding"] in {"jpeg-baseline", "uint8"}:
            assert np.array_equal(got.pixels, want), dcm
        else:
            assert max(got.pixels.shape) <= 512
            resized = np.asarray(Image.fromarray(want).resize(got.pixels.shape[::-1]))
            assert np.abs(got.pixels.astype(int) - resized).mean() < 1.0, dcm
        seen.add(row["encoding"])
    assert seen == {"jpeg-baseline", "uint8", "uint16-window", "monochrome1"}


def test_dicom_metadata_has_no_patient_fields(data):
    _, dcm, _ = next(_kermany_wrapped(data))
    info = read_image(dcm).info
    assert (info.modality, info.body_part, info.view_position) == ("CR", "CHEST", "AP")
    text = repr(info)
    assert "SYNTHETIC" not in text and "kermany-" not in text
    assert info.group_key.startswith("dcm-")


def test_monochrome1_twin_equals_monochrome2_original(data):
    samples = data / "dicom_samples"
    twin = read_image(samples / "chest_CR_MONOCHROME1_inverted_twin_CREATED.dcm").pixels
    original = read_image(samples / "xrv_chest_CR_MONOCHROME2_jpeg_baseline.dcm").pixels
    assert np.array_equal(twin, original)


def test_header_only_monochrome1_is_displayed_inverted(data):
    samples = data / "dicom_samples"
    fake = read_image(samples / "xrv_chest_Fake_MONOHR1_header_only.dcm").pixels
    original = read_image(samples / "xrv_chest_CR_MONOCHROME2_jpeg_baseline.dcm").pixels
    assert np.array_equal(fake, 255 - original)


@pytest.mark.parametrize(
    "name",
    [
        "RG1_J2KI_CR_chest_MONOCHROME1.dcm",  # JPEG 2000, 15-bit, window
        "MR_small_16bit_window.dcm",
        "CT_small_16bit_signed_rescale.dcm",
        "vlut_04_VOI_LUT_sequence.dcm",
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
    ],
)
def test_high_bit_depth_dicoms_use_the_full_range(data, name):
    pixels = read_image(data / "dicom_samples" / name).pixels
    assert pixels.dtype == np.uint8
    assert pixels.max() - pixels.min() > 150
    assert pixels.std() > 20


def test_real_monochrome1_chest_has_dark_lungs(data):
    pixels = read_image(data / "dicom_samples/RG1_J2KI_CR_chest_MONOCHROME1.dcm").pixels
    small = resize_square(pixels, 90)
    lungs = np.r_[small[30:60, 15:35].ravel(), small[30:60, 55:75].ravel()]
    assert lungs.mean() < small[30:60, 40:50].mean()  # lungs darker than the mediastinum


def test_dicom_by_magic_bytes_with_any_extension(tmp_path, data):
    src = data / "dicom_samples/chest_CR_MONOCHROME1_inverted_twin_CREATED.dcm"
    renamed = tmp_path / "IMG0001"
    shutil.copy(src, renamed)
    assert np.array_equal(read_image(renamed).pixels, read_image(src).pixels)


def _problem(source, **kw) -> ImageReadError:
    with pytest.raises(ImageReadError) as caught:
        read_image(source, **kw)
    assert str(caught.value).startswith(str(kw.get("name", source)))
    return caught.value


def test_multiframe_is_refused_clearly(data):
    err = _problem(data / "dicom_samples/emri_small_multiframe.dcm")
    assert err.problem is ImageProblem.UNSUPPORTED and "10 frames" in err.detail


def test_undecodable_transfer_syntax_names_the_package(data):
    err = _problem(data / "dicom_samples/JPEG-lossy_12bit.dcm")
    assert err.problem is ImageProblem.UNSUPPORTED
    assert "JPEG Extended" in err.detail and "pylibjpeg" in err.detail


def test_zero_bytes(tmp_path):
    (tmp_path / "a.jpeg").write_bytes(b"")
    assert _problem(tmp_path / "a.jpeg").problem is ImageProblem.EMPTY


def test_text_named_png(tmp_path):
    (tmp_path / "a.png").write_text("hello")
    assert _problem(tmp_path / "a.png").problem is ImageProblem.NOT_AN_IMAGE


def test_truncated_jpeg(tmp_path, data):
    whole = (data / "chest_xray_originals/train/NORMAL/IM-0117-0001.jpeg").read_bytes()
    (tmp_path / "t.jpeg").write_bytes(whole[: len(whole) // 3])
    assert _problem(tmp_path / "t.jpeg").problem is ImageProblem.CORRUPT


def test_truncated_dicom(tmp_path, data):
    whole = (data / "dicom_samples/chest_CR_MONOCHROME1_inverted_twin_CREATED.dcm").read_bytes()
    (tmp_path / "t.dcm").write_bytes(whole[: len(whole) // 2])
    assert _problem(tmp_path / "t.dcm").problem is ImageProblem.CORRUPT


def test_text_named_dcm(tmp_path):
    (tmp_path / "t.dcm").write_text("not a dicom at all" * 20)
    assert _problem(tmp_path / "t.dcm").problem in {ImageProblem.NOT_AN_IMAGE, ImageProblem.CORRUPT}


def test_too_small(tmp_path):
    path = _png(tmp_path, Image.new("L", (63, 300)))
    assert _problem(path).problem is ImageProblem.TOO_SMALL


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS**0.5) + 100
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")  # tiny file, huge canvas
    err = _problem(buffer.getvalue(), name="bomb.png")
    assert err.problem is ImageProblem.TOO_LARGE


def test_unsupported_format(tmp_path):
    path = tmp_path / "a.gif"
    Image.new("L", (100, 100)).save(path)
    assert _problem(path).problem is ImageProblem.UNSUPPORTED
