import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as photos

from cxr.errors import CxrError
from cxr.models import create_model, list_models
from cxr.models.weights import WeightsError
from cxr.models.xrv import weights_file

CATS = range(281, 286)  # ImageNet's domestic cats; 285 is "Egyptian cat"


@pytest.mark.parametrize("name", list_models())
def test_forward_and_backward_at_tiny_size(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    side = 150 if name == "classic_cnn" else 32  # classic_cnn's dense layer fixes its input size
    out = model(torch.randn(2, 1, side, side))
    assert out.shape == (2, 3)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert model.card.preprocessing.size >= 128
    model.get_submodule(model.card.spec.target_layer)  # the Grad-CAM layer exists


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


def test_torchvision_weights_load_from_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CXR_OFFLINE", "1")
    import torchvision.models as tvm

    torch.manual_seed(1)
    reference = tvm.resnet18(weights=None).state_dict()
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(reference, folder / "resnet18-f37072fd.pth")
    model = create_model("resnet18", pretrained=True, num_classes=1000, in_chans=3)
    assert torch.equal(model.layer4[1].conv2.weight, reference["layer4.1.conv2.weight"])
    grey = create_model("resnet18", pretrained=True, num_classes=2)
    assert grey.conv1.in_channels == 1 and grey.fc.out_features == 2


def test_missing_torchvision_weights_offline_name_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CXR_OFFLINE", "1")
    with pytest.raises(WeightsError) as caught:
        create_model("densenet121", pretrained=True)
    message = str(caught.value)
    assert "densenet121-a639ec97.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message


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
