"""graphnn's C GEMM (codegen/c_gemm.py) called directly through cffi, against numpy in float64:
every path (packed micro-kernels with their edges, dot-product tiles for few rows, thread
splits by rows and by columns) on random shapes and layouts, and the epilogue contract (each
element of C passed to the epilogue exactly once, with its final sum)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.c import PRELUDE
from codegen.c_gemm import GEMM

HARNESS = r"""
typedef struct { float* seen; int* visits; int64_t n; } harness_context;

/* Copies each finished block out and counts how often each element was handed over. */
static void harness_epilogue(void* context, const float* c, int64_t ldc, int64_t m0, int64_t m1, int64_t n0,
                             int64_t n1) {
    harness_context* h = context;
    for (int64_t i = m0; i < m1; ++i)
        for (int64_t j = n0; j < n1; ++j) {
            h->seen[i * h->n + j] = c[(i - m0) * ldc + (j - n0)];
            h->visits[i * h->n + j] += 1;
        }
}

void harness_sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t sam, int64_t sak, const float* b,
                   int64_t sbk, int64_t sbn, float* c, int64_t ldc, int weight_rows, float* seen, int* visits) {
    harness_context h = {seen, visits, n};
    graphnn_sgemm(m, n, k, a, sam, sak, b, sbk, sbn, c, ldc, seen ? harness_epilogue : 0, &h, weight_rows);
}
"""
DECLARATIONS = ("void harness_sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t sam, int64_t sak, "
                "const float* b, int64_t sbk, int64_t sbn, float* c, int64_t ldc, int weight_rows, float* seen, "
                "int* visits);")


@pytest.fixture(scope="module", params=["default", "dot everywhere", "never dot"])
def library(request, tmp_path_factory):
    """The GEMM as generated code includes it; also built with the dot-product path forced on for
    every size, and off, so both paths see every shape."""
    from runtime.cpu import Library

    define = {"default": "",
              "dot everywhere": "#define GEMM_DOT_M 1000000\n#define GEMM_DOT_K 0\n#define GEMM_DOT_LONG_K 0\n"
                                "#define GEMM_DOT_N 1000000000\n",
              "never dot": "#define GEMM_DOT_K 1000000000\n"}
    source = define[request.param] + PRELUDE + GEMM + HARNESS
    return Library(source, DECLARATIONS, tmp_path_factory.mktemp("gemm"))


def strided(rng, rows: int, cols: int, column_major: bool, pad: int):
    """A (rows x cols) float32 matrix stored row- or column-major with ``pad`` spare elements per
    line: the view, and its strides in elements."""
    lines, length = (cols, rows) if column_major else (rows, cols)
    storage = rng.standard_normal((lines, length + pad)).astype(np.float32)
    view = storage[:, :length]
    return (view.T if column_major else view), storage, ((1, length + pad) if column_major else (length + pad, 1))


def run(library, a_info, b_info, m, n, k, weight_rows=0, epilogue=True, ldc_pad=0):
    ffi = library.ffi
    (a, a_storage, (sam, sak)), (b, b_storage, (sbk, sbn)) = a_info, b_info
    c = np.full((m, n + ldc_pad), np.nan, np.float32)
    seen = np.full((m, n), np.nan, np.float32)
    visits = np.zeros((m, n), np.int32)
    pointer = lambda array, kind="float*": ffi.cast(kind, array.ctypes.data)  # noqa: E731
    library.function("harness_sgemm")(m, n, k, pointer(a_storage), sam, sak, pointer(b_storage), sbk, sbn, pointer(c),
                                      n + ldc_pad, weight_rows, pointer(seen) if epilogue else ffi.NULL,
                                      pointer(visits, "int*") if epilogue else ffi.NULL)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    tolerance = 1e-5 * (1 + np.sqrt(k))
    np.testing.assert_allclose(c[:, :n], expected, rtol=tolerance, atol=tolerance)
    if ldc_pad:
        assert np.isnan(c[:, n:]).all(), "wrote past the end of C's rows"
    if epilogue:
        np.testing.assert_array_equal(visits, 1)  # every element handed over exactly once
        np.testing.assert_array_equal(seen, c[:, :n])  # with its final sum


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 130), n=st.integers(1, 90), k=st.integers(1, 600), a_columns=st.booleans(),
       b_columns=st.booleans(), pads=st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2)),
       weight_rows=st.booleans(), seed=st.integers(0, 2**16))
def test_gemm_matches_float64_products_on_random_shapes_and_layouts(library, m, n, k, a_columns, b_columns, pads,
                                                                     weight_rows, seed):
    rng = np.random.default_rng(seed)
    run(library, strided(rng, m, k, a_columns, pads[0]), strided(rng, k, n, b_columns, pads[1]), m, n, k,
        int(weight_rows), ldc_pad=pads[2])


@pytest.mark.parametrize("m, n, k", [(16, 300, 784), (32, 100, 300), (17, 33, 17), (1, 1, 1), (4, 5, 15),
                                     (64, 300, 784), (300, 784, 64), (97, 70, 257)])
def test_gemm_on_the_mlp_shapes_and_tile_edges(library, m, n, k):
    """A Linear layer's forward (B stored transposed), weight gradient (A column-major) and
    input gradient (both row-major), at the MLP's sizes and at odd ones around the tiles."""
    rng = np.random.default_rng(m * n + k)
    run(library, strided(rng, m, k, False, 0), strided(rng, k, n, True, 0), m, n, k)
    run(library, strided(rng, m, k, True, 0), strided(rng, k, n, False, 0), m, n, k, weight_rows=1)
    run(library, strided(rng, m, k, False, 1), strided(rng, k, n, False, 2), m, n, k, epilogue=False)


@pytest.mark.parametrize("o, positions, depth", [(32, 1100, 9), (16, 1037, 25), (64, 530, 288), (8, 1500, 3),
                                                  (33, 513, 17)])
def test_gemm_on_convolution_shapes(library, o, positions, depth):
    """A channels-first convolution's products: the forward W (O x CKK) @ P^T (a transposed B
    with columns as short as 9 or 25, past several GEMM_NC column blocks), the weight gradient
    G (O x positions) @ P (a row-major B whose last sliver is partial) and the patches' gradient
    G^T @ W (a column-major A)."""
    rng = np.random.default_rng(o * positions + depth)
    run(library, strided(rng, o, depth, False, 0), strided(rng, depth, positions, True, 1), o, positions, depth)
    run(library, strided(rng, o, positions, False, 0), strided(rng, positions, depth, False, 0), o, depth, positions,
        weight_rows=1)
    run(library, strided(rng, positions, o, True, 0), strided(rng, o, depth, False, 0), positions, depth, o)


def test_sums16_lane_order_is_what_the_generator_says():
    """The lane order that _sums16 derives by simulating its stages (the compiled tiles' results
    are checked above) is a permutation: the interleaving stages amount to a bit reversal."""
    from codegen.c_gemm import _sums16

    _, lanes = _sums16()
    assert sorted(lanes) == list(range(16))
    assert lanes == [int(f"{q:04b}"[::-1], 2) for q in range(16)]  # the stages interleave: bit reversal
