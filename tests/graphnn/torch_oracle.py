"""graphnn against torch on the same inputs: ``check`` runs one function with each library and
compares what comes back (values, dtype, shape, repr with its grad_fn, named tuples, Python
scalars) or, when torch raises, that graphnn raises the same type of error."""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

import graphnn as gn


# -- the same model in both libraries -----------------------------------------------------------
def pair(build, seed: int = 0, modules: bool = True):
    """``build`` run with torch and with graphnn, graphnn's model holding torch's initial weights:
    ``build`` gets ``torch.nn`` and ``graphnn.nn`` (``modules``), or the libraries themselves."""
    torch.manual_seed(seed)
    theirs = build(torch.nn if modules else torch)
    ours = build(gn.nn if modules else gn)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


# -- inputs built alike in both libraries -----------------------------------------------------
class In:
    """A tensor input: ``data`` as ``dtype`` (a name; float data defaults to float32), made
    with ``from_numpy`` in each library, requiring grad when ``grad``."""

    def __init__(self, data, dtype: str | None = None, grad: bool = False) -> None:
        self.data, self.dtype, self.grad = data, dtype, grad

    def build(self, lib):
        array = np.array(self.data)
        if self.dtype is not None:
            array = array.astype(self.dtype)
        elif array.dtype.kind == "f":
            array = array.astype(np.float32)
        t = lib.from_numpy(array)
        return t.requires_grad_() if self.grad else t

    def __repr__(self) -> str:
        return f"In({self.data!r}, {self.dtype!r}, grad={self.grad})"


def build(value, lib):
    """``value`` for ``lib``: In built, arrays copied (each library gets its own), the rest as is."""
    if isinstance(value, In):
        return value.build(lib)
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def run(fn, lib, inputs):
    """(result, None) or (None, exception) of ``fn`` on ``inputs`` built for ``lib``."""
    args = [build(v, lib) for v in inputs]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args), None
    except Exception as error:  # noqa: BLE001 - the error is what is compared
        return None, error


def check(g_fn, t_fn, *inputs) -> None:
    """Run ``g_fn`` with graphnn and ``t_fn`` with torch on the same inputs and compare."""
    t_out, t_err = run(t_fn, torch, inputs)
    g_out, g_err = run(g_fn, gn, inputs)
    if t_err is not None:
        assert g_err is not None, f"torch raised {t_err!r}, graphnn returned {g_out!r}"
        assert isinstance(g_err, type(t_err)), \
            f"torch raised {type(t_err).__name__}({t_err}), graphnn {type(g_err).__name__}({g_err})"
        assert str(g_err), "graphnn's error has no message"
        return
    if g_err is not None:
        raise AssertionError(f"torch returned {t_out!r}, graphnn raised {g_err!r}") from g_err
    assert_same(g_out, t_out)


def _values(g: np.ndarray, t: np.ndarray, where: str) -> None:
    assert g.shape == t.shape, f"{where}: shape {g.shape} != {t.shape}"
    if t.dtype.kind == "f":
        np.testing.assert_allclose(g, t, rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=where)
    else:
        np.testing.assert_array_equal(g, t, err_msg=where)


def assert_same(g, t, where: str = "result") -> None:
    """graphnn's ``g`` is what torch's ``t`` is: same kind, dtype, shape, values and repr."""
    if isinstance(t, torch.Tensor):
        assert isinstance(g, gn.Tensor), f"{where}: torch gave a tensor, graphnn {g!r}"
        assert repr(g.dtype) == repr(t.dtype), f"{where}: dtype {g.dtype} != {t.dtype}"
        assert tuple(g.shape) == tuple(t.shape), f"{where}: shape {tuple(g.shape)} != {tuple(t.shape)}"
        assert g.requires_grad == t.requires_grad, f"{where}: requires_grad {g.requires_grad}"
        _values(g.array, t.detach().numpy(), where)
        assert repr(g) == repr(t), f"{where}: repr\n{g!r}\n!=\n{t!r}"
    elif isinstance(t, torch.Size):
        assert isinstance(g, gn.Size) and repr(g) == repr(t), f"{where}: {g!r} != {t!r}"
    elif type(t).__module__ == "torch.return_types":
        assert repr(g) == repr(t), f"{where}: repr\n{g!r}\n!=\n{t!r}"
        assert_same(tuple(g), tuple(t), where)
        assert_same((g.values, g.indices), (t.values, t.indices), where)
    elif isinstance(t, (tuple, list)):
        assert type(g) is type(t) and len(g) == len(t), f"{where}: {g!r} != {t!r}"
        for k, (a, b) in enumerate(zip(g, t)):
            assert_same(a, b, f"{where}[{k}]")
    elif isinstance(t, torch.dtype):
        assert repr(g) == repr(t), f"{where}: {g!r} != {t!r}"
    elif isinstance(t, torch.device):
        assert (repr(g), str(g)) == (repr(t), str(t)), f"{where}: {g!r} != {t!r}"
    elif isinstance(t, np.ndarray):
        assert isinstance(g, np.ndarray) and g.dtype == t.dtype, f"{where}: {g!r} != {t!r}"
        _values(g, t, where)
    elif isinstance(t, float):
        assert type(g) is float and (g == t or math.isclose(g, t, rel_tol=1e-6) or (g != g and t != t)), \
            f"{where}: {g!r} != {t!r}"
    else:
        assert type(g) is type(t) and g == t, f"{where}: {g!r} != {t!r}"
