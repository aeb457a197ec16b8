"""Shared test helpers: torch as the oracle, the book's data, weight transfer."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    # Triton's interpreter runs the triton backend's kernels on the CPU; it must be selected
    # before triton is first imported (tests that compile for a GPU run in a subprocess)
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(1)


def pytest_addoption(parser):
    group = parser.getgroup("fuzz", "the differential fuzzer against torch (tests/fuzz)")
    group.addoption("--fuzz-cases", type=int, default=None,
                    help="run this many random cases on the C backend and on the numpy reference instead of "
                         "the small default sample; also $GRAPHNN_FUZZ_CASES")
    group.addoption("--fuzz-start", type=int, default=None, help="the first seed of the fuzz cases (default 0)")


T_C = np.array([0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0], np.float32).reshape(-1, 1)
T_U = np.array([35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4], np.float32).reshape(-1, 1)
TRAIN_INDICES = [2, 7, 8, 9, 10, 0, 1, 4, 6]
VAL_INDICES = [3, 5]


def copy_torch_weights(gn_model, torch_model) -> None:
    """Load torch's state_dict (as numpy) into the graphnn model."""
    state = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    gn_model.load_state_dict(state)


def assert_state_close(gn_model, torch_model, rtol=1e-4, atol=1e-6, kink_fraction=0.0) -> None:
    """Every parameter and buffer agrees elementwise to ``rtol``, and to ``rtol`` times the
    tensor's largest magnitude for elements near zero (which have no relative scale of their own).

    ``kink_fraction`` allows that fraction of a tensor's elements to differ by up to 100x that:
    in a long ReLU run, float32 rounding (which differs between any two implementations) now and
    then puts one pre-activation on the other side of zero, and that step's gradient for the
    weights feeding that unit then differs by a whole term (seen: one row of 100 in 200 steps).
    """
    ours = gn_model.state_dict()
    theirs = torch_model.state_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        expected = theirs[key].detach().numpy()
        got = np.asarray(ours[key])
        scale = float(np.abs(expected).max()) if expected.size and expected.dtype.kind == "f" else 0.0
        tolerance = np.maximum(atol, rtol * scale) + rtol * np.abs(expected)
        off = np.abs(got - expected) > tolerance
        if kink_fraction and off.mean() <= kink_fraction:
            np.testing.assert_allclose(got, expected, rtol=100 * rtol, atol=100 * max(atol, rtol * scale), err_msg=key)
            continue
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=max(atol, rtol * scale), err_msg=key)


@pytest.fixture
def thermometer():
    return T_U * 0.1, T_C


BACKENDS = ["numpy", "c", "triton", "plan"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each backend that must pass the same tests: the numpy reference, generated C, generated
    Triton (in the interpreter when there is no GPU) and the plan interpreter."""
    return request.param


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Compiled libraries go to a temporary cache, not the user's."""
    import os

    os.environ["GRAPHNN_CACHE_DIR"] = str(tmp_path_factory.mktemp("graphnn-cache"))
