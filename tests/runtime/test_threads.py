"""The C runtime's threads (runtime/threads.py): libgomp's spinning bounded unless the user set
it, the measured choice between one thread and OpenMP's team, and kernels that give the same
numbers bit for bit on any number of threads."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphnn as gn
from graphnn import nn, optim
from runtime import threads

ROOT = Path(__file__).resolve().parents[2]

LOAD = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from runtime.cpu import Library
    source = "int team(void) { int n = 0;\\n#pragma omp parallel reduction(+:n)\\nn += 1;\\nreturn n; }"
    Library(source, "int team(void);", Path(sys.argv[1])).function("team")()
    print(os.environ.get("GOMP_SPINCOUNT", "unset"))
""")


def libgomp_settings(cache: Path, **env) -> tuple[str, str]:
    """(GOMP_SPINCOUNT as libgomp read it when a generated library loaded it, the variable in the
    process environment after the load), in a fresh process with ``env`` (None: unset)."""
    ours = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "GRAPHNN_THREADS")
    environment = {k: v for k, v in os.environ.items() if k not in ours}
    environment.update(PYTHONPATH=str(ROOT), OMP_DISPLAY_ENV="verbose", **env)
    out = subprocess.run([sys.executable, "-c", LOAD, str(cache)], capture_output=True, text=True, env=environment,
                         check=True)
    read = [line.split("=", 1)[1].strip().strip("'") for line in out.stderr.splitlines() if "GOMP_SPINCOUNT" in line]
    return read[0], out.stdout.strip()


def test_spinning_is_bounded_when_libgomp_loads_and_the_environment_is_left_as_it_was(tmp_path):
    assert libgomp_settings(tmp_path) == (str(threads.SPIN_COUNT), "unset")


@pytest.mark.parametrize("env, spin", [({"GOMP_SPINCOUNT": "1234"}, "1234"), ({"OMP_WAIT_POLICY": "passive"}, "0"),
                                       ({"GRAPHNN_THREADS": "openmp"}, "300000")])
def test_the_users_openmp_settings_are_kept(tmp_path, env, spin):
    assert libgomp_settings(tmp_path, **env)[0] == spin


def test_graphnn_threads_names_a_mode_or_a_count(monkeypatch):
    for value, expected in [("", "auto"), ("auto", "auto"), ("OpenMP", "openmp"), ("3", 3)]:
        monkeypatch.setenv("GRAPHNN_THREADS", value)
        assert threads.mode() == expected
    for value in ["0", "two", "-1"]:
        monkeypatch.setenv("GRAPHNN_THREADS", value)
        with pytest.raises(ValueError, match="GRAPHNN_THREADS=.*expected auto"):
            threads.mode()


class FakeLibrary:
    """A library whose calls take ``seconds[team]`` on a fake clock (team 0: OpenMP's, 1: one
    thread) and start a parallel region when ``parallel``."""

    def __init__(self, monkeypatch, seconds: dict, parallel: bool = True) -> None:
        self.now, self.seconds, self.parallel = 0.0, dict(seconds), parallel
        self.team, self.regions, self.sets = 0, 0, 0
        self.spent = {0: 0.0, 1: 0.0}
        monkeypatch.setattr(threads, "perf_counter", lambda: self.now)

    def set_threads(self, team: int) -> None:
        self.team, self.sets = team, self.sets + 1

    def parallel_regions(self) -> int:
        return self.regions

    def __call__(self, batch, table) -> None:
        self.now += self.seconds[self.team]
        self.spent[self.team] += self.seconds[self.team]
        self.regions += self.parallel

    def run(self, choice: threads.ThreadChoice, until: float) -> None:
        while self.now < until:
            choice(self, 64, None)


def test_a_busy_core_moves_the_calls_to_one_thread_and_back(monkeypatch):
    library = FakeLibrary(monkeypatch, {0: 0.5e-3, 1: 0.9e-3})
    choice = threads.ThreadChoice(library.set_threads, library.parallel_regions)
    library.run(choice, 2.0)
    assert choice.sizes[64].threads == 0  # two threads pay: kept, one thread only tried
    library.seconds[0] = 15e-3  # another process takes a core: the team waits for its thread
    start = library.now
    library.run(choice, start + 0.2)
    assert choice.sizes[64].threads == 1
    library.spent = {0: 0.0, 1: 0.0}
    library.run(choice, start + 30.0)  # the team is tried now and then, at a bounded cost
    assert choice.sizes[64].threads == 1 and 0 < library.spent[0] < 2.5 * threads.BUDGET * 30
    library.seconds[0] = 0.5e-3  # the core is free again
    start = library.now
    library.run(choice, start + threads.MAX_INTERVAL + 0.1)
    assert choice.sizes[64].threads == 0


