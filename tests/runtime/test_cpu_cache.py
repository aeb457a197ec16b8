"""The C backend's compile cache and runtime: deterministic source, one library for every
batch size, cache hits across processes, concurrent compiles, corrupt entries, clear errors."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import graphnn as gn
from graphnn import nn, optim
from runtime import cpu

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    import graphnn as gn
    from graphnn import nn, optim
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    train = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9), backend="c")
    x = np.ones((4, 6), np.float32)
    start = time.perf_counter()
    loss = train.step(x, np.array([0, 1, 2, 0]))
    elapsed = time.perf_counter() - start
    library = next(iter(train.executables.values())).library
    print(int(library.compiled), f"{elapsed:.4f}", f"{loss:.6f}", library.path)
""")


def run_script(cache: Path) -> list[str]:
    env = dict(os.environ, GRAPHNN_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


def model_and_step():
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Dropout(0.2), nn.Linear(5, 3))
    train = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9), backend="c")
    train.step(np.ones((4, 6), np.float32), np.array([0, 1, 2, 0]))
    return train


def test_same_model_gives_byte_identical_source():
    first, second = model_and_step(), model_and_step()
    a, b = (next(iter(t.executables.values())) for t in (first, second))
    assert a.source == b.source
    assert a.library.key == b.library.key


def test_batch_size_changes_reuse_one_library(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(tmp_path))
    gn.manual_seed(1)
    model = nn.Sequential(nn.Linear(7, 9), nn.Tanh(), nn.Linear(9, 4))
    twin = nn.Sequential(nn.Linear(7, 9), nn.Tanh(), nn.Linear(9, 4))
    twin.load_state_dict(model.state_dict())
    native = gn.compile(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.05, momentum=0.9), backend="c")
    reference = gn.compile(twin, nn.MSELoss(), optim.SGD(twin.parameters(), lr=0.05, momentum=0.9), backend="numpy")
    rng = np.random.default_rng(0)
    for batch in (64, 64, 17, 1, 200):
        x = rng.standard_normal((batch, 7)).astype(np.float32)
        y = rng.standard_normal((batch, 4)).astype(np.float32)
        np.testing.assert_allclose(native.step(x, y), reference.step(x, y), rtol=1e-5)
    assert len(native.graphs) == 1 and len(native.executables) == 1
    assert len(list(tmp_path.glob("*.so"))) == 1
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6)


def test_second_process_is_a_cache_hit(tmp_path):
    compiled, _, loss, path = run_script(tmp_path)
    hit, _, loss_again, path_again = run_script(tmp_path)
    assert (compiled, hit) == ("1", "0")  # the second process loaded the library without compiling
    assert loss == loss_again and path == path_again


def test_concurrent_compiles_both_succeed(tmp_path):
    env = dict(os.environ, GRAPHNN_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert len({o[0].split()[2] for o in outs}) == 1  # the same loss
    assert len(list(tmp_path.glob("*.so"))) == 1 and not list(tmp_path.glob("*.tmp"))


def test_truncated_library_is_rebuilt(tmp_path):
    _, _, loss, path = run_script(tmp_path)
    library = Path(path)
    library.write_bytes(library.read_bytes()[:100])
    compiled, _, loss_again, _ = run_script(tmp_path)
    assert compiled == "1" and loss_again == loss


def test_compiler_errors_name_the_generated_source(tmp_path):
    with pytest.raises(cpu.CompileError, match=r"failed on the generated source .*graphnn_\w+\.c"):
        cpu.Library("int broken(", "int broken(void);", tmp_path)


def test_missing_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    cpu.compiler.cache_clear()
    try:
        with pytest.raises(cpu.CompileError, match="no C compiler found.*backend='numpy'"):
            cpu.compiler()
        assert gn.api.resolve_backend("auto") == "numpy"
    finally:
        monkeypatch.delenv("CC")
        cpu.compiler.cache_clear()


def test_sidecar_with_bytes_that_are_not_text_is_rebuilt(tmp_path):
    cpu.Library("int answer(void) { return 1; }", "int answer(void);", tmp_path)
    sidecar = next(tmp_path.glob("*.sha256"))
    sidecar.write_bytes(b"\xff\xfe\x00damaged")
    again = cpu.Library("int answer(void) { return 1; }", "int answer(void);", tmp_path)
    assert again.compiled and again.function("answer")() == 1
    assert len(sidecar.read_text().strip()) == 64


def test_library_of_another_source_under_the_key_is_rebuilt(tmp_path):
    """A whole, checksummed library built from other source under this key is not loaded."""
    other = cpu.Library("int answer(void) { return 1; }", "int answer(void);", tmp_path / "other")
    key = cpu.Library("int answer(void) { return 2; }", "int answer(void);", tmp_path / "this").path.name
    (tmp_path / "fresh").mkdir()  # loaded libraries are not overwritten: that would crash this process
    (tmp_path / "fresh" / key).write_bytes(other.path.read_bytes())
    (tmp_path / "fresh" / key).with_suffix(".sha256").write_bytes(other.path.with_suffix(".sha256").read_bytes())
    library = cpu.Library("int answer(void) { return 2; }", "int answer(void);", tmp_path / "fresh")
    assert library.compiled and library.function("answer")() == 2


def test_full_disk_reports_the_linkers_message(tmp_path, monkeypatch):
    """A linker that fails for lack of space removes its output; its message reaches the user."""
    fake = tmp_path / "cc"
    fake.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done\nrm -f "$out"\n'
                    'echo "ld: final link failed: No space left on device" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setattr(cpu, "compiler", lambda: (str(fake), "a linker out of space", ("-O2",)))
    cache = tmp_path / "cache"
    with pytest.raises(cpu.CompileError, match="No space left on device"):
        cpu.Library("int answer(void) { return 1; }", "int answer(void);", cache)
    assert not list(cache.glob("*.tmp"))


def test_cache_dir_that_is_a_file_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "a file"
    path.write_text("")
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(path))
    model = nn.Linear(3, 2)
    program = gn.compile(model, backend="c")
    with pytest.raises(cpu.CompileError, match=r"cannot use .*a file as the compile cache.*GRAPHNN_CACHE_DIR.*not a "
                                               r"directory"):
        program(np.ones((2, 3), np.float32))


def test_stale_temporaries_of_killed_compiles_are_removed(tmp_path):
    """Temporary files and unit directories over an hour old go when the cache is opened; fresh
    ones (a compile running now) and other programs' files stay."""
    old = [tmp_path / "graphnn_0123abcd9x2k.so.tmp", tmp_path / ".graphnn_0123abcd.c.k2j3.tmp",
           tmp_path / "graphnn_0123abcd.units.q8w1", tmp_path / "tmpz81k_3a"]
    fresh = [tmp_path / "graphnn_4567abcdw1e2.so.tmp", tmp_path / "graphnn_4567abcd.units.p0o9"]
    foreign = [tmp_path / "notes.tmp", tmp_path / "tmpother"]
    for path in old + fresh + foreign:
        if path.suffix == ".tmp":
            path.write_bytes(b"partial")
        else:
            path.mkdir()
            (path / ("unit0.o" if path.name != "tmpother" else "data")).write_bytes(b"partial")
    hour_ago = time.time() - 3700
    for path in old + foreign:
        os.utime(path, (hour_ago, hour_ago))
    cpu.Library("int answer(void) { return 1; }", "int answer(void);", tmp_path)
    assert [p for p in old if p.exists()] == []
    assert all(p.exists() for p in fresh + foreign)
