import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as photos

from cxr.errors import CxrError
from cxr.models import create_model, list_models, spec_of
from cxr.models.weights import WeightsError
from cxr.models.xrv import weights_file

CATS = range(281, 286)  # ImageNet's domestic cats; 285 is "Egyptian cat"


@pytest.mark.parametrize("name", list_models())
def test_forward_and_backward_at_tiny_size(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    # classic_cnn's dense layer fixes its input size; AlexNet's stride 4 and three pools need 63 px
    side = {"classic_cnn": 150, "alexnet": 64}.get(name, 32)
    out = model(torch.randn(2, 1, side, side))
    assert out.shape == (2, 3)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    # X-rays need pixels; LeNet-5 keeps the 32 px it was published with, for the comparisons
    assert model.card.preprocessing.size >= (32 if name == "lenet5" else 128)
    model.get_submodule(spec_of(model.card).target_layer)  # the Grad-CAM layer exists


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_grad_cam_layer_exists_at_any_depth_of_our_cnn(depth):
    model = create_model("cxr_cnn", depth=depth, width=4)
    layer = model.get_submodule(spec_of(model.card).target_layer)
    assert layer(torch.zeros(1, 1, 64, 64)).shape[1] == 4 * 2 ** (depth - 1)  # the last stage


def _photo(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)) / 255


def test_efficientnet_lite0_wheel_weights_name_imagenet_classes():
    model = create_model("efficientnet_lite0", pretrained=True, num_classes=1000, in_chans=3).eval()
    prep = model.card.preprocessing
    batch = [_photo(photos.chelsea(), prep.size), _photo(photos.coffee(), prep.size)]
    x = torch.tensor((np.stack(batch) - prep.mean) / prep.std, dtype=torch.float32).permute(
        0, 3, 1, 2
    )
    with torch.no_grad():
        top = model(x).argmax(1).tolist()
    assert top == [285, 967]  # Egyptian cat, espresso


def test_grey_stem_sums_the_rgb_filters_and_still_sees_a_cat():
    rgb = create_model("efficientnet_lite0", pretrained=True, num_classes=1000, in_chans=3)
    grey = create_model("efficientnet_lite0", pretrained=True, num_classes=1000, in_chans=1).eval()
    assert torch.allclose(grey.conv_stem.weight, rgb.conv_stem.weight.sum(1, keepdim=True))
    prep = grey.card.preprocessing
    cat = _photo(np.asarray(Image.fromarray(photos.chelsea()).convert("L")), prep.size)
    x = torch.tensor((cat - prep.mean) / prep.std, dtype=torch.float32)[None, None]
    with torch.no_grad():
        top5 = grey(x).topk(5).indices[0].tolist()
    assert set(top5) & set(CATS)


@pytest.mark.parametrize(
    ("name", "file", "layer", "stem", "classifier"),
    [
        ("resnet18", "resnet18-f37072fd.pth", "layer4.1.conv2", "conv1", "fc"),
        ("alexnet", "alexnet-owt-7be5be79.pth", "features.10", "features.0", "classifier.6"),
    ],
)
def test_torchvision_weights_load_from_torch_home(
    name, file, layer, stem, classifier, tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CXR_OFFLINE", "1")
    import torchvision.models as tvm

    torch.manual_seed(1)
    reference = getattr(tvm, name)(weights=None).state_dict()
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(reference, folder / file)
    model = create_model(name, pretrained=True, num_classes=1000, in_chans=3)
    assert torch.equal(model.get_submodule(layer).weight, reference[f"{layer}.weight"])
    grey = create_model(name, pretrained=True, num_classes=2)
    first = grey.get_submodule(stem)
    assert first.in_channels == 1 and grey.get_submodule(classifier).out_features == 2
    rgb = reference[f"{stem}.weight"]
    assert torch.allclose(first.weight, rgb.sum(1, keepdim=True))
    assert grey.card.preprocessing.size == 224  # torchvision's ImageNet input


@pytest.mark.parametrize(
    ("name", "file"),
    [("densenet121", "densenet121-a639ec97.pth"), ("alexnet", "alexnet-owt-7be5be79.pth")],
)
def test_missing_torchvision_weights_offline_name_the_file_and_folder(
    name, file, tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CXR_OFFLINE", "1")
    with pytest.raises(WeightsError) as caught:
        create_model(name, pretrained=True)
    message = str(caught.value)
    assert file in message
    assert str(tmp_path / "hub" / "checkpoints") in message


def test_lenet5_is_the_published_network():
    """LeNet-5 with C3 fully connected has 61,706 weights for 10 classes (156 + 2,416 + 48,120 +
    10,164 + 850); at 32 px its feature maps are 28, 14, 10 and 5 pixels wide."""
    model = create_model("lenet5", num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 61_706
    x = torch.zeros(1, 1, 32, 32)
    sides = [model.features[: k + 1](x).shape[-1] for k in (0, 2, 3, 5)]
    assert sides == [28, 14, 10, 5]
    assert model.card.preprocessing.size == 32 and spec_of(model.card).target_layer == "features.4"
    with torch.no_grad():  # a larger model.size keeps the same head
        assert model.eval()(torch.zeros(2, 1, 128, 128)).shape == (2, 10)
    with pytest.raises(CxrError, match="no pretrained weights"):
        create_model("lenet5", pretrained=True)


def test_unknown_model_and_scratch_only_models():
    with pytest.raises(CxrError, match="unknown model 'nope'"):
        create_model("nope")
    with pytest.raises(CxrError, match="no pretrained weights"):
        create_model("cxr_cnn", pretrained=True)


def test_xrv_weights_load_from_its_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CXR_OFFLINE", "1")
    import torchxrayvision as xrv

    torch.manual_seed(2)
    saved = xrv.models.DenseNet(weights=None, num_classes=18, in_channels=1)
    path = weights_file()
    assert path.parent == tmp_path / ".torchxrayvision" / "models_data"
    path.parent.mkdir(parents=True)
    torch.save(saved, path)  # xrv's own format: the pickled module
    model = create_model("xrv_densenet121", pretrained=True)
    assert torch.equal(model.features.conv0.weight, saved.features.conv0.weight)
    assert model.classifier.out_features == 2 and model.op_threshs is None
    prep = model.card.preprocessing
    assert (0 - prep.mean) / prep.std == -1024 and (1 - prep.mean) / prep.std == 1024
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 1, 64, 64)).shape == (1, 2)  # no forced 224 resize


def test_missing_xrv_weights_offline_name_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CXR_OFFLINE", "1")
    with pytest.raises(WeightsError) as caught:
        create_model("xrv_densenet121", pretrained=True)
    message = str(caught.value)
    assert weights_file().name in message and str(weights_file().parent) in message
    assert weights_file().name.startswith("nih-pc-chex")
