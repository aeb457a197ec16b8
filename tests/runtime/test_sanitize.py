"""C built with ``GRAPHNN_SANITIZE=address,undefined``: AddressSanitizer reports a kernel that
writes past its buffer (a numpy array, or an arena buffer into the poisoned gap after it),
UBSan reports undefined behaviour, and compiled programs still compute the right numbers.
Each check runs in a child process with the ASan runtime preloaded (an ASan report ends it)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime import cpu

ROOT = Path(__file__).resolve().parents[2]


def _libasan() -> str | None:
    cc = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if cc is None:
        return None
    found = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


LIBASAN = _libasan()
needs_asan = pytest.mark.skipif(LIBASAN is None, reason="the C compiler has no AddressSanitizer runtime")

PRELUDE = """
import numpy as np
from runtime import cpu
def kernel(source, declaration):
    library = cpu.Library(source, declaration, CACHE)
    return library.ffi, library.function(declaration.split("(")[0].split()[-1])
"""


def run_sanitized(script: str, cache: Path, sanitize: str = "address,undefined") -> subprocess.CompletedProcess:
    env = dict(os.environ, LD_PRELOAD=LIBASAN, ASAN_OPTIONS="detect_leaks=0", GRAPHNN_SANITIZE=sanitize,
               GRAPHNN_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    code = f"CACHE = {str(cache)!r}\n" + PRELUDE + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@needs_asan
def test_write_past_an_array_is_reported(tmp_path):
    result = run_sanitized("""
        ffi, overflow = kernel("void overflow(float* x, long n) { x[n] = 1; }", "void overflow(float* x, long n);")
        x = np.zeros(10, np.float32)
        overflow(ffi.cast("float*", ffi.from_buffer(x)), 9)
        print("in bounds: fine", flush=True)
        overflow(ffi.cast("float*", ffi.from_buffer(x)), 10)
    """, tmp_path)
    assert "in bounds: fine" in result.stdout
    assert result.returncode != 0 and "AddressSanitizer: heap-buffer-overflow" in result.stderr


@needs_asan
def test_undefined_behaviour_is_reported(tmp_path):
    result = run_sanitized("""
        ffi, increment = kernel("int increment(int x) { return x + 1; }", "int increment(int x);")
        increment(2**31 - 1)
    """, tmp_path)
    assert "runtime error: signed integer overflow" in result.stderr


@needs_asan
def test_arena_buffers_are_separated_by_poisoned_gaps(tmp_path):
    """A compiled program's arena under ASan: its outputs match the numpy backend, the element after
    each arena buffer is poisoned, and a kernel writing one element past a buffer is reported."""
    result = run_sanitized("""
        import ctypes
        import graphnn as gn
        from graphnn import nn
        from graphnn.ir import evaluate_dim
        rng = np.random.default_rng(0)
        x = rng.standard_normal((6, 5)).astype(np.float32)
        gn.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3), nn.LogSoftmax(1))
        native = gn.compile(model, backend="c")
        np.testing.assert_allclose(native(x), gn.compile(model, backend="numpy")(x), rtol=1e-5, atol=1e-6)
        binding = next(iter(native.executables.values())).bindings["forward"]
        poisoned = ctypes.CDLL(None).__asan_address_is_poisoned
        base = binding.arena.ctypes.data
        ends = []
        for name, offset in binding.memory.offsets.items():
            spec = binding.plan.buffers[name]
            start = 4 * evaluate_dim(offset, 6)
            end = start + 4 * evaluate_dim(spec.size, 6) * (2 if spec.dtype == "i64" else 1)
            assert not poisoned(ctypes.c_void_p(base + start)) and not poisoned(ctypes.c_void_p(base + end - 1))
            assert poisoned(ctypes.c_void_p(base + end)), name
            ends.append(end)
        print(len(ends), "arena buffers guarded", flush=True)
        ffi, store = kernel("void store(float* p) { *p = 1; }", "void store(float* p);")
        store(ffi.cast("float*", base + min(ends)))
    """, tmp_path, sanitize="address")  # UBSan instrumentation would double the compile time
    assert "arena buffers guarded" in result.stdout, result.stderr[-3000:]
    assert int(result.stdout.split()[0]) > 1
    assert result.returncode != 0 and "AddressSanitizer: use-after-poison" in result.stderr


def test_guarded_layout_keeps_buffers_apart():
    """spread_memory: every arena buffer at its own aligned place with a gap after it, for any batch."""
    import graphnn as gn
    from graphnn import nn
    from graphnn.executable import GUARD, spread_memory
    from graphnn.ir import evaluate_dim
    from graphnn.passes.fuse import build_plan
    from graphnn.passes.simplify import simplify

    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))  # sizes 8 and 8*B
    plan = build_plan(simplify(gn.trace(model, __import__("numpy").ones((4, 5), "float32"))), {})
    memory = spread_memory(plan)
    for batch in (1, 7, 64):
        spans = sorted((evaluate_dim(o, batch), evaluate_dim(o, batch) + evaluate_dim(plan.buffers[n].size, batch))
                       for n, o in memory.offsets.items())
        assert len(spans) > 1 and all(start % 16 == 0 for start, _ in spans)
        assert all(end + GUARD <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
        assert spans[-1][1] + GUARD <= evaluate_dim(memory.size, batch)


def test_address_sanitizer_without_its_runtime_is_a_clear_error(monkeypatch, tmp_path):
    if cpu._asan() is not None:
        pytest.skip("this process has the ASan runtime loaded")
    monkeypatch.setenv("GRAPHNN_SANITIZE", "address")
    with pytest.raises(cpu.CompileError, match="LD_PRELOAD=.*libasan"):
        cpu.Library("int answer(void) { return 1; }", "int answer(void);", tmp_path)
