"""One image, one spooled file, whatever the transfer syntax it arrives in: native (implicit or
explicit VR) and lossless compressed (RLE, JPEG 2000 lossless) copies of the same pixels land
on the same file, so the worklist keeps one row; other pixels under the same UID do not."""

import copy
import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from cxr.dicomnode.spool import Spool

SOURCE = "dicom_cxr/kermany_wrapped/normal_IM-0117-0001.dcm"


def _native(data):
    ds = pydicom.dcmread(data / SOURCE)
    ds.decompress()
    return ds


def _stored(spool: Spool, ds: pydicom.Dataset):
    ds = copy.deepcopy(ds)
    return spool.store(ds, ds.file_meta)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless])
def test_the_same_pixels_in_another_syntax_land_on_the_same_file(data, tmp_path, syntax):
    spool = Spool(tmp_path / "spool", keep_routing=False)
    native = _native(data)
    first = _stored(spool, native)
    other = copy.deepcopy(native)
    if syntax == RLELossless:
        other.compress(syntax, encoding_plugin="pydicom", generate_instance_uid=False)
    elif syntax == JPEG2000Lossless:  # pydicom's own encoder needs pylibjpeg: Pillow's OpenJPEG
        stream = io.BytesIO()
        Image.fromarray(native.pixel_array).save(stream, "JPEG2000", irreversible=False)
        other.PixelData = encapsulate([stream.getvalue()])
        other["PixelData"].VR = "OB"
        other.file_meta.TransferSyntaxUID = syntax
    else:
        other.file_meta.TransferSyntaxUID = syntax
    assert other.file_meta.TransferSyntaxUID == syntax
    assert _stored(spool, other) == first
    assert spool.files() == [first]


def test_other_pixels_under_the_same_uid_are_another_file(data, tmp_path):
    spool = Spool(tmp_path / "spool", keep_routing=False)
    native = _native(data)
    changed = copy.deepcopy(native)
    pixels = changed.pixel_array.copy()
    pixels[:8, :8] = 255 - pixels[:8, :8]
    changed.PixelData = pixels.tobytes()
    changed.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    assert _stored(spool, changed) != _stored(spool, native)
    assert np.array_equal(pydicom.dcmread(spool.files()[0]).pixel_array.shape, pixels.shape)
