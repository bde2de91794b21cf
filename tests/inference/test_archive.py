"""`cxr predict` at archive scale, through the real command: two Lightning processes (DDP on CPU,
gloo) write the one-process worklist; a rank killed with SIGKILL loses only its batch in flight
and `--resume` finishes the rest; listing files and an Orthanc study over DICOMweb as inputs."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from tests.conftest import save_tiny_model
from tests.radiology.conftest import ORTHANC, Orthanc, free_port

from cxr.inference.archive_listing import Files, listed_paths


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "model.pt")


def _cxr(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def _part_lines(out: Path, rank: int) -> int:
    return sum(p.read_text().count("\n") for p in (out / "parts").glob(f"*-rank{rank:05d}-*"))


def test_two_processes_write_the_one_process_worklist(model_file, data, damaged_folder, tmp_path):
    inputs = [data / "dicom_cxr", damaged_folder]  # ranked, not scored and skipped groups
    one = _cxr("predict", model_file, *inputs, "--out", tmp_path / "one.csv", "--workers", 0,
               "--batch", 8)  # fmt: skip
    assert one.returncode == 1, one.stdout + one.stderr  # three damaged files
    out = tmp_path / "archive"
    two = _cxr("predict", model_file, *inputs, "--out", out, "--devices", 2, "--workers", 0,
               "--batch", 8)  # fmt: skip
    assert two.returncode == 1, two.stdout[-3000:] + two.stderr[-3000:]
    for rank in ("GLOBAL_RANK: 0, MEMBER: 1/2", "GLOBAL_RANK: 1, MEMBER: 2/2"):
        assert rank in two.stderr
    assert (out / "worklist.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    groups = [r["group"] for r in csv.DictReader((out / "worklist.csv").open())]
    assert (groups.count("ranked"), groups.count("not scored"), groups.count("skipped")) == (
        43, 3, 3,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert [r["rank"] for r in summary["ranks"]] == [0, 1]
    assert sum(r["images"] for r in summary["ranks"]) == 42 + 7
    assert min(r["images"] for r in summary["ranks"]) > 0  # both ranks scored a share
    assert summary["skipped_by_reason"] == {"empty file": 1, "not an image": 1,
                                            "truncated or corrupt": 1}  # fmt: skip
    assert "rank 1:" in two.stdout and "all ranks:" in two.stdout
    assert "Traceback" not in two.stdout + two.stderr
    # --out is never overwritten; --resume on a finished run scores nothing and changes nothing
    again = _cxr("predict", model_file, *inputs, "--out", out, "--devices", 2)
    assert again.returncode == 2 and "exists" in again.stdout + again.stderr
    resumed = _cxr("predict", model_file, *inputs, "--out", out, "--resume", "--workers", 0,
                   "--batch", 8)  # fmt: skip
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert "rank 0: 0 images" in resumed.stdout
    assert (out / "worklist.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    other = save_tiny_model(tmp_path / "other.pt", calibration="none")
    refused = _cxr("predict", other, *inputs, "--out", out, "--resume")
    assert refused.returncode == 2 and "other model" in refused.stdout + refused.stderr


def test_a_killed_rank_loses_only_its_batch_and_resume_finishes(model_file, data, tmp_path):
    train = data / "chest_xray" / "train"
    paths = sorted((train / "PNEUMONIA").glob("*.jpeg"))[:120]
    paths += sorted((train / "NORMAL").glob("*.jpeg"))[:40]
    listing = tmp_path / "files.txt"
    listing.write_text("".join(f"{p}\n" for p in paths))
    out = tmp_path / "archive"
    args = [sys.executable, "-m", "cxr", "predict", model_file, "--list", listing, "--out", out,
            "--devices", 2, "--workers", 0, "--batch", 8]  # fmt: skip
    with (tmp_path / "killed.log").open("w") as log:
        main = subprocess.Popen(list(map(str, args)), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while _part_lines(out, 1) < 3 and main.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        (part,) = (out / "parts").glob("*-rank00001-*.jsonl")
        os.kill(int(part.stem.rsplit("-", 1)[1]), signal.SIGKILL)  # rank 1, mid-run
        main.wait(timeout=120)  # Lightning ends the other rank too
    finally:
        if main.poll() is None:
            os.killpg(main.pid, signal.SIGKILL)
            main.wait()
    assert main.returncode != 0
    before = _part_lines(out, 1)
    assert 3 <= before < 10  # rank 1 had 10 batches of 8; it was killed before its last
    assert not (out / "worklist.csv").exists()  # nothing looks finished

    resumed = _cxr("predict", model_file, "--list", listing, "--out", out, "--resume",
                   "--devices", 2, "--workers", 0, "--batch", 8)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert sum(r["images"] for r in summary["ranks"]) <= 160 - 8 * before  # done was skipped
    rows = list(csv.DictReader((out / "worklist.csv").open()))
    assert sorted(r["path"] for r in rows) == sorted(map(str, paths))  # each image exactly once
    one = _cxr("predict", model_file, *paths, "--out", tmp_path / "one.csv", "--workers", 0,
               "--batch", 8)  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert sorted((out / "worklist.csv").read_text().splitlines()) == sorted(
        (tmp_path / "one.csv").read_text().splitlines()
    )


def test_a_csv_listing_names_paths_relative_to_itself(data, tmp_path):
    folder = data / "dicom_cxr" / "kermany_wrapped"
    (tmp_path / "sub").mkdir()
    listing = tmp_path / "sub" / "listing.csv"
    relative = os.path.relpath(folder, listing.parent)
    listing.write_text(
        f"study,path\na,{relative}/normal_IM-0117-0001.dcm\nb,{relative}/missing.dcm\nc,\n"
    )
    found = list(listed_paths(listing))
    assert found == [listing.parent / relative / n for n in ("normal_IM-0117-0001.dcm",
                                                             "missing.dcm")]  # fmt: skip
    assert found[0].is_file()
    # a missing file in a listing is one skipped image, as in a folder, not the end of the run
    assert list(Files(listings=(str(listing),)))[1] == (str(found[1]), str(found[1]))


def test_an_orthanc_study_is_scored_over_dicomweb(model_file, data, tmp_path):
    """Five radiographs filed as one study on a real Orthanc, and another study beside it: the
    study query scores exactly its five, each as `cxr predict` scores the same file."""
    study = pydicom.uid.generate_uid()
    local = tmp_path / "study"
    local.mkdir()
    sources = sorted((data / "dicom_cxr" / "kermany_wrapped").glob("*.dcm"))
    for k, source in enumerate(sources[:6]):
        ds = pydicom.dcmread(source)
        if k < 5:
            ds.StudyInstanceUID = study
            ds.save_as(local / source.name)
        else:
            ds.save_as(tmp_path / source.name)
    assert ORTHANC, "the PACS tests need Debian's orthanc: apt-get install orthanc orthanc-dicomweb"
    server = Orthanc(tmp_path / "orthanc", free_port())
    try:
        for path in [*sorted(local.iterdir()), *tmp_path.glob("*.dcm")]:
            httpx.post(f"{server.url}/instances", content=path.read_bytes(), timeout=30)
        out = tmp_path / "archive"
        result = _cxr("predict", model_file, "--dicomweb", f"{server.url}/dicom-web",
                      "--study", study, "--out", out, "--workers", 0)  # fmt: skip
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {r["path"].rsplit("/", 1)[1]: r for r in csv.DictReader((out / "worklist.csv").open())}
    one = _cxr("predict", model_file, local, "--out", tmp_path / "one.csv", "--workers", 0)
    assert one.returncode == 0, one.stderr
    expected = {}
    for r in csv.DictReader((tmp_path / "one.csv").open()):
        expected[pydicom.dcmread(r["path"], stop_before_pixels=True).SOPInstanceUID] = r
    assert set(rows) == set(expected) and len(rows) == 5
    for uid, row in rows.items():
        assert row["path"].startswith(f"studies/{study}/series/")
        assert row["p_PNEUMONIA"] == expected[uid]["p_PNEUMONIA"], uid
        assert row["rank"] == expected[uid]["rank"]
