"""A real 2-process DDP fit on CPU (gloo), through the CLI as torchrun-style launches run it."""

import json
import os
import subprocess
import sys


def test_two_process_ddp_fit_on_cpu(tmp_path, data):
    env = {**os.environ, "CXR_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxr",
            "train",
            f"data.root={data / 'chest_xray'}",
            "data.limit=64",
            "data.workers=0",
            "data.batch_size=16",
            "model.size=48",
            "optim.epochs=1",
            "name=ddp",
            f"runs_dir={tmp_path / 'runs'}",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.strategy=ddp",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stdout + result.stderr
    assert "All distributed processes registered" in result.stdout + result.stderr
    metrics = json.loads((tmp_path / "runs" / "ddp" / "metrics.json").read_text())
    assert 0 <= metrics["tuning_auroc"] <= 1
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]  # rank 1 wrote nothing
