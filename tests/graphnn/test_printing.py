"""graphnn.printing prints tensors exactly as torch does: every case compares with ``repr``."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from graphnn.printing import format_tensor, get_printoptions, set_printoptions, tensor_repr

NUMPY = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "int32": np.int32, "bool": np.bool_}
nan, inf = float("nan"), float("inf")


def torch_tensor(array: np.ndarray, dtype_name: str, requires_grad: bool = False) -> torch.Tensor:
    """The torch twin of a numpy array, with the named dtype."""
    return torch.tensor(array, dtype=getattr(torch, dtype_name), requires_grad=requires_grad)


def assert_prints_like_torch(array, dtype_name: str) -> None:
    array = np.asarray(array, NUMPY[dtype_name])
    assert format_tensor(array, dtype_name) == repr(torch_tensor(array, dtype_name))


@pytest.fixture
def restore_options():
    """Both libraries' print options go back to the defaults after the test."""
    try:
        yield
    finally:
        torch.set_printoptions(profile="default")
        set_printoptions(profile="default")


rng = np.random.default_rng(0)
CASES = {
    "0d_float": (3.25, "float32"),
    "0d_int_valued": (3.0, "float32"),
    "0d_int": (-7, "int64"),
    "0d_bool": (True, "bool"),
    "0d_nan": (nan, "float32"),
    "0d_neg_zero": (-0.0, "float32"),
    "0d_float64": (1e-7, "float64"),
    "1d": ([1.5, -2.25, 3.125], "float32"),
    "1d_int_valued": ([1.0, 2.0], "float32"),
    "1d_ints_neg": ([-3, 10, 0, 123], "int64"),
    "1d_large_int": ([2**40, -1, 5], "int64"),
    "1d_int32": ([1, -2, 300], "int32"),
    "1d_bool": ([True, False, True], "bool"),
    "1d_bool_true": ([True, True], "bool"),
    "1d_sci_small": ([1e-5, 1e3], "float32"),
    "1d_sci_big": ([1.0, 1e9], "float32"),
    "1d_sci_ratio": ([0.01, 20.0], "float32"),
    "1d_sci_int_valued": ([1.0, 1e9, 3.0], "float32"),
    "1d_nonfinite": ([nan, inf, -inf, 1.5], "float32"),
    "1d_nonfinite_int": ([nan, 1.0, -inf, 20.0], "float32"),
    "1d_nonfinite_sci": ([nan, 1e-6, -inf, 20.0], "float32"),
    "1d_only_nonfinite": ([nan, inf, -inf], "float32"),
    "1d_neg_zero": ([0.0, -0.0], "float32"),
    "1d_neg_zero_mixed": ([-0.0, 1.5, -2.0], "float32"),
    "1d_zeros": ([0.0, 0.0, 0.0], "float32"),
    "1d_float64": ([0.1, 0.2, 0.3], "float64"),
    "1d_float64_int_valued": ([1.0, -2.0], "float64"),
    "1d_rounding": ([0.00005, 0.00015, 2.5], "float32"),
    "1d_wrap_30": (rng.standard_normal(30), "float32"),
    "1d_wrap_ints": (np.arange(-40, 40) * 37, "int64"),
    "1d_wrap_sci": (rng.standard_normal(30) * 10.0 ** rng.integers(-6, 6, 30), "float32"),
    "1d_wrap_float64_grad": (rng.standard_normal(25), "float64"),
    "2d": (rng.standard_normal((3, 4)), "float32"),
    "2d_ints": (rng.integers(-1000, 1000, (4, 5)), "int32"),
    "2d_bool": (rng.integers(0, 2, (3, 3)).astype(bool), "bool"),
    "2d_wide": (rng.standard_normal((3, 20)), "float32"),
    "3d": (rng.standard_normal((2, 3, 4)), "float32"),
    "3d_float64": (rng.standard_normal((2, 2, 2)), "float64"),
    "4d": (rng.integers(0, 10, (2, 2, 2, 3)).astype(float), "float32"),
    "4d_ints": (rng.integers(-5, 5, (2, 3, 2, 2)), "int64"),
    "empty_1d": (np.zeros(0), "float32"),
    "empty_1d_int": (np.zeros(0), "int64"),
    "empty_1d_bool": (np.zeros(0), "bool"),
    "empty_1d_float64": (np.zeros(0), "float64"),
    "empty_2d": (np.zeros((0, 3)), "float32"),
    "empty_2d_int": (np.zeros((0, 3)), "int64"),
    "empty_3d": (np.zeros((2, 0, 3)), "float32"),
    "empty_3d_int32": (np.zeros((2, 0, 3)), "int32"),
    "summarize_1d": (np.arange(2000) * 0.5, "float32"),
    "summarize_1d_ints": (np.arange(2000), "int64"),
    "summarize_2d": (rng.standard_normal((40, 40)), "float32"),
    "summarize_2d_wide": (rng.standard_normal((3, 500)), "float32"),
    "summarize_3d": (rng.standard_normal((20, 10, 10)), "float64"),
    "summarize_hidden_extreme": (np.r_[1.0, 2.0, 3.0, np.full(1000, 1e-9), 4.0, 5.0, 6.0], "float32"),
    "summarize_bool": (np.arange(1500) % 3 == 0, "bool"),
    "no_summarize_at_threshold": (np.arange(1000), "int64"),
    "wide_int_valued": (np.arange(25) * 1e6, "float32"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name):
    values, dtype_name = CASES[name]
    assert_prints_like_torch(values, dtype_name)


@pytest.mark.parametrize("name", ["0d_float", "1d", "1d_wrap_30", "1d_wrap_float64_grad", "2d", "3d",
                                  "1d_nonfinite", "summarize_2d", "empty_2d", "0d_float64"])
def test_grad_suffixes(name):
    values, dtype_name = CASES[name]
    array = np.asarray(values, NUMPY[dtype_name])
    leaf = torch_tensor(array, dtype_name, requires_grad=True)
    assert format_tensor(array, dtype_name, requires_grad=True) == repr(leaf)
    assert format_tensor(array, dtype_name, grad_fn="MulBackward0") == repr(leaf * 1)
    assert format_tensor(array, dtype_name, requires_grad=True, grad_fn="MulBackward0") == repr(leaf * 1)


@pytest.mark.parametrize("length", range(6, 12))
def test_suffixes_move_to_a_new_line_near_the_line_width(length):
    array = np.arange(length, dtype=np.float64) + 0.5  # the row ends near column 80
    leaf = torch_tensor(array, "float64", requires_grad=True)
    assert format_tensor(array, "float64", requires_grad=True) == repr(leaf)
    assert format_tensor(array, "float64", grad_fn="MulBackward0") == repr(leaf * 1)


@pytest.mark.parametrize("name", ["1d", "1d_float64", "2d_ints", "empty_1d", "empty_1d_float64",
                                  "empty_2d_int"])
def test_default_dtype_float64(name):
    values, dtype_name = CASES[name]
    array = np.asarray(values, NUMPY[dtype_name])
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        expected = repr(torch_tensor(array, dtype_name))
    finally:
        torch.set_default_dtype(previous)
    assert format_tensor(array, dtype_name, default_dtype_name="float64") == expected


OPTIONS = [
    dict(precision=2),
    dict(precision=0),
    dict(precision=8),
    dict(sci_mode=False),
    dict(sci_mode=True),
    dict(threshold=5),
    dict(threshold=5, edgeitems=1),
    dict(edgeitems=1),
    dict(threshold=5, edgeitems=0),
    dict(edgeitems=0),
    dict(linewidth=40),
    dict(linewidth=5),
    dict(profile="short"),
    dict(profile="full"),
    dict(profile="short", precision=6),
]
OPTION_CASES = ["0d_float", "1d", "1d_int_valued", "1d_ints_neg", "1d_sci_small", "1d_nonfinite", "1d_zeros",
                "1d_wrap_30", "2d", "2d_bool", "3d", "4d", "empty_2d", "summarize_1d", "summarize_2d",
                "summarize_2d_wide", "summarize_3d", "wide_int_valued"]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("name", OPTION_CASES)
def test_printoptions(restore_options, options, name):
    torch.set_printoptions(**options)
    set_printoptions(**options)
    assert get_printoptions() == torch._tensor_str.get_printoptions()
    values, dtype_name = CASES[name]
    array = np.asarray(values, NUMPY[dtype_name])
    assert format_tensor(array, dtype_name) == repr(torch_tensor(array, dtype_name))
    if dtype_name.startswith("float"):
        leaf = torch_tensor(array, dtype_name, requires_grad=True)
        assert format_tensor(array, dtype_name, requires_grad=True) == repr(leaf)


def test_get_printoptions_roundtrip(restore_options):
    assert get_printoptions() == torch._tensor_str.get_printoptions()
    set_printoptions(precision=3, linewidth=60, sci_mode=True)
    saved = get_printoptions()
    set_printoptions(profile="full")
    assert get_printoptions()["threshold"] == float("inf") and get_printoptions()["sci_mode"] is None
    set_printoptions(**saved)
    assert get_printoptions() == dict(precision=3, threshold=1000, edgeitems=3, linewidth=60, sci_mode=True)
    set_printoptions(profile="default")
    assert get_printoptions() == dict(precision=4, threshold=1000, edgeitems=3, linewidth=80, sci_mode=None)


def test_tensor_repr_adapter():
    array = np.array([[1.5, 2.0], [3.0, -4.25]], np.float32)
    node = types.SimpleNamespace(name=lambda: "AddmmBackward0")
    fake = types.SimpleNamespace(array=array, dtype=types.SimpleNamespace(name="float32"), requires_grad=True,
                                 grad_fn=None)
    expected_leaf = repr(torch.tensor(array, requires_grad=True))
    assert tensor_repr(fake) == expected_leaf
    frozen = types.SimpleNamespace(**{**vars(fake), "requires_grad": False})
    assert tensor_repr(frozen, requires_grad=True) == expected_leaf
    assert tensor_repr(fake, requires_grad=False) == repr(torch.tensor(array))
    computed = types.SimpleNamespace(**{**vars(fake), "grad_fn": node})
    assert tensor_repr(computed) == repr(torch.tensor(array, requires_grad=True) * 1).replace("Mul", "Addmm")


# --- randomized -------------------------------------------------------------------------------------

float_elements = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.floats(-10, 10, width=32),
    st.integers(-1000, 1000).map(float),
    st.sampled_from([0.0, -0.0, nan, inf, -inf, 1e-5, 1e9, 0.5]),
)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12)


