"""Test-time views (the card's `views`): every scorer of a model file averages the same views,
the ONNX export included, and each view is what it says (a mirror, a zoom into the centre)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cxr.data.views import Views
from cxr.errors import CxrError
from cxr.inference.export import export_onnx
from cxr.inference.predictor import load_predictor
from cxr.models import create_model, load_model, save_model
from cxr.models.card import ModelCard
from cxr.models.ensemble import ENSEMBLE
from cxr.training.config import ConfigError, load_config
from tests.conftest import save_tiny_model


def _with_views(tmp_path, views: Views, name: str):
    """The tiny untrained model, its head scaled up so that its output follows its input."""
    model = load_model(save_tiny_model(tmp_path / "plain.pt"))
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight *= 1000
    model.card = dataclasses.replace(model.card, views=views)
    return save_model(tmp_path / name, model)


def _images(n: int = 3, size: int = 128) -> np.ndarray:  # cxr_cnn takes 128 px
    """Ramps across the width, so an image and its mirror differ for the model."""
    ramp = np.linspace(-2, 2, size, dtype=np.float32)
    return np.stack([np.broadcast_to(ramp * (k + 1), (1, size, size)) for k in range(n)]).copy()


def test_mirrored_views_score_an_image_and_its_mirror_alike(tmp_path):
    plain = load_predictor(_with_views(tmp_path, Views(), "plain-scaled.pt"))
    path = _with_views(tmp_path, Views(hflip=True), "flip.pt")
    flip = load_predictor(path)
    x = _images()
    p, mirrored = flip.predict(x), flip.predict(x[..., ::-1].copy())
    assert np.allclose(p, mirrored, atol=1e-6)
    assert not np.allclose(plain.predict(x), plain.predict(x[..., ::-1].copy()), atol=1e-4)
    assert load_model(path).card.views == Views(hflip=True)  # the file keeps them


def test_a_zoom_view_sees_only_the_centre(tmp_path):
    zoom = load_predictor(_with_views(tmp_path, Views(scales=(2.0,)), "zoom.pt"))
    x = _images(1)
    border = x.copy()
    border[..., :30, :] = 5.0  # outside the centre half (rows 32-95)
    centre = x.copy()
    centre[..., 55:75, 55:75] = 5.0
    assert np.allclose(zoom.predict(x), zoom.predict(border), atol=1e-6)
    assert not np.allclose(zoom.predict(x), zoom.predict(centre), atol=1e-4)


def test_the_onnx_export_averages_the_same_views(tmp_path):
    path = _with_views(tmp_path, Views(hflip=True, scales=(1.0, 1.15)), "views.pt")
    onnx = load_predictor(export_onnx(path, tmp_path / "views.onnx"))
    assert onnx.card.views == Views(hflip=True, scales=(1.0, 1.15))
    x = _images()
    assert np.allclose(onnx.predict(x), load_predictor(path).predict(x), atol=1e-4)
    assert np.allclose(onnx.predict(x), onnx.predict(x[..., ::-1].copy()), atol=1e-5)


def test_ensemble_members_keep_their_own_views(tmp_path):
    """An ensemble of a mirrored-views member and a plain one: its output is the mean of the
    members' log-probabilities, the first averaged over the image and its mirror."""
    members = [load_model(_with_views(tmp_path, Views(), f"m{i}.pt")) for i in range(2)]
    spec = {"architecture": "cxr_cnn", "args": members[0].card.args,
            "calibration": {"method": "none", "scale": [], "shift": []}}  # fmt: skip
    views = {"hflip": True, "scales": [1.0]}
    both = create_model(ENSEMBLE, members=[{**spec, "views": views}, spec])
    for i, m in enumerate(members):
        both.members[i].load_state_dict(m.state_dict())
    x = torch.from_numpy(_images())
    with torch.inference_mode():
        first = ((members[0](x) + members[0](x.flip(-1))) / 2).log_softmax(1)
        second = members[1](x).log_softmax(1)
        assert torch.allclose(both.eval()(x), (first + second) / 2, atol=1e-5)
        assert not torch.allclose(first, members[0](x).log_softmax(1), atol=1e-3)


def test_cards_written_before_views_read_as_one_view(tmp_path):
    card = load_model(save_tiny_model(tmp_path / "m.pt")).card.to_dict()
    del card["views"]
    assert ModelCard.from_dict(card).views == Views()


@pytest.mark.parametrize("scales", [[0.8], [], [1.0, 1.0], [3]])
def test_impossible_views_are_refused_in_one_line(scales):
    with pytest.raises(CxrError, match="test-time scales"):
        Views(scales=tuple(scales))
    with pytest.raises(ConfigError, match=r"model\.test_time_scales"):
        load_config("configs/demo.yaml", [f"model.test_time_scales={scales}"])
