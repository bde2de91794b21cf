"""One image, one spooled file, whatever the transfer syntax it arrives in: native (implicit or
explicit VR) and lossless compressed (RLE, JPEG 2000 lossless) copies of the same pixels land
on the same file, so the worklist keeps one row; other pixels under the same UID do not. The
spooled file names no one, whatever element a sender puts a name in."""

import copy
import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
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


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_names_and_birth_dates_in_private_elements_or_comments_never_reach_the_spool(
    data, tmp_path, syntax
):
    """A vendor's private elements or a free-text comment may hold a name or a birth date; sent
    implicit VR, a private name has no PN to be found by (it arrives as UN). An attack found all
    three in spooled files."""
    native = _native(data)
    native.PatientName, native.PatientBirthDate = "Secret^Patient", "19230102"
    item = Dataset()
    item.add_new(0x00110010, "LO", "VENDOR")
    item.add_new(0x00111001, "PN", "Secret^Nested")
    native.ReferencedPatientSequence = [item]
    native.add_new(0x00110010, "LO", "VENDOR")
    native.add_new(0x00111001, "PN", "Secret^Private")
    native.add_new(0x00111002, "DA", "19230102")
    native.ImageComments = "Secret Patient, born 1923, portable film"  # free text: anything
    native.StudyComments = "Secret"
    native.file_meta.TransferSyntaxUID = syntax
    sent = io.BytesIO()
    native.save_as(sent, enforce_file_format=True)
    received = pydicom.dcmread(io.BytesIO(sent.getvalue()))  # as the node decodes it
    stored = Spool(tmp_path / "spool", keep_routing=False).store(received, received.file_meta)
    assert b"Secret" not in stored.read_bytes() and b"19230102" not in stored.read_bytes()
    assert pydicom.dcmread(stored).pixel_array.shape == native.pixel_array.shape


@pytest.mark.parametrize(("age", "spooled"), [("095Y", "090Y"), ("090Y", "090Y"), ("044Y", "044Y")])
def test_ages_from_90_are_spooled_as_90_and_kept_for_the_results_only(data, tmp_path, age, spooled):
    """The database stores 90 for every older age (they identify); the spooled copy did not."""
    native = _native(data)
    native.PatientAge = age
    stored = _stored(Spool(tmp_path / "spool", keep_routing=True), native)
    assert pydicom.dcmread(stored).PatientAge == spooled
    routing = Spool(tmp_path / "spool").routing(stored)
    assert (age in routing.read_text()) == (age != spooled)  # the PACS's own value, sent back
