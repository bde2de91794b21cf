"""The precision matrix, forced on any host: every shipped config trains a few steps in 32-true
and in bf16-mixed (bf16 autocast runs on every x86 CPU, emulated where the hardware lacks it), and
a bf16-trained model goes through evaluation, prediction with Grad-CAM and export. The host's own
precision (`auto`) is never trusted to cover a path."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cxr.models import load_model
from cxr.training.config import ConfigError, load_config
from cxr.training.fit import fit
from cxr.training.precision import resolve_precision

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
# tiny data; everything else (model, strategy, augmentation, frozen stages, warm-up) as shipped
TINY = ["data.limit=32", "data.workers=0", "data.batch_size=8", "optim.epochs=1", "model.size=48"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_CACHE", str(tmp_path / "cache"))


def _tiny(config: Path, tmp: Path, *overrides: str):
    return load_config(config, [*TINY, f"runs_dir={tmp / 'runs'}", *overrides])


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_trains_in_each_precision(tmp_path, config, precision, capsys):
    run = fit(_tiny(config, tmp_path, f"trainer.precision={precision}"))
    assert f"precision: {precision} (as configured)" in capsys.readouterr().out
    card = load_model(run / "model.pt").card
    assert card.recipe["precision"] == precision
    history = list(csv.DictReader((run / "history.csv").open()))
    assert len(history) == 1 and float(history[0]["train_loss"]) > 0


def test_the_demo_recipe_with_every_batch_transform_under_bf16(tmp_path):
    """The demo's exact augmentation (the blur is what broke under bf16), plus mixing, cutmix,
    flips and EMA: every tensor operation outside the model's forward, in one bf16 run."""
    run = fit(
        _tiny(
            REPO / "configs" / "demo.yaml",
            tmp_path,
            "trainer.precision=bf16-mixed",
            "data.batch_size=16",
            "data.hflip=true",
            "optim.mixup=0.2",
            "optim.cutmix=1.0",
            "optim.ema=0.99",
        )
    )
    model = load_model(run / "model.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed: fp32 weights


@pytest.fixture(scope="module")
def bf16_model(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("bf16")
    cfg = load_config(
        REPO / "configs" / "demo.yaml",
        [*TINY, "model.size=64", f"runs_dir={tmp / 'runs'}", "trainer.precision=bf16-mixed"],
    )
    return fit(cfg) / "model.pt"


def _cxr(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cli = [sys.executable, "-c", "from cxr.cli import main; main()"]
    return subprocess.run([*cli, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_a_bf16_trained_model_evaluates_predicts_explains_and_exports(bf16_model, tmp_path, data):
    done = _cxr(
        "evaluate", str(bf16_model), str(data / "chest_xray"), "--split", "internal-test",
        "--bootstrap", "50", "--out", str(tmp_path / "eval"), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["card"]["recipe"]["precision"] == "bf16-mixed"
    assert metrics["metrics"]["n"] == metrics["n_images"] >= 8 and not metrics["unreadable"]

    images = data / "dicom_cxr" / "nih_udacity"
    done = _cxr(
        "predict", str(bf16_model), str(images), "--out", str(tmp_path / "w.csv"),
        "--cam", str(tmp_path / "cams"), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "w.csv").open()))
    scored = [r for r in rows if r["group"] == "ranked"]
    assert scored and len(list((tmp_path / "cams").glob("*.png"))) >= len(scored)

    done = _cxr("export", str(bf16_model), "--out", str(tmp_path / "m.onnx"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    done = _cxr(
        "predict", str(tmp_path / "m.onnx"), str(images), "--out", str(tmp_path / "o.csv"),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    onnx = {r["path"]: r for r in csv.DictReader((tmp_path / "o.csv").open())}
    for row in scored:  # the export of a bf16-trained model scores as the model does
        key = "p_PNEUMONIA"
        assert abs(float(row[key]) - float(onnx[row["path"]][key])) < 1e-3


def test_auto_says_what_it_chose_and_why(tmp_path, capsys):
    chosen, why = resolve_precision("auto", "cpu")
    flags = set(Path("/proc/cpuinfo").read_text().split())
    has_bf16 = bool({"avx512_bf16", "amx_bf16"} & flags)
    assert chosen == "32-true" and ("has avx512_bf16" in why) == ("avx512_bf16" in flags)
    assert ("no bf16 instructions" in why) == (not has_bf16)
    fit(_tiny(REPO / "configs" / "quick.yaml", tmp_path, "trainer.accelerator=cpu"))
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("precision:")]
    assert lines == [f"precision: 32-true ({why})"]


def test_fp16_on_a_cpu_is_refused_before_any_data_is_read(tmp_path):
    cfg = _tiny(
        REPO / "configs" / "quick.yaml",
        tmp_path,
        "trainer.precision=16-mixed",
        "trainer.accelerator=cpu",
        f"data.root={tmp_path / 'no-such-data'}",
    )
    with pytest.raises(ConfigError, match="16-mixed needs a CUDA GPU"):
        fit(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_failed_run_never_takes_the_name(tmp_path, data):
    """A run that crashes (here: a GPU asked for on a CPU host, refused by Lightning after the
    data is read) is set aside; the rerun gets runs/<name>, as the README's paths assume."""
    if torch.cuda.is_available():
        pytest.skip("the crash used here is asking for a GPU that is not there")
    quick = REPO / "configs" / "quick.yaml"
    with pytest.raises(Exception) as crash:
        fit(_tiny(quick, tmp_path, "name=demo", "trainer.accelerator=gpu"))
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == [".failed"]
    assert [p.name for p in (runs / ".failed").iterdir()] == ["demo"]
    assert any(".failed/demo" in note for note in crash.value.__notes__)
    run = fit(_tiny(quick, tmp_path, "name=demo"))
    assert run == runs / "demo" and (run / "model.pt").is_file()
    assert not [p for p in runs.iterdir() if "partial" in p.name]
