"""Bad input gets a clear error naming what was expected and what came, and a failed step
changes nothing."""
from __future__ import annotations

import numpy as np
import pytest

import graphnn as gn
from graphnn import nn, optim


def classifier(backend):
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, opt, gn.compile(model, nn.CrossEntropyLoss(), opt, backend=backend)


def snapshot(model, opt):
    state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    state.update({f"momentum.{k}": np.array(s["momentum_buffer"], copy=True) for k, s in opt.state_dict()["state"].items()})
    return state


def assert_unchanged(before, after):
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


X = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
Y = np.array([0, 1, 2, 1, 0, 2])


@pytest.mark.parametrize("x,y,error,pattern", [
    (X, np.array([0, 1, 3, 1, 0, 2]), gn.InputError, r"target: class labels must be in \[0, 3\).*got 3 at index 2"),
    (X, np.array([0, 1, -1, 1, 0, 2]), gn.InputError, r"class labels must be in \[0, 3\).*got -1"),
    (X, Y[:5], gn.InputError, "same batch size.*input has 6, target has 5"),
    (X[:, :3], Y, gn.ShapeError, r"0 \(Linear\).*last dimension 4.*\[B,3\]"),
    (X[:, :, None], Y, gn.ShapeError, r"Linear expected input with last dimension 4, got input of shape \[B,4,1\]"),
    (X, Y.astype(np.float32), gn.ShapeError, r"loss \(CrossEntropyLoss\): expected target dtype to be Long or Byte, "
                                             r"but got Float"),
    (X, Y.reshape(6, 1), gn.ShapeError, r"0D or 1D target tensor expected, multi-target not supported \(got input of "
                                        r"shape \[B,3\] and target of shape \[B,1\]\)"),
    (X[:1], Y[:1], gn.InputError, r"1 \(BatchNorm1d\): expected more than 1 value per channel when training"),
    (X.astype(np.int64), Y, gn.ShapeError, "expected a float32 input, got int64"),
    (X, np.array(["a"] * 6), gn.InputError, "target: expected a float or integer array"),
    (np.float32(1.0), Y, gn.InputError, "leading batch dimension"),
])
def test_bad_input_is_rejected_and_the_step_changes_nothing(x, y, error, pattern, backend):
    model, opt, train = classifier(backend)
    train.step(X, Y)  # momentum buffers and running stats now hold values worth protecting
    before = snapshot(model, opt)
    with pytest.raises(error, match=pattern):
        train.step(x, y)
    assert issubclass(error, ValueError)
    assert_unchanged(before, snapshot(model, opt))
    assert np.isfinite(train.step(X, Y))  # the program still works afterwards


def test_other_dtypes_are_converted(backend):
    model, opt, train = classifier(backend)
    reference_model, _, reference_train = classifier(backend)
    loss64 = train.step(X.astype(np.float64), Y.astype(np.int32))
    loss32 = reference_train.step(X, Y)
    assert loss64 == loss32
    assert len(train.graphs) == 1


def test_wrong_target_shape_for_regression_losses(backend):
    model = nn.Linear(3, 2)
    train = gn.compile(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), backend=backend)
    with pytest.raises(gn.ShapeError, match=r"loss \(MSELoss\): mse_loss expected a target of the input's shape \[B,2\], got \[B\]"):
        train.step(np.zeros((4, 3), np.float32), np.zeros(4, np.float32))


def test_unknown_backend_and_missing_optimizer(backend):
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="unknown or unavailable backend 'cuda'"):
        gn.compile(model, backend="cuda")
    with pytest.raises(TypeError, match="needs an optimizer"):
        gn.compile(model, nn.MSELoss(), backend=backend).step(np.zeros((2, 3), np.float32), np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="needs a loss"):
        gn.compile(model, optimizer=optim.SGD(model.parameters()), backend=backend)


def test_optimizer_argument_checks():
    params = nn.Linear(2, 2).parameters()
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.SGD(nn.Linear(2, 2).parameters(), lr=-1)


def test_ignore_index_labels_are_allowed_and_ignored(backend):
    model, opt, train = classifier(backend)
    labels = Y.copy()
    labels[0] = -100
    assert np.isfinite(train.step(X, labels))
