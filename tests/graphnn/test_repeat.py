"""Calls like the previous one skip the general path (program._Repeat); everything that can
change between such calls must still take effect. The numpy backend always takes the general
path, so each scenario is run on both and must agree; some also compare with torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn, optim
from graphnn.errors import InputError
from tests.conftest import assert_state_close, copy_torch_weights


def net(lib):
    return lib.Sequential(lib.Linear(6, 8), lib.BatchNorm1d(8), lib.ReLU(), lib.Dropout(0.25), lib.Linear(8, 3))


def scenario(backend: str) -> tuple[list, dict, np.ndarray]:
    """Steps, losses and predictions interleaved with every kind of change a user can make."""
    rng = np.random.default_rng(0)
    gn.manual_seed(1)
    model = net(nn)
    sgd = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train = gn.compile(model, nn.CrossEntropyLoss(), sgd, backend=backend)
    predict = gn.compile(model, backend=backend)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    y = rng.integers(0, 3, 5)
    log = []
    log += [train.step(x, y), train.step(x, y)]  # the second call repeats the first
    x *= 2  # the same array, new contents
    log.append(train.step(x, y))
    x2, y2 = x + 1, (y + 1) % 3  # other arrays of the same shape
    log.append(train.step(x2, y2))
    sgd.param_groups[0]["lr"] = 0.01
    log += [train.step(x, y), train.step(x, y)]
    saved = sgd.state_dict()
    log.append(train.step(np.asfortranarray(np.tile(x, (1, 1)))[:, :], y))  # not C-contiguous after the copy
    sgd.load_state_dict(saved)
    log.append(train.step(x, y))
    log += [train.step(x[:3], y[:3]), train.step(x, y)]  # another batch size and back
    bad = y.copy()
    bad[2] = 3
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InputError, match=r"class labels must be in \[0, 3\)"):
        train.step(x, bad)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    model.eval()
    log += [train.loss(x, y), train.loss(x, y)]
    first = predict(x)
    second = predict(x)
    x3 = x * -1
    third = predict(x3)
    model.train()
    log += [train.step(x, y), train.step(x, y.astype(np.int32))]  # an int32 target is converted
    np.testing.assert_array_equal(first, second)  # the first result was not overwritten
    assert not np.allclose(first, third)
    return log, {k: v.clone() for k, v in model.state_dict().items()}, third


def test_repeated_calls_see_every_change():
    c_log, c_state, c_out = scenario("c")
    ref_log, ref_state, ref_out = scenario("numpy")
    np.testing.assert_allclose(c_log, ref_log, rtol=1e-5)
    for k in ref_state:
        np.testing.assert_allclose(c_state[k], ref_state[k], rtol=1e-4, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(c_out, ref_out, rtol=1e-4, atol=1e-6)


def test_repeated_steps_follow_torch_through_lr_and_mode_changes():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 4)).astype(np.float32)
    y = rng.standard_normal((7, 2)).astype(np.float32)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2))
    reference = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.Tanh(),
                                    torch.nn.Linear(5, 2))
    copy_torch_weights(model, reference)
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    torch_sgd = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    train = gn.compile(model, nn.MSELoss(), sgd, backend="c")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for k in range(12):
        if k == 4:
            for group in (sgd.param_groups[0], torch_sgd.param_groups[0]):
                group["lr"] = 0.02
        if k == 8:
            for group in (sgd.param_groups[0], torch_sgd.param_groups[0]):
                group["momentum"] = 0.5
        loss = train.step(x, y)
        torch_sgd.zero_grad()
        expected = torch.nn.functional.mse_loss(reference(xt), yt)
        expected.backward()
        torch_sgd.step()
        assert loss == pytest.approx(expected.item(), rel=1e-5)
    model.eval()
    reference.eval()
    for _ in range(2):
        with torch.no_grad():
            assert train.loss(x, y) == pytest.approx(torch.nn.functional.mse_loss(reference(xt), yt).item(), rel=1e-5)
    assert_state_close(model, reference, rtol=1e-4)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_structural_optimizer_changes_rebuild_the_step_and_follow_torch(backend):
    """Whether momentum is zero, nesterov and maximize are compiled into the update (no branches on
    them in the generated loops): changing one mid-training rebuilds the step, and training still
    follows torch, through momentum switched off (the buffer is then left as it was, as PyTorch
    leaves it) and on again (PyTorch resumes from that stale buffer). A new learning rate or
    momentum value does not rebuild."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    reference = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    copy_torch_weights(model, reference)
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch_sgd = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    train = gn.compile(model, nn.CrossEntropyLoss(), sgd, backend=backend)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    changes = {2: dict(nesterov=True), 4: dict(lr=0.05), 5: dict(maximize=True), 7: dict(maximize=False),
               8: dict(momentum=0.0, nesterov=False), 10: dict(momentum=0.5), 12: dict(momentum=0.7)}
    rebuilt = []
    for k in range(14):
        for group in (sgd.param_groups[0], torch_sgd.param_groups[0]):
            group.update(changes.get(k, {}))
        before = dict(train.executables)
        loss = train.step(x, y)
        rebuilt.append(bool(before) and not any(e is before.get(key) for key, e in train.executables.items()))
        torch_sgd.zero_grad()
        expected = torch.nn.functional.cross_entropy(reference(xt), yt)
        expected.backward()
        torch_sgd.step()
        assert loss == pytest.approx(expected.item(), rel=1e-5), k
        assert_state_close(model, reference, rtol=1e-4)
    # rebuilt exactly where the structure changed: nesterov on, maximize on and off, momentum off and on
    assert [k for k, r in enumerate(rebuilt) if r] == [2, 5, 7, 8, 10]
