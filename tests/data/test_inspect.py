import json

from cxr.data.discovery import discover
from cxr.data.inspect import plot_class_distribution, plot_montage, summarise


def test_kermany_summary(data, tmp_path):
    dataset = discover(data / "chest_xray")
    summary = summarise(dataset)
    assert summary.counts == {"train": {"NORMAL": 1341, "PNEUMONIA": 3875}}
    assert summary.patients == {"train": {"NORMAL": 1211, "PNEUMONIA": 1635}}
    assert (summary.duplicate_groups, summary.redundant_copies) == (24, 26)
    assert summary.unreadable == []
    assert round(summary.imbalance_ratio, 2) == 2.89
    for png in (plot_class_distribution(summary, tmp_path), plot_montage(dataset, tmp_path)):
        assert png.stat().st_size > 10_000
    assert json.loads(summary.to_json())["images"] == 5216


def test_exactly_the_three_bad_files_are_reported(damaged_folder):
    summary = summarise(discover(damaged_folder))
    assert summary.images == 4
    reasons = {u["path"].rsplit("/", 1)[1]: u["reason"] for u in summary.unreadable}
    assert set(reasons) == {"truncated.jpeg", "empty.jpeg", "notes.png"}
    assert reasons["empty.jpeg"].startswith("empty file")
    assert reasons["notes.png"].startswith("not an image")
    assert reasons["truncated.jpeg"].startswith("truncated or corrupt")
