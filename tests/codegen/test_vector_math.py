"""The transcendental functions of generated C (vectorised through glibc's libmvec where it is
there, scalar libm elsewhere) against float64 numpy: a dense sweep of float32 values across
each function's range, and the special values (signed zeros, infinities, NaN, overflow and
underflow), each result within a few float32 ulp of the exact one (counted from the float64
reference, so the float32 rounding itself takes half an ulp). Results below the smallest normal
float may flush to zero, as the vector library's do."""
from __future__ import annotations

import math

import numpy as np
import pytest

import graphnn as gn
from graphnn import nn


def erf64(x: np.ndarray, complement: bool = False) -> np.ndarray:
    return np.vectorize(math.erfc if complement else math.erf, otypes=[np.float64])(x)


# name, the graphnn expression, the float64 reference, the sweep's range, and the ulp allowed
FUNCTIONS = [
    ("exp", lambda x: x.exp(), np.exp, (-104.0, 89.0), 4),
    ("log", lambda x: x.log(), np.log, (1e-38, 3e38), 4),
    ("tanh", lambda x: x.tanh(), np.tanh, (-12.0, 12.0), 4),
    ("sigmoid", lambda x: x.sigmoid(), lambda v: 1 / (1 + np.exp(-v)), (-104.0, 30.0), 4),
    ("log1p", lambda x: x.log1p(), np.log1p, (-0.999, 1e30), 4),
    ("expm1", lambda x: x.expm1(), np.expm1, (-20.0, 88.0), 4),
    ("sin", lambda x: x.sin(), np.sin, (-100.0, 100.0), 4),
    ("cos", lambda x: x.cos(), np.cos, (-100.0, 100.0), 4),
    ("pow", lambda x: x.abs().pow(1.7), lambda v: np.abs(v) ** float(np.float32(1.7)), (-1e20, 1e20), 4),
    ("erf", lambda x: x.erf(), erf64, (-6.0, 6.0), 4),
    ("erfc", lambda x: x.erfc(), lambda v: erf64(v, True), (-6.0, 10.0), 4),
]
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, 3.4e38, -3.4e38, 1.0, -1.0],
                   np.float32)


class Apply(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


TINY = float(np.finfo(np.float32).tiny)


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in float32 units in the last place between results and the exact reference (a
    result within the smallest normal of a reference below it counts as exact: flushed)."""
    spacing = np.spacing(np.abs(want.astype(np.float32))).astype(np.float64)
    error = np.abs(got.astype(np.float64) - want)
    return np.where((np.abs(want) < TINY) & (error <= TINY), 0.0, error / np.maximum(spacing, 2.0 ** -149))


@pytest.mark.parametrize("name, fn, reference, bounds, allowed", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_generated_c_is_within_a_few_ulp_everywhere(name, fn, reference, bounds, allowed):
    low, high = bounds
    if low > 0:
        sweep = np.geomspace(low, high, 200_003)
    else:
        sweep = np.concatenate([np.linspace(low, high, 200_003), np.linspace(-1, 1, 20_001)])
    x = np.concatenate([sweep.astype(np.float32), SPECIAL]).reshape(1, -1)
    got = gn.compile(Apply(fn), backend="c")(x)[0]
    with np.errstate(all="ignore"):
        want = reference(x[0].astype(np.float64))
    finite = np.isfinite(want) & (np.abs(want) < 3.4e38)
    worst = ulps(got[finite], want[finite]).max()
    assert worst <= allowed, f"{name}: {worst:.1f} ulp at most (allowed {allowed})"
    # the special values exactly as the float32 rounding of the reference: NaN, infinities, zeros
    special = ~finite
    np.testing.assert_array_equal(np.isnan(got[special]), np.isnan(want[special]))
    same = special & ~np.isnan(want)
    with np.errstate(over="ignore"):  # (a reference beyond float32's range rounds to an infinity)
        np.testing.assert_array_equal(got[same], want[same].astype(np.float32))


def test_the_vector_library_is_linked_where_glibc_has_it():
    """Where ``-lmvec`` links (glibc's vector math library), the compiler flags say so and the
    prelude declares the SIMD variants; a library compiled with it calls the vector functions."""
    import subprocess

    from codegen import c
    from runtime import cpu

    path, _, flags = cpu.compiler()
    assert "float erff(float);" in c.PRELUDE and "#pragma omp declare simd notinbranch" in c.PRELUDE
    if cpu.LIBMVEC not in flags:
        pytest.skip("this C library has no vector math library (libmvec): the scalar calls stay")
    program = gn.compile(Apply(lambda x: nn.functional.gelu(x).exp()), backend="c")
    program(np.zeros((1, 64), np.float32))
    libraries = [lib for executable in program.executables.values() for lib in executable.libraries.values()]
    symbols = subprocess.run(["nm", "-D", str(libraries[0].path)], capture_output=True, text=True).stdout
    assert "_ZGV" in symbols and "erff" in symbols
