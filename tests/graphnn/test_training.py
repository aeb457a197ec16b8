"""fit / evaluate / predict, and StepLR against torch's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn, optim
from tests.conftest import assert_state_close, copy_torch_weights


def data(n=50, features=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    return x, np.argmax(x[:, :classes] + 0.1 * rng.standard_normal((n, classes)), 1)


def classifier(lib, features=5, classes=3):
    return lib.Sequential(lib.Linear(features, 16), lib.ReLU(), lib.Linear(16, classes))


def test_fit_history_ragged_last_batch_and_accuracy(backend, capsys):
    x, y = data(50)
    gn.manual_seed(0)
    model = classifier(nn)
    program = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9), backend=backend)
    history = program.fit(x, y, batch_size=16, epochs=4, validation_data=(x[:20], y[:20]))
    assert history.epochs == 4 and len(history["val_loss"]) == 4 and len(history["val_accuracy"]) == 4
    assert len(program.graphs) == 2  # the train-mode step (batches 16 and the last 2) and the eval-mode evaluation
    assert history["loss"][-1] < history["loss"][0]
    loss, accuracy = program.evaluate(x, y, batch_size=7)
    logits = gn.compile(model, backend=backend)(x)
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    assert loss == pytest.approx(expected, rel=1e-5)
    assert accuracy == pytest.approx((logits.argmax(1) == y).mean())
    assert "Epoch 1/4" not in capsys.readouterr().out  # no progress bar when stdout is not a terminal


def test_fit_steps_match_a_torch_loop_with_step_lr(backend):
    """fit without shuffling is the PyTorch loop: same batches, same StepLR schedule, same weights."""
    x, y = data(40)
    torch.manual_seed(0)
    ref = classifier(torch.nn)
    model = classifier(nn)
    copy_torch_weights(model, ref)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.2, momentum=0.9)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=2, gamma=0.5)
    opt = optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    losses = []
    for _ in range(5):
        total = 0.0
        for start in range(0, 40, 16):
            ref_opt.zero_grad()
            loss = torch.nn.CrossEntropyLoss()(ref(torch.from_numpy(x[start:start + 16])), torch.from_numpy(y[start:start + 16]))
            loss.backward()
            ref_opt.step()
            total += loss.item() * len(x[start:start + 16])
        losses.append(total / 40)
        ref_sched.step()
    program = gn.compile(model, nn.CrossEntropyLoss(), opt, backend=backend)
    history = program.fit(x, y, batch_size=16, epochs=5, shuffle=False, scheduler=sched, verbose=0)
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-5)
    assert history["lr"] == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05])
    assert sched.get_last_lr() == pytest.approx(ref_sched.get_last_lr())
    assert_state_close(model, ref, rtol=1e-5)


def test_predict_in_batches_equals_one_call(backend):
    x, _ = data(37)
    model = classifier(nn)
    program = gn.compile(model, backend=backend)
    # equal to float32 rounding: a matmul of 37 rows and one of 8 may take different kernels (the
    # packed GEMM from 16 rows), which sum in different orders
    np.testing.assert_allclose(program.predict(x, batch_size=8), program(x), rtol=1e-6, atol=1e-6)


def test_evaluate_regression_has_no_accuracy_and_restores_train_mode(backend):
    x, _ = data(20)
    model = nn.Sequential(nn.Linear(5, 1), nn.BatchNorm1d(1))
    program = gn.compile(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), backend=backend)
    before = model[1].running_mean.clone()
    loss, accuracy = program.evaluate(x, x[:, :1])
    assert accuracy is None and np.isfinite(loss)
    assert model.training and model[1].training
    np.testing.assert_array_equal(model[1].running_mean.numpy(), before.numpy())  # evaluation ran in eval mode
