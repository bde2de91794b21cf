"""The model's one Grad-CAM explainer: the `grad-cam` package's maps, hooked once, and shared by
concurrent heat maps and predictions without a copy or a lock."""

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from tests.conftest import save_tiny_model

from cxr.data.reader import read_image
from cxr.inference.predictor import load_predictor
from cxr.models.registry import spec_of


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return load_predictor(save_tiny_model(tmp_path_factory.mktemp("m") / "model.pt"))


@pytest.fixture(scope="module")
def arrays(predictor, data):
    train = data / "chest_xray" / "train"
    paths = [
        *sorted((train / "NORMAL").glob("*.jpeg"))[:3],
        *sorted((train / "PNEUMONIA").glob("*.jpeg"))[:3],
    ]
    return np.stack([predictor.card.preprocessing.to_array(read_image(p).pixels) for p in paths])


def test_heat_maps_are_the_grad_cam_packages(predictor, arrays):
    reference = copy.deepcopy(predictor.model)  # the package hooks (and unhooks) a model of its own
    layer = reference.get_submodule(spec_of(predictor.card).target_layer)
    for k, array in enumerate(arrays):
        with GradCAM(model=reference, target_layers=[layer]) as cam:
            expected = cam(input_tensor=torch.from_numpy(array)[None],
                           targets=[ClassifierOutputTarget(k % 2)])[0]  # fmt: skip
        (mine,) = predictor.explain(array[None], [k % 2])
        assert mine.shape == expected.shape == arrays.shape[-2:]
        np.testing.assert_allclose(mine, np.clip(expected, 0, 1), atol=1e-5)
    both = predictor.explain(arrays[:2], [0, 1])  # a batch: each image for its own class
    np.testing.assert_allclose(both[1], predictor.explain(arrays[1:2], [1])[0], atol=1e-5)


def test_threads_share_the_model_and_its_one_hook(predictor, arrays):
    alone = [predictor.explain(a[None], [1])[0] for a in arrays]
    scores = predictor.predict(arrays)
    with ThreadPoolExecutor(4) as pool:
        maps = list(pool.map(lambda a: predictor.explain(a[None], [1])[0], [*arrays] * 4))
        predicted = list(pool.map(lambda _: predictor.predict(arrays), range(8)))
    for k, cam in enumerate(maps):
        np.testing.assert_allclose(cam, alone[k % len(arrays)], atol=1e-5)
    for p in predicted:  # a prediction beside a heat map is untouched by its hook
        np.testing.assert_allclose(p, scores, atol=1e-6)
    layer = predictor.model.get_submodule(spec_of(predictor.card).target_layer)
    assert len(layer._forward_hooks) == 1  # built once, however many heat maps
    assert all(p.grad is None for p in predictor.model.parameters())  # nothing accumulated
