"""The differential fuzzer as tests: one random case per seed, trained in graphnn and in torch
(see tests/fuzz/compare.py for what is compared and why the tolerances are what they are).

``make test`` runs a small fixed sample (seeds 0.. on C and on the numpy reference);
``make fuzz`` (``pytest tests/fuzz/test_fuzz.py --fuzz-cases 300 [--fuzz-start S]``, or
$GRAPHNN_FUZZ_CASES) runs many. A failing case names its seed in its test id and message;
replay it with ``python -m tests.fuzz.run --seed N [--backend numpy]``. The session ends with
a summary: failures grouped by cause, and the error distribution against torch float32's.
"""
from __future__ import annotations

import os

import pytest

from tests.fuzz.compare import run_case
from tests.fuzz.generate import make_case

SAMPLE_C = 12       # cases in the default run, on the C backend (each compiles a C program)
SAMPLE_NUMPY = 40   # and on the numpy reference (no compiler: much cheaper)
FOUND = (51, 182)   # seeds that once failed, run by default on both: ignore_index naming a real
                    # class was summed into the loss; 1 - dampening computed in float32

RESULTS: list = []  # every case's Result, for the summary at the end of the session (conftest.py)


def _seeds(config) -> dict:
    cases = config.getoption("--fuzz-cases", None) or int(os.environ.get("GRAPHNN_FUZZ_CASES", 0) or 0)
    start = config.getoption("--fuzz-start", None) or int(os.environ.get("GRAPHNN_FUZZ_START", 0) or 0)
    if cases:
        return {"c": range(start, start + cases), "numpy": range(start, start + cases)}
    return {"c": [*range(start, start + SAMPLE_C), *FOUND], "numpy": [*range(start, start + SAMPLE_NUMPY), *FOUND]}


def pytest_generate_tests(metafunc):
    if "fuzz_case" in metafunc.fixturenames:
        pairs = [(backend, seed) for backend, seeds in _seeds(metafunc.config).items() for seed in seeds]
        metafunc.parametrize("fuzz_case", pairs, ids=[f"{backend}-seed{seed}" for backend, seed in pairs])


def test_fuzz_case(fuzz_case):
    backend, seed = fuzz_case
    result = run_case(make_case(seed), backend)
    RESULTS.append(result)
    if result.status == "skip":
        pytest.skip(result.cause)
    assert result.status in ("pass", "kink", "chaotic"), result.report()
