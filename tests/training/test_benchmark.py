from cxr.speed import matmul_gflops
from cxr.training.benchmark import train_throughput


def test_every_variant_is_measured_with_its_flops():
    rows = train_throughput("cxr_cnn", batch=2, steps=1, rounds=1, size=32)
    assert {(r.precision, r.memory_format) for r in rows} == {
        ("fp32", "nchw"),
        ("fp32", "channels_last"),
        ("bf16", "nchw"),
        ("bf16", "channels_last"),
    }
    assert all(r.images_per_s > 0 and r.gflop_per_image > 0 for r in rows)
    # cxr_cnn's first conv alone: 32*32 px * 16 ch * 9 taps * 2 FLOP, x3 for forward + backward
    assert rows[0].gflop_per_image > 32 * 32 * 16 * 9 * 2 * 3 / 1e9


def test_matmul_yardstick():
    peak = matmul_gflops(n=256, repeats=2)
    assert peak["fp32"] > 0 and peak["bf16"] > 0