def test_trying_one_thread_costs_at_most_the_budget(monkeypatch):
    library = FakeLibrary(monkeypatch, {0: 0.5e-3, 1: 0.9e-3})
    choice = threads.ThreadChoice(library.set_threads, library.parallel_regions)
    library.run(choice, 20.0)
    extra = library.spent[1] * (1 - 0.5 / 0.9)  # what the one-thread calls cost over the team
    assert choice.sizes[64].threads == 0 and extra < 1.1 * threads.BUDGET * 20.0


def test_calls_without_parallel_regions_are_left_alone(monkeypatch):
    library = FakeLibrary(monkeypatch, {0: 1e-5, 1: 1e-6}, parallel=False)
    choice = threads.ThreadChoice(library.set_threads, library.parallel_regions)
    library.run(choice, 1.0)
    assert choice.sizes[64] is threads.SERIAL and library.sets == 0 and library.spent[1] == 0


def test_a_step_measures_its_choice_per_batch_size(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("GRAPHNN_THREADS", raising=False)
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 10))
    train = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01), backend="c")
    rng = np.random.default_rng(0)
    for batch in (2, 40):
        for _ in range(8):
            train.step(rng.standard_normal((batch, 300)).astype(np.float32), rng.integers(0, 10, batch))
    binding = next(iter(next(iter(train.executables.values())).bindings.values()))
    sizes = binding.threads.sizes
    assert sizes[2] is threads.SERIAL  # 2 x 300 x 200: no GEMM large enough for a second thread
    assert sizes[40] is not threads.SERIAL and not sizes[40].samples  # tried both, chose one


def test_a_fixed_team_leaves_no_choice(monkeypatch):
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    library = type("Library", (), {"function": lambda self, name: (lambda *args: None)})()
    for name, value in [("GRAPHNN_THREADS", "openmp"), ("GRAPHNN_THREADS", "2"), ("OMP_NUM_THREADS", "2")]:
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            assert threads.configure(library) is None
    assert isinstance(threads.configure(library), threads.ThreadChoice)


def models():
    """Steps with GEMMs large enough for threads (split by rows and by columns; dot-product tiles
    at 19 rows), each (model, input shape): an MLP with BatchNorm (sums over the batch, softmax
    over classes), a small CNN (convolution GEMMs, pooling)."""
    return {"mlp_bn": (lambda: nn.Sequential(nn.Linear(300, 70), nn.BatchNorm1d(70), nn.ReLU(), nn.Linear(70, 10)),
                       (300,)),
            "cnn": (lambda: nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                          nn.Linear(16 * 4 * 4, 10)), (3, 8, 8))}


@pytest.mark.parametrize("name", ["mlp_bn", "cnn"])
def test_one_two_and_three_threads_give_the_same_bits(monkeypatch, name):
    """Every loop above a few elements on threads (the thresholds lowered): 4 steps (batch 67 and
    19) on 1, 2 and 3 threads end with identical losses and parameters."""
    from codegen import c, c_matmul

    monkeypatch.setattr(c, "PARALLEL_WORK", 64)
    monkeypatch.setattr(c_matmul, "ROWS_PARALLEL_WORK", 64)
    build, shape = models()[name]
    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((b, *shape)).astype(np.float32), rng.integers(0, 10, b)) for b in (67, 19, 67, 19)]
    results = []
    for team in ("1", "2", "3"):
        monkeypatch.setenv("GRAPHNN_THREADS", team)
        gn.manual_seed(0)
        model = build()
        train = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                           backend="c")
        losses = [train.step(x, y) for x, y in batches]
        results.append((losses, {k: np.asarray(v).copy() for k, v in model.state_dict().items()}))
    executable = next(iter(train.executables.values()))
    assert "num_threads(graphnn_team())" in executable.source
    assert executable.library.function("graphnn_parallel_regions")() >= 4 * 5  # every step forks, many times
    for losses, state in results[1:]:
        assert losses == results[0][0]
        for key, value in state.items():
            np.testing.assert_array_equal(value, results[0][1][key], err_msg=key)
