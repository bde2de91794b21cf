from collections import Counter

import pytest

from cxr.data.discovery import Record, discover
from cxr.data.split import grouped_split
from cxr.errors import DatasetError


def test_no_patient_on_both_sides_of_the_real_kermany_split(data):
    records = discover(data / "chest_xray").records
    train, val = grouped_split(records, val_fraction=0.15, seed=0)
    assert len(train) + len(val) == len(records)
    assert not {r.group for r in train} & {r.group for r in val}
    share = len(val) / len(records)
    assert 0.12 < share < 0.17
    val_pneumonia = Counter(r.label for r in val)["PNEUMONIA"] / len(val)
    assert abs(val_pneumonia - 3875 / 5216) < 0.03  # stratified


def test_split_is_seeded(data):
    records = discover(data / "chest_xray").records
    a = grouped_split(records, 0.2, seed=1)[1]
    b = grouped_split(records, 0.2, seed=1)[1]
    c = grouped_split(records, 0.2, seed=2)[1]
    assert [r.path for r in a] == [r.path for r in b] != [r.path for r in c]


def test_validation_never_draws_from_test(tmp_path):
    records = [
        Record(tmp_path / f"{i}.png", "A", "test" if i == 3 else "train", str(i)) for i in range(20)
    ]
    with pytest.raises(DatasetError, match="test split"):
        grouped_split(records)
