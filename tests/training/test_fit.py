"""One-epoch smoke trains on a handful of real Kermany images, one per strategy."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from cxr.data.cache import PixelCache
from cxr.data.reader import read_image
from cxr.data.xrays import CachedXrays
from cxr.inference.probabilities import probabilities
from cxr.metrics.thresholds import choose_threshold
from cxr.models import create_model, load_model, save_model
from cxr.training.config import ConfigError, load_config
from cxr.training.datamodule import PixelTensors
from cxr.training.features import head_inputs
from cxr.training.fit import fit


def _cfg(tmp_path, data, *overrides):
    return load_config(
        None,
        [
            f"data.root={data / 'chest_xray'}",
            "data.limit=48",
            "data.workers=0",
            "data.batch_size=16",
            "optim.epochs=1",
            "model.size=48",
            f"runs_dir={tmp_path / 'runs'}",
            *overrides,
        ],
    )


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_CACHE", str(tmp_path / "cache"))


def test_scratch_run_folder_and_model_round_trip(tmp_path, data):
    run = fit(_cfg(tmp_path, data, "name=s", "data.age_years=[1, 5]"))
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "history.csv",
        "model.pt",
        "tuning_predictions.csv",
        "metrics.json",
    }
    history = list(csv.DictReader((run / "history.csv").open()))
    assert len(history) == 1 and history[0]["epoch"] == "1"  # counted as a user counts
    metrics = json.loads((run / "metrics.json").read_text())
    model = load_model(run / "model.pt")
    card = model.card
    assert card.classes == ("NORMAL", "PNEUMONIA") and card.positive_class == "PNEUMONIA"
    assert card.threshold.positive_class == "PNEUMONIA"
    # the stored threshold is the one its rule picks on the stored tuning predictions
    tuning = list(csv.DictReader((run / "tuning_predictions.csv").open()))
    truth = np.array([r["label"] == "PNEUMONIA" for r in tuning], int)
    p = np.array([float(r["p_PNEUMONIA"]) for r in tuning])
    chosen = choose_threshold(truth, p, card.threshold.rule)
    assert card.threshold.value == pytest.approx(chosen, abs=1e-5)
    # the card groups its tuning images by patient as the CSV does, by number, never by the id
    ids, numbers = [r["patient"] for r in tuning], card.tuning["patients"]
    assert len(set(ids)) == len(set(numbers)) == len(set(zip(ids, numbers, strict=True)))
    assert not set(ids) & set(numbers)
    assert card.metrics == metrics and card.calibration.verdict
    # the AUROC logged for the epoch (torchmetrics, on the tuning split) is the one the final
    # tuning predictions give (scikit-learn): calibration is an affine map of the logit gap,
    # which keeps the ranking, or reverses it if its slope came out negative
    slope = card.calibration.scale[0] if card.calibration.scale else 1.0
    logged = float(history[0]["val_auroc"])
    assert (logged if slope > 0 else 1 - logged) == pytest.approx(metrics["tuning_auroc"], abs=1e-4)
    assert card.data["tune_fraction"] == 0.15 and card.data_fingerprint
    # the population prediction checks new images against: grey-level ranges, documented ages
    assert card.population["age_years"] == [1.0, 5.0] and card.population["images"] > 0
    low, high = card.population["pixel_mean"]
    assert 0 < low < high < 255
    rows = list(csv.DictReader((run / "tuning_predictions.csv").open()))
    p = _probabilities(model, [r["path"] for r in rows])
    assert np.allclose(p, [float(r["p_PNEUMONIA"]) for r in rows], atol=2e-6)
    assert np.allclose(np.array(card.tuning["probs"])[:, 1], p, atol=2e-6)
    originals = sorted((data / "chest_xray_originals/train").rglob("*.jpeg"))
    big = _probabilities(model, originals)
    small = _probabilities(
        model,
        [data / "chest_xray" / p.relative_to(data / "chest_xray_originals") for p in originals],
    )
    assert np.abs(big - small).mean() < 0.05  # full resolution and the 224 copy agree
    second = fit(_cfg(tmp_path, data, "name=s"))
    assert second.name == "s-2"  # never overwrites


def _probabilities(model, paths) -> np.ndarray:
    x = torch.stack(
        [torch.from_numpy(model.card.preprocessing.to_array(read_image(p).pixels)) for p in paths]
    )
    with torch.inference_mode():
        return probabilities(model, x)[:, 1].numpy()


def test_finetune_pretrained_backbone(tmp_path, data):
    run = fit(
        _cfg(
            tmp_path,
            data,
            "name=f",
            "model.name=efficientnet_lite0",
            "model.pretrained=true",
            "model.strategy=finetune",
            "optim.warmup_epochs=1",
        )
    )
    assert load_model(run / "model.pt").conv_stem.in_channels == 1


def test_freeze_bn_keeps_the_pretrained_statistics_while_the_weights_learn(tmp_path, data):
    reference = create_model("efficientnet_lite0", pretrained=True)
    args = ("model.name=efficientnet_lite0", "model.pretrained=true", "model.strategy=finetune")
    frozen = load_model(
        fit(_cfg(tmp_path, data, "name=bn", *args, "optim.freeze_bn=true")) / "model.pt"
    )
    moving = load_model(fit(_cfg(tmp_path, data, "name=bm", *args)) / "model.pt")
    before, after, free = reference.state_dict(), frozen.state_dict(), moving.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    assert not all(torch.equal(before[k], free[k]) for k in stats)  # without it they move
    assert not torch.equal(before["bn1.weight"], after["bn1.weight"])  # the scale still learns


@pytest.mark.parametrize("warmup", [0, 1])
def test_frozen_stages_stay_pretrained_while_later_stages_learn(tmp_path, data, warmup):
    """Even after a head-first warm-up, which makes the rest of the backbone trainable again."""
    reference = create_model("efficientnet_lite0", pretrained=True).state_dict()
    args = ("model.name=efficientnet_lite0", "model.pretrained=true", "model.strategy=finetune")
    run = fit(
        _cfg(
            tmp_path,
            data,
            f"name=fs{warmup}",
            *args,
            "optim.freeze_stages=2",
            f"optim.epochs={warmup + 1}",
            f"optim.warmup_epochs={warmup}",
        )
    )
    trained = load_model(run / "model.pt").state_dict()
    frozen = [k for k in reference if k.startswith(("conv_stem", "bn1", "blocks.0.", "blocks.1."))]
    assert frozen and all(torch.equal(reference[k], trained[k]) for k in frozen)  # stats too
    later = [k for k in reference if k.startswith("blocks.2.") and k.endswith("weight")]
    assert not all(torch.equal(reference[k], trained[k]) for k in later)


def test_freeze_stages_needs_a_stage_map(tmp_path, data):
    args = ("model.name=resnet18", "model.strategy=finetune")
    with pytest.raises(ConfigError, match="resnet18 has no stage map"):
        fit(_cfg(tmp_path, data, "name=r", *args, "optim.freeze_stages=1"))
    lite = ("model.name=efficientnet_lite0", "model.pretrained=true", "model.strategy=finetune")
    with pytest.raises(ConfigError, match="has 7 stages after its stem"):
        fit(_cfg(tmp_path, data, "name=l", *lite, "optim.freeze_stages=8"))


def test_mixup_and_cutmix_change_what_the_model_learns(tmp_path, data):
    """Training is deterministic, so the same run with mixing on must end with other weights; with
    label smoothing too, which the mixed targets carry once."""
    smooth = ("optim.label_smoothing=0.1",)
    plain = load_model(fit(_cfg(tmp_path, data, "name=p", *smooth)) / "model.pt").state_dict()
    again = load_model(fit(_cfg(tmp_path, data, "name=q", *smooth)) / "model.pt").state_dict()
    mix = ("optim.mixup=0.4", "optim.cutmix=1.0")
    mixed = load_model(fit(_cfg(tmp_path, data, "name=m", *smooth, *mix)) / "model.pt").state_dict()
    assert all(torch.equal(plain[k], again[k]) for k in plain)
    assert not all(torch.equal(plain[k], mixed[k]) for k in plain)


def test_linear_probe_keeps_the_backbone_frozen(tmp_path, data):
    reference = create_model("efficientnet_lite0", pretrained=True)
    run = fit(
        _cfg(
            tmp_path,
            data,
            "name=l",
            "model.name=efficientnet_lite0",
            "model.pretrained=true",
            "model.strategy=linear_probe",
        )
    )
    trained = load_model(run / "model.pt")
    for (name, before), after in zip(
        reference.state_dict().items(), trained.state_dict().values(), strict=True
    ):
        if not name.startswith("classifier"):
            assert torch.equal(before, after), name
    assert not torch.equal(reference.classifier.weight, trained.classifier.weight)


def test_three_class_kermany(tmp_path, data):
    run = fit(_cfg(tmp_path, data, "name=k3", "data.scheme=kermany3"))
    card = load_model(run / "model.pt").card
    assert card.classes == ("bacterial", "normal", "viral") and card.threshold is None
    assert card.calibration.method in {"none", "temperature", "vector"}
    assert 0 <= card.metrics["tuning_auroc"] <= 1


def test_save_load_reproduces_predictions_exactly(tmp_path, data):
    model = create_model("cxr_cnn").eval()
    path = save_model(tmp_path / "m.pt", model)
    again = load_model(path)
    assert again.card == dataclasses.replace(model.card, versions=again.card.versions)
    pixels = read_image(data / "chest_xray_originals/train/NORMAL/IM-0117-0001.jpeg").pixels
    x = torch.from_numpy(model.card.preprocessing.to_array(pixels))[None]
    with torch.inference_mode():
        assert torch.equal(model(x), again(x))


def test_head_inputs_are_what_the_head_sees(data):
    model = create_model("efficientnet_lite0", pretrained=True).eval()
    paths = sorted((data / "chest_xray/train/NORMAL").glob("*.jpeg"))[:6]
    prep = dataclasses.replace(model.card.preprocessing, size=64)
    model.card = dataclasses.replace(model.card, preprocessing=prep)
    cached = PixelCache(64, prep.resize).load(paths)
    features = head_inputs(model, PixelTensors(cached, [0] * 6), torch.device("cpu"), 4, bf16=False)
    assert features.shape == (6, 1280)
    images = CachedXrays(cached, [0] * 6, prep)
    x = torch.stack([images[i][0] for i in range(6)])
    with torch.inference_mode():
        assert torch.allclose(model.classifier(features), model(x), atol=1e-5)


def test_same_seed_same_model_on_cpu(tmp_path, data):
    first = load_model(fit(_cfg(tmp_path, data, "name=d", "data.workers=1")) / "model.pt")
    second = load_model(fit(_cfg(tmp_path, data, "name=d", "data.workers=1")) / "model.pt")
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    other = load_model(fit(_cfg(tmp_path, data, "name=d", "data.seed=1")) / "model.pt")
    assert not torch.equal(first.head[-1].weight, other.head[-1].weight)


def test_every_augmentation_level_and_the_ema_train(tmp_path, data):
    for level in ("none", "light"):
        fit(_cfg(tmp_path, data, f"name={level}", f"data.augment={level}"))
    run = fit(_cfg(tmp_path, data, "name=ema", "optim.ema=0.9", "optim.schedule=cosine"))
    assert load_model(run / "model.pt").card.recipe["ema"] == 0.9


def test_compile_falls_back_to_eager_without_a_compiler(tmp_path, data, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no C++ compiler on this PATH
    monkeypatch.delenv("CXX", raising=False)
    with pytest.warns(UserWarning, match=r"torch\.compile is off: no C\+\+ compiler"):
        run = fit(_cfg(tmp_path, data, "name=c", "trainer.compile=true"))
    assert load_model(run / "model.pt").card.classes == ("NORMAL", "PNEUMONIA")


def test_epochs_are_counted_from_one_in_the_progress_bar():
    import lightning as L

    from cxr.training.progress import EpochProgress

    bar = EpochProgress()
    bar._trainer = L.Trainer(max_epochs=6, callbacks=[bar], logger=False)
    assert bar._get_train_description(0).strip() == "Epoch 1/6"
    assert bar._get_train_description(5).strip() == "Epoch 6/6"
