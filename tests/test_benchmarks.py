"""The benchmarks' own measuring code runs (their numbers are read by people, not asserted)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peak  # noqa: E402


def test_fma_peak_runs_its_compiled_loop_on_each_thread_count():
    one = peak.fma_peak(1, rounds=20_000)
    two = peak.fma_peak(2, rounds=20_000)
    # 12 x 16 lanes x 2 FLOPs x 20,000 rounds in well under a second on any machine that runs the suite
    assert one > 0.5 and two > 0.5


def test_sgemm_rate_measures_the_product():
    assert peak.sgemm_rate(8, 8, 8, repeats=3) > 0


def test_data_loader_benchmark_times_each_loader_in_both_orders():
    import data_loader

    results = data_loader.measure(samples=640, features=8, batch=64, rounds=1)
    assert set(results) == {False, True}
    for row in results.values():
        assert set(row) == {"graphnn", "torch", "numpy copy"} and all(t > 0 for t in row.values())


def test_eager_call_benchmark_times_every_contender():
    import eager_call

    row = eager_call.measure(batch=2, rounds=1, calls=3)
    assert set(row) == {"compiled(array)", "model(tensor)", "no_grad model(tensor)", "torch no_grad"}
    assert all(t > 0 for t in row.values())


def test_loop_benchmark_times_the_literal_loop_and_the_compiled_step():
    import loop

    row = loop.measure("thermometer", rounds=1, iterations=3)
    assert set(row) == {"graphnn loop", "torch loop", "graphnn step"} and all(t > 0 for t in row.values())


@pytest.mark.parametrize("case", ["mlp_silu", "mlp_tanh", "lenet", "mlp_1024"])
def test_train_step_benchmark_times_graphnn_and_torch_on_each_model(case):
    import train_step

    row = train_step.measure(case, batch=3, rounds=1, with_compile=False, with_reference=False)
    assert {"graphnn", "torch eager", "GFLOP/s"} <= set(row) and all(t > 0 for t in row.values())
