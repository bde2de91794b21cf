from collections import Counter

import pytest

from cxr.data.discovery import Dataset, Record, discover
from cxr.data.split import protocol_split, split_fingerprint
from cxr.errors import DatasetError


def _disjoint(*parts) -> bool:
    groups = [{r.group for r in part} for part in parts]
    return all(not (a & b) for i, a in enumerate(groups) for b in groups[i + 1 :])


def test_train_tune_and_internal_test_share_no_patient(data):
    dataset = discover(data / "chest_xray")
    p = protocol_split(dataset, tune_fraction=0.15, test_fraction=0.15, seed=0)
    assert len(p.train) + len(p.tune) + len(p.test) == len(dataset.records)
    assert _disjoint(p.train, p.tune, p.test)
    for part in (p.tune, p.test):
        assert 0.12 < len(part) / len(dataset.records) < 0.18
        pneumonia = Counter(r.label for r in part)["PNEUMONIA"] / len(part)
        assert abs(pneumonia - 3875 / 5216) < 0.03  # stratified


def test_cross_validation_folds_cover_every_patient_once(data):
    dataset = discover(data / "chest_xray")
    tests = [protocol_split(dataset, 0.15, 0.15, seed=0, fold=k, folds=5).test for k in range(5)]
    assert sum(len(t) for t in tests) == len(dataset.records)
    assert _disjoint(*tests)
    p = protocol_split(dataset, 0.15, 0.15, seed=0, fold=2, folds=5)
    assert _disjoint(p.train, p.tune, p.test)


def test_split_is_seeded_and_fingerprinted(data):
    dataset = discover(data / "chest_xray")
    a = protocol_split(dataset, 0.15, 0.15, seed=1)
    b = protocol_split(dataset, 0.15, 0.15, seed=1)
    c = protocol_split(dataset, 0.15, 0.15, seed=2)
    assert [r.path for r in a.test] == [r.path for r in b.test] != [r.path for r in c.test]
    fingerprint = split_fingerprint(a, dataset.root)
    assert fingerprint == split_fingerprint(b, dataset.root) != split_fingerprint(c, dataset.root)


def test_never_draws_from_a_test_split(tmp_path):
    records = [
        Record(tmp_path / f"{i}.png", "AB"[i % 2], "test" if i < 5 else "train", str(i))
        for i in range(200)
    ]
    p = protocol_split(Dataset(tmp_path, records), 0.15, 0.15, seed=0)
    drawn = {r.path for r in p.train + p.tune + p.test}
    assert not drawn & {r.path for r in records if r.split == "test"}


def test_fractions_are_checked(data):
    with pytest.raises(DatasetError, match="tune_fraction"):
        protocol_split(discover(data / "chest_xray"), 1.5, 0.15, seed=0)
