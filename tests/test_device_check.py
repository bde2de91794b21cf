"""`scripts/device-check --dry-run`: the GPU readiness check's own steps, run on this CPU with tiny
settings, so the script a GPU lease depends on is known to work before one is lent."""

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "device-check"


def _check(*args: str, env: dict | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_dry_run_runs_every_step_on_the_cpu(tmp_path, data):
    env = {**os.environ, "CXR_CACHE": str(tmp_path / "cache"), "CXR_DATA": str(data)}
    work = tmp_path / "work"
    # one config keeps it short: tests/training covers every config under each precision
    demo = SCRIPT.parent.parent / "configs" / "demo.yaml"
    result = _check("--dry-run", "--configs", str(demo), "--work", str(work), env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    rows = {
        cells[0]: cells[1:]
        for line in result.stdout.splitlines()
        if (cells := [c.strip() for c in line.strip("|").split("|")]) and len(cells) == 4
    }
    expected = ["doctor", "step (cpu, 48 px, batch 4)", "matrix-demo-32-true",
                "matrix-demo-bf16-mixed", "demo", "evaluate", "gradcam", "onnx export",
                "onnx predict", "onnx providers", "ddp"]  # fmt: skip
    assert [name for name in rows if name not in ("step", "---")] == expected
    assert all(rows[name][0] == "ok" for name in expected[:-1]), rows
    assert rows["ddp"][0] == "skipped"
    assert re.fullmatch(
        r"cxr_cnn fp32 [\d.]+ img/s, cxr_cnn bf16 [\d.]+ img/s", rows[expected[1]][2]
    )
    assert re.fullmatch(r"internal-test AUROC [01]\.\d{4} \(\d+ images\)", rows["evaluate"][2])
    assert rows["gradcam"][2] == "4/4 heat maps"
    assert rows["onnx providers"][2].startswith("CPU provider")  # no GPU here
    gap = float(re.search(r"largest gap to PyTorch (\S+)", rows["onnx providers"][2]).group(1))
    assert gap < 1e-4  # the export predicts what the checkpoint predicts
    assert "precision  " in result.stdout  # the doctor's lines head the figures
    assert len(list((work / "cams").glob("*.png"))) == 4
    logs = ["doctor", "step", "matrix-demo-32-true", "matrix-demo-bf16-mixed", "evaluate",
            "gradcam", "export", "onnx-predict", "onnx-check"]  # fmt: skip
    assert sorted(p.stem for p in (work / "logs").iterdir()) == sorted(logs)


def test_refusals_come_before_any_work(tmp_path, data):
    result = _check("--dry-run", "--data", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert f"no Kermany data at {tmp_path / 'nowhere' / 'chest_xray'}" in result.stdout
    taken = tmp_path / "taken"
    taken.mkdir()
    result = _check("--dry-run", "--data", str(data), "--work", str(taken))
    assert result.returncode == 2 and "exists; device-check never overwrites" in result.stdout
    assert not list(taken.iterdir())