@st.composite
def arrays(draw):
    dtype_name = draw(st.sampled_from(["float32", "float32", "float64", "int64", "int32", "bool"]))
    shape = draw(shapes)
    if dtype_name.startswith("float"):
        elements = float_elements
    elif dtype_name == "bool":
        elements = st.booleans()
    else:
        bits = 31 if dtype_name == "int32" else 63
        elements = st.one_of(st.integers(-50, 50), st.integers(-(2**bits), 2**bits - 1))
    array = draw(hnp.arrays(NUMPY[dtype_name], shape, elements=elements))
    return array, dtype_name


@settings(max_examples=200, deadline=None)
@given(arrays())
def test_random_arrays(case):
    array, dtype_name = case
    assert format_tensor(array, dtype_name) == repr(torch_tensor(array, dtype_name))


@settings(max_examples=200, deadline=None)
@given(arrays(), st.fixed_dictionaries({}, optional=dict(
    precision=st.integers(0, 8), threshold=st.integers(0, 60), edgeitems=st.integers(0, 4),
    linewidth=st.integers(1, 120), sci_mode=st.sampled_from([None, True, False]))), st.booleans())
def test_random_arrays_and_options(case, options, requires_grad):
    array, dtype_name = case
    requires_grad = requires_grad and dtype_name.startswith("float")
    try:
        torch.set_printoptions(**options)
        set_printoptions(**options)
        expected = repr(torch_tensor(array, dtype_name, requires_grad))
        assert format_tensor(array, dtype_name, requires_grad=requires_grad) == expected
    finally:
        torch.set_printoptions(profile="default")
        set_printoptions(profile="default")
