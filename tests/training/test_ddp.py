"""A real 2-process DDP fit on CPU (gloo), through the CLI as torchrun-style launches run it."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score


def test_two_process_ddp_fit_on_cpu(tmp_path, data):
    env = {**os.environ, "CXR_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxr",
            "train",
            f"data.root={data / 'chest_xray'}",
            "data.limit=96",
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
    for rank in ("GLOBAL_RANK: 0, MEMBER: 1/2", "GLOBAL_RANK: 1, MEMBER: 2/2"):
        assert rank in result.stderr  # two processes (on CPU, so gloo)
    for noise in ("error:", "Traceback", "Warning"):  # rank 1 too ends cleanly and quietly
        assert noise not in result.stdout + result.stderr, noise
    assert result.stdout.count("run folder:") == 1
    run = tmp_path / "runs" / "ddp"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]  # rank 1 wrote nothing
    # The AUROC logged during training (each rank scored half of the tuning split) is the AUROC
    # of the whole split, as the final single-process pass over it computes it, not the mean of
    # two per-rank AUROCs.
    (logged,) = list(csv.DictReader((run / "history.csv").open()))
    rows = list(csv.DictReader((run / "tuning_predictions.csv").open()))
    assert len(rows) % 2 == 0  # no sample padded onto a rank
    truth = [r["label"] == "PNEUMONIA" for r in rows]
    whole = roc_auc_score(truth, [float(r["p_PNEUMONIA"]) for r in rows])
    assert float(logged["val_auroc"]) == pytest.approx(whole, abs=1e-4)
    halves = [
        roc_auc_score(truth[k::2], [float(r["p_PNEUMONIA"]) for r in rows[k::2]]) for k in (0, 1)
    ]
    assert abs(np.mean(halves) - whole) > 1e-4  # the two would be told apart
