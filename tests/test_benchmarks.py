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


def test_peak_keeps_the_best_of_each_figure_on_one_thread_and_every_core():
    result = peak.measure(measurements=2, rounds=20_000, shapes=[(8, 8, 8)], repeats=3)
    counts = sorted({1, peak.cores()})
    assert sorted(result["fma"]) == counts and sorted(result["sgemm"]) == counts
    assert all(rate > 0 for rate in result["fma"].values())
    assert all(rates["8 x 8 x 8"] > 0 for rates in result["sgemm"].values())
    assert peak.ceiling(result) >= max(result["fma"].values()) or peak.cores() > 1
    assert peak.report(result)[0].startswith("float32 multiply-add peak")


def test_peak_says_when_two_threads_do_not_scale():
    sgemm = {1: {"8 x 8 x 8": 90.0}, 2: {"8 x 8 x 8": 250.0}}
    shared = {"cores": 2, "fma": {1: 110.0, 2: 130.0}, "sgemm": sgemm}
    assert "only 1.18x" in peak.scaling_note(shared) and any(line.startswith("NOTE") for line in peak.report(shared))
    assert peak.ceiling(shared) == 250.0  # a product that ran faster than the peak measured on a busy core
    assert peak.scaling_note({"cores": 2, "fma": {1: 110.0, 2: 215.0}, "sgemm": sgemm}) is None


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

    row = loop.measure("thermometer", rounds=1, iterations=3, pinned=True)
    assert set(row) == {"graphnn loop", "torch loop", "graphnn step"} and all(t > 0 for t in row.values())


@pytest.mark.parametrize("case", ["mlp_silu", "mlp_tanh", "lenet", "mlp_1024", "lstm"])
def test_train_step_benchmark_times_graphnn_and_torch_on_each_model(case):
    import train_step

    row = train_step.measure(case, batch=3, rounds=1, with_compile=False, with_reference=False, isolated=False)
    assert {"graphnn", "torch eager", "GFLOP/s"} <= set(row) and all(t > 0 for t in row.values())


def test_train_step_benchmark_times_each_framework_in_its_own_processes():
    import train_step

    rows = train_step.measure_case("thermometer", [2, 3], rounds=1, with_compile=False, with_reference=False,
                                   budget=0.01)
    for row in rows.values():
        assert {"graphnn", "torch eager", "GFLOP/s"} <= set(row) and all(t > 0 for t in row.values())


def test_busy_benchmark_times_steps_alone_and_beside_a_spinning_process():
    import busy

    results = busy.measure(cases=[("mlp_silu", 4)], rounds=1, seconds=0.05, contenders=("graphnn", "graphnn openmp"))
    row = results["mlp_silu", 4]
    assert set(row) == {"graphnn", "graphnn openmp"}
    assert all(times["alone"] > 0 and times["busy"] > 0 for times in row.values())
