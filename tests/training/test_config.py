import dataclasses
import pickle
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from cxr.training.config import ConfigError, TrainConfig, load_config


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


def test_a_refusal_is_one_line_naming_the_file_or_override_the_key_and_the_type(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("trainer: {max_epochs: 3}\n")
    known = "known: accelerator, devices, num_nodes, strategy, precision, channels_last, compile"
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == f"{path}: unknown config key 'trainer.max_epochs'; {known}"
    path.write_text("optim: {epochs: 2.5}\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: config key 'optim\.epochs': "
                       r"2\.5 is not an int$"):  # fmt: skip
        load_config(path)
    with pytest.raises(ConfigError, match=r"^override 'model\.pretrained=1': config key "
                       r"'model\.pretrained': 1 is not a bool$"):  # fmt: skip
        load_config(path, ["optim.epochs=2", "model.pretrained=1"])
    with pytest.raises(ConfigError, match=r"^override 'model=3': config key 'model': 3 is not a "
                       r"mapping$"):  # fmt: skip
        load_config(None, ["model=3"])


def test_configs_stay_dataclasses_that_pickle_compare_and_copy():
    cfg = load_config(None, ["data.limit=40", "model.size=48"])
    assert pickle.loads(pickle.dumps(cfg)) == cfg != load_config(None) == TrainConfig()
    fold = dataclasses.replace(cfg.data, fold=1, folds=5)
    assert (fold.fold, fold.limit, cfg.data.fold) == (1, 40, None)
    assert dataclasses.asdict(cfg)["model"]["size"] == cfg.to_dict()["model"]["size"] == 48
    with pytest.raises(ValidationError):  # a copy is checked like a load
        dataclasses.replace(cfg.data, fold="1")
