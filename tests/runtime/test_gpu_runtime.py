"""The Triton backend's runtime (in the interpreter here): deterministic generated modules cached
under their source hash, one module for every batch size, and backend selection."""
from __future__ import annotations

import numpy as np
import pytest

import graphnn as gn
from graphnn import nn, optim
from runtime import gpu


def step_once(batch: int = 4):
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Dropout(0.2), nn.Linear(5, 3))
    train = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                       backend="triton")
    x = np.random.default_rng(0).standard_normal((batch, 6)).astype(np.float32)
    train.step(x, np.arange(batch) % 3)
    return train, next(iter(train.executables.values()))


def test_same_model_gives_the_same_module_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(tmp_path))
    (_, first), (_, second) = step_once(), step_once()
    a, b = first.modules["train_step"], second.modules["train_step"]
    assert first.source == second.source and a.key == b.key and a.path == b.path
    assert a.path.parent == tmp_path / "triton" and a.path.read_text() == first.source
    assert len(list((tmp_path / "triton").glob("*.py"))) == 1
    compile(first.source, str(a.path), "exec")  # the module is valid Python by itself


def test_other_batch_sizes_reuse_the_module(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(tmp_path))
    train, executable = step_once(4)
    for batch in (2, 7, 65):  # 65: more rows than one block of the matmuls and reductions
        x = np.random.default_rng(batch).standard_normal((batch, 6)).astype(np.float32)
        assert np.isfinite(train.step(x, np.arange(batch) % 3))
    assert list(executable.modules) == ["train_step"]
    assert len(list((tmp_path / "triton").glob("*.py"))) == 1


def test_auto_picks_the_gpu_only_when_there_is_one():
    expected = "triton" if gpu.has_gpu() else "c"
    assert gn.api.resolve_backend("auto") == expected
    assert gn.api.resolve_backend("triton") == "triton"


def test_a_module_that_cannot_run_says_which_kernel(tmp_path, monkeypatch):
    """Generated source that Triton rejects surfaces as an error naming the kernel, not a hang."""
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(tmp_path))
    module = gpu.Module('import triton\nimport triton.language as tl\n\n@triton.jit\ndef k0(p, B, BLOCK: tl.constexpr):\n'
                        '    tl.store(p + tl.arange(0, BLOCK), tl.undefined_name(1.0))\n\n\n'
                        'def forward(B, buffers, arena):\n    k0[(1,)](buffers[0], B, BLOCK=16)\n', tmp_path)
    import torch

    with pytest.raises(Exception, match="k0|undefined_name"):
        module.function("forward")(1, [torch.zeros(16)], None)
