import json
import subprocess
import sys

import pytest

from cxr.models import create_model
from cxr.speed import forward_gflop, matmul_gflops
from cxr.training.benchmark import train_throughput


def cxr_cnn_flop(size: int, width: int = 16, depth: int = 4, classes: int = 2) -> int:
    """cxr_cnn's forward FLOPs by hand: two 3x3 convs per stage (2 FLOP per multiply-add), the
    side halving after each stage, then the linear head; BN, ReLU and pooling are not counted."""
    flop, cin = 0, 1
    for i in range(depth):
        cout, side = width * 2**i, size // 2**i
        flop += 2 * 9 * (cin * cout + cout * cout) * side * side
        cin = cout
    return flop + 2 * cin * classes


@pytest.mark.parametrize("size", [32, 128])
def test_forward_flops_match_the_hand_count(size):
    model = create_model("cxr_cnn")
    assert forward_gflop(model, size) == pytest.approx(cxr_cnn_flop(size) / 1e9, rel=1e-9)


def test_every_variant_is_measured_with_its_flops():
    rows = train_throughput("cxr_cnn", batch=2, steps=1, rounds=1, size=32)
    assert {(r.precision, r.memory_format, r.batchnorm, r.frozen_stages) for r in rows} == {
        ("fp32", "nchw", "batch", 0),
        ("fp32", "channels_last", "batch", 0),
        ("bf16", "nchw", "batch", 0),
        ("bf16", "channels_last", "batch", 0),
        ("fp32", "channels_last", "frozen", 0),
    }  # cxr_cnn has no stage map: no frozen-stages variant
    for r in rows:  # forward + backward taken as 3 forwards; the rate is images/s times that
        assert r.gflop_per_image == pytest.approx(3 * cxr_cnn_flop(32) / 1e9, abs=5e-4)
        assert r.achieved_gflops == pytest.approx(
            r.images_per_s * r.gflop_per_image, rel=0.02, abs=0.1
        )


def test_the_documented_form_times_each_model_at_its_own_size(tmp_path):
    """`cxr benchmark train MODEL` with no --size (as the docs give it) uses the size on the
    model's card; only the amount of work is made small here."""
    out = tmp_path / "train.json"
    result = subprocess.run(
        [sys.executable, "-m", "cxr", "benchmark", "train", "cxr_cnn", "--steps", "1",
         "--batch", "2", "--out", out],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())["results"]
    assert {r["size"] for r in rows} == {create_model("cxr_cnn").card.preprocessing.size} == {128}


def test_frozen_stages_skip_their_backward_flops():
    """Lite0 has a stage map: the demo's recipe (stem and first 3 stages frozen) in fp32 and in
    bf16, whose steps do no backward through them (2x their forward FLOPs, counted per module)."""
    rows = train_throughput("efficientnet_lite0", 2, 1, 1, size=64)
    variants = {(r.precision, r.memory_format, r.batchnorm, r.frozen_stages) for r in rows}
    assert {
        ("fp32", "channels_last", "batch", 3),
        ("bf16", "channels_last", "batch", 3),
    } <= variants
    assert {r.model for r in rows} == {"efficientnet_lite0"}
    rows = {r.frozen_stages: r for r in rows if r.precision == "fp32"}
    full = forward_gflop(create_model("efficientnet_lite0"), 64)
    assert rows[0].gflop_per_image == pytest.approx(3 * full, abs=5e-4)
    skipped = 3 * full - rows[3].gflop_per_image
    assert 0.2 * full < skipped / 2 < 0.4 * full  # stem + blocks 0-2: 28 % of Lite0's forward


def test_matmul_yardstick_counts_2n3_flops_per_product(monkeypatch):
    """The FLOP formula, on a clock that advances exactly one second per reading: no timing."""
    import itertools

    import cxr.speed

    ticks = itertools.count()
    monkeypatch.setattr(cxr.speed.time, "perf_counter", lambda: float(next(ticks)))
    n, repeats = 512, 20  # 5.4 GFLOP per "second"
    peak = matmul_gflops(n=n, repeats=repeats)
    assert peak["fp32"] == round(2 * n**3 * repeats / 1e9, 1)
    assert peak["bf16"] == round(2 * n**3 * repeats / 1e9, 1)
