import shutil

import pytest

from cxr.data.discovery import discover
from cxr.data.labels import LabelScheme, group_from_name
from cxr.errors import DatasetError


def test_kermany_train_counts_and_groups(data):
    ds = discover(data / "chest_xray")
    assert ds.layout == "splits" and ds.classes == ["NORMAL", "PNEUMONIA"]
    assert ds.counts() == {("train", "NORMAL"): 1341, ("train", "PNEUMONIA"): 3875}
    groups = {label: {r.group for r in ds.records if r.label == label} for label in ds.classes}
    assert len(groups["NORMAL"]) == 1211 and len(groups["PNEUMONIA"]) == 1635


def test_kermany3_scheme(data):
    ds = discover(data / "chest_xray", LabelScheme("kermany3"))
    counts = {label: n for (_, label), n in ds.counts().items()}
    assert counts == {"normal": 1341, "bacterial": 2530, "viral": 1345}


def test_kermany3_keeps_a_label_already_decided(tmp_path, data):
    """A reviews export names its files by UID: its `bacterial`/`viral` labels are final."""
    source = sorted((data / "dicom_cxr/kermany_wrapped").glob("*.dcm"))[0]
    shutil.copy(source, tmp_path / "1.2.3_ab.dcm")
    (tmp_path / "labels.csv").write_text("file,label\n1.2.3_ab.dcm,viral\n")
    assert discover(tmp_path, LabelScheme("kermany3")).classes == ["viral"]
    (tmp_path / "labels.csv").write_text("file,label\n1.2.3_ab.dcm,PNEUMONIA\n")
    with pytest.raises(DatasetError, match=r"1\.2\.3_ab\.dcm: kermany3 needs"):
        discover(tmp_path, LabelScheme("kermany3"))


def test_binary_view_of_a_multiclass_layout(data):
    ds = discover(data / "COVID-19_Radiography_Dataset", LabelScheme(negative="normal"))
    assert ds.classes == ["Normal", "abnormal"]
    assert sorted(ds.counts().values()) == [240, 480]


def test_covid_layout_reads_images_and_ignores_masks(tmp_path, data):
    src = data / "COVID-19_Radiography_Dataset"
    for label in ("COVID", "Normal"):
        images = sorted((src / label / "images").glob("*.png"))[:3]
        for sub in ("images", "masks"):
            (tmp_path / label / sub).mkdir(parents=True)
            for path in images:
                shutil.copy(path, tmp_path / label / sub / path.name)
    ds = discover(tmp_path)
    assert ds.counts() == {(None, "COVID"): 3, (None, "Normal"): 3}
    assert all("masks" not in r.path.parts for r in ds.records)


def test_split_folders_any_case_and_non_images_ignored(tmp_path, data):
    src = sorted((data / "chest_xray/train/NORMAL").glob("*.jpeg"))[:2]
    for split in ("TRAIN", "Test", "val"):
        folder = tmp_path / split / "NORMAL"
        folder.mkdir(parents=True)
        for path in src:
            shutil.copy(path, folder / path.name)
        (folder / "notes.txt").write_text("x")
        (folder / ".DS_Store").write_bytes(b"\0")
    ds = discover(tmp_path)
    assert ds.splits == ["test", "train", "val"]
    assert len(ds.records) == 6


def test_labels_csv_folder_of_dicoms(data):
    ds = discover(data / "dicom_cxr/kermany_wrapped")
    assert ds.layout == "labels.csv"
    assert ds.counts() == {(None, "NORMAL"): 18, (None, "PNEUMONIA"): 18}
    assert all(r.group.startswith("dcm-") for r in ds.records)  # from PatientID, pseudonymised


def test_groups_from_kermany_names():
    from pathlib import Path

    assert group_from_name(Path("person1000_bacteria_2931.jpeg")) == "person1000"
    assert group_from_name(Path("IM-0505-0001-0002.jpeg")) == "IM-0505"
    assert group_from_name(Path("NORMAL2-IM-0458-0001.jpeg")) == "NORMAL2-IM-0458"
    assert group_from_name(Path("scan.png")) is None


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="no images found"):
        discover(tmp_path)
    with pytest.raises(DatasetError, match="no such folder"):
        discover(tmp_path / "missing")
    with pytest.raises(DatasetError, match="unknown label scheme"):
        LabelScheme("bogus")


def test_a_labels_csv_with_a_header_and_no_rows_says_so(tmp_path):
    """An empty export was refused as lacking the header it has."""
    (tmp_path / "labels.csv").write_text("file,label\n")
    with pytest.raises(DatasetError, match="lists no images"):
        discover(tmp_path)
    (tmp_path / "labels.csv").write_text("name,class\na.png,NORMAL\n")
    with pytest.raises(DatasetError, match="needs a header with columns 'file' and 'label'"):
        discover(tmp_path)
