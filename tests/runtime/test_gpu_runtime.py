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


def session(backend: str) -> tuple[list, dict]:
    """Steps interleaved with every way Python reads or writes what a device would hold."""
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train = gn.compile(model, nn.CrossEntropyLoss(), sgd, backend=backend)
    predict = gn.compile(model, backend=backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 6)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    seen = [train.step(x, y) for _ in range(3)]
    seen.append(model[0].weight.data.clone())  # read after device-side updates
    model[0].weight.data[:2] = 0.5  # written in place through the getter
    seen.append(train.step(x, y))
    seen.append(model[1].running_mean.numpy().copy())  # a model buffer by attribute
    saved = sgd.state_dict()
    seen += [train.step(x, y), train.step(x, y)]
    sgd.load_state_dict(saved)  # momentum written on the host
    seen.append(train.step(x, y))
    seen.append(sgd.state[model[3].bias]["momentum_buffer"].copy())
    model.eval()
    seen.append(predict(x))  # another program over the same parameters and buffers
    model.train()
    sgd.zero_grad()
    seen.append(train.grad(x, y))  # the eager path: p.grad, then optimizer.step() on the host
    sgd.step()
    seen.append(train.step(x, y))
    return seen, {k: v.clone() for k, v in model.state_dict().items()}


def test_device_copies_stay_in_step_with_the_host(monkeypatch):
    """Device memory separate from the host (as on a GPU), simulated on the CPU: every read and
    write from Python sees and reaches what the kernels computed, as with the C backend."""
    monkeypatch.setattr(gpu.Device, "SEPARATE_ON_CPU", True)
    got, got_state = session("triton")
    monkeypatch.setattr(gpu.Device, "SEPARATE_ON_CPU", False)
    expected, expected_state = session("c")
    for k, (a, b) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"item {k}")
    for key in expected_state:
        np.testing.assert_allclose(got_state[key], expected_state[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_moving_parameters_to_a_new_flat_buffer_keeps_device_updates(monkeypatch):
    """A second optimizer regrouping the parameters moves them into a new flat buffer: the values
    the device computed must come home first."""
    def run(backend):
        gn.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
        first = optim.SGD(model[2].parameters(), lr=0.1, momentum=0.9)  # trains the last layer only
        train = gn.compile(model, nn.MSELoss(), first, backend=backend)
        x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
        for _ in range(3):
            train.step(x, x[:, :2])
        # the first parameter of the new optimizer was never in a flat buffer
        regrouped = optim.SGD([{"params": model[0].parameters(), "lr": 0.05}, {"params": model[2].parameters()}],
                              lr=0.1)
        again = gn.compile(model, nn.MSELoss(), regrouped, backend=backend)
        return [again.step(x, x[:, :2]) for _ in range(2)], {k: v.clone() for k, v in model.state_dict().items()}

    monkeypatch.setattr(gpu.Device, "SEPARATE_ON_CPU", True)
    got, got_state = run("triton")
    monkeypatch.setattr(gpu.Device, "SEPARATE_ON_CPU", False)
    expected, expected_state = run("c")
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    for key in expected_state:
        np.testing.assert_allclose(got_state[key], expected_state[key], rtol=1e-5, atol=1e-6, err_msg=key)
