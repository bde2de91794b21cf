from pathlib import Path

import pytest

from cxr.training.config import ConfigError, load_config


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: x\nmodel: {name: efficientnet_lite0, pretrained: true}\noptim: {lr: 1}\n"
    )
    cfg = load_config(path, ["optim.epochs=3", "data.negative=NORMAL", "trainer.devices=2"])
    assert cfg.model.name == "efficientnet_lite0" and cfg.model.pretrained is True
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.epochs == 3 and cfg.data.negative == "NORMAL" and cfg.trainer.devices == 2


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: {learning_rate: 0.1}\n")
    with pytest.raises(ConfigError, match=r"'optim\.learning_rate'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"'data\.rooot'"):
        load_config(None, ["data.rooot=x"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"'optim\.epochs'"):
        load_config(None, ["optim.epochs=many"])


def test_extra_train_is_a_list_of_folders():
    assert load_config(None, ["data.extra_train=[reviewed, /x/y]"]).data.extra_train == [
        "reviewed",
        "/x/y",
    ]
    assert load_config(None).data.extra_train == []
    with pytest.raises(ConfigError, match=r"'data\.extra_train'.*not a list\[str\]"):
        load_config(None, ["data.extra_train=reviewed"])
    with pytest.raises(ConfigError, match=r"'data\.extra_train\[1\]'"):
        load_config(None, ["data.extra_train=[reviewed, 3]"])


def test_shipped_configs_load():
    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert len(configs) >= 5
    for path in configs:
        load_config(path)


def test_choices_are_checked_at_load():
    with pytest.raises(ConfigError, match=r"'data\.balance'.*'smapler'.*sampler"):
        load_config(None, ["data.balance=smapler"])
    with pytest.raises(ConfigError, match=r"'trainer\.precision'"):
        load_config(None, ["trainer.precision=bf17"])
    assert load_config(None, ["data.balance=sampler"]).data.balance == "sampler"


def test_freeze_bn_needs_a_pretrained_fine_tune():
    with pytest.raises(ConfigError, match=r"needs model\.strategy=finetune, not scratch"):
        load_config(None, ["optim.freeze_bn=true"])
    cfg = load_config(None, ["optim.freeze_bn=true", "model.strategy=finetune"])
    assert cfg.optim.freeze_bn
    with pytest.raises(ConfigError, match=r"freeze_stages keeps the pretrained early stages"):
        load_config(None, ["optim.freeze_stages=3", "model.strategy=linear_probe"])
    with pytest.raises(ConfigError, match=r"a linear probe trains on features"):
        load_config(None, ["optim.mixup=0.2", "model.strategy=linear_probe"])
    with pytest.raises(ConfigError, match=r"Beta\(a, a\) strengths"):
        load_config(None, ["optim.cutmix=-1"])
    with pytest.raises(ConfigError, match=r"freeze_stages must be 0 or more"):
        load_config(None, ["optim.freeze_stages=-1", "model.strategy=finetune"])
