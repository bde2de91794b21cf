"""The external judge on the real shared data: no radiograph of Kermany train in it (checked on the
pixels by thumbnail correlation, not by the content keys that built it), no film twice, the
database's classes mapped to the binary task, and the config key naming it."""

import typing

import numpy as np
import pytest

from cxr.data.cache import PixelCache
from cxr.data.discovery import discover
from cxr.data.duplicates import near_duplicates, thumbnails
from cxr.data.external import JUDGES, KEY_SIZE, external_judge
from cxr.errors import DatasetError
from cxr.training.config import EvaluationConfig, load_config

COVID_DB = "COVID-19_Radiography_Dataset"


@pytest.fixture(scope="module")
def judge(data):
    return external_judge("covid-db", data)


def _rows(paths) -> np.ndarray:
    images = PixelCache(KEY_SIZE).load(paths)
    assert not images.failures
    return np.stack([images[i] for i in range(len(images))])


def test_the_judge_holds_no_kermany_training_radiograph_and_no_film_twice(judge, data):
    kermany = _rows(
        [
            r.path
            for f in ("chest_xray/train", "chest_xray_originals")
            for r in discover(data / f).records
        ]
    )
    kept = _rows([r.path for r in judge.records])
    assert not near_duplicates(kept, kermany).any()
    assert near_duplicates(_rows([r.path for r in judge.copies]), kermany).all()
    similar = thumbnails(kept) @ thumbnails(kept).T
    np.fill_diagonal(similar, 0)
    assert similar.max() < 0.99
    again = _rows([r.path for r in judge.repeats])
    assert near_duplicates(again, kept).all()  # each repeat's film is in the judge once


def test_counts_and_labels_map_to_the_binary_task(judge, data):
    assert judge.summary() == {
        "judge": "covid-db",
        "images": 280,
        "NORMAL": 62,
        "PNEUMONIA": 218,
        "kermany_copies": 418,
        "kermany_copies_by_class": {"Normal": 178, "Viral Pneumonia": 240},
        "repeats": 22,
        "unmapped": 0,
    }
    source = {r.path: r.label for r in discover(data / COVID_DB).records}
    mapped = {"Normal": "NORMAL", "COVID": "PNEUMONIA", "Viral Pneumonia": "PNEUMONIA"}
    assert all(mapped[source[r.path]] == r.label for r in judge.records)
    parts = [{r.path for r in part} for part in (judge.records, judge.copies, judge.repeats)]
    assert sum(map(len, parts)) == len(set().union(*parts)) == len(source)  # disjoint, complete
    assert {source[p] for p in parts[2]} == {"COVID"}


def test_the_config_names_a_judge_and_refuses_others():
    hint = typing.get_type_hints(EvaluationConfig)["external"]
    assert typing.get_args(typing.get_args(hint)[0]) == tuple(JUDGES)
    assert load_config(None).evaluation.external is None
    assert load_config(None, ["evaluation.external=covid-db"]).evaluation.external == "covid-db"
    with pytest.raises(DatasetError, match="unknown external judge 'nih'"):
        external_judge("nih")
