"""The numpy reference interpreter: counter-based random numbers and dropout semantics."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

import graphnn as gn
from graphnn import nn, optim
from runtime.reference import philox4x32, philox_uniform


def test_philox_matches_the_published_known_answer():
    # Random123's known-answer test for philox4x32_10: counter and key all ones (0xffffffff)
    ones = np.uint64(0xFFFFFFFF)
    words = philox4x32((np.array([ones]), ones, ones, ones), (0xFFFFFFFF, 0xFFFFFFFF))
    assert [int(w[0]) if np.ndim(w) else int(w) for w in words] == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    zeros = philox4x32((np.array([0], np.uint64), 0, 0, 0), (0, 0))
    assert [int(np.ravel(w)[0]) for w in zeros] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


def test_philox_uniform_is_uniform_deterministic_and_keyed():
    u = philox_uniform(200_000, seed=1234, step=0, stream=0)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    np.testing.assert_array_equal(u[:100], philox_uniform(100, 1234, 0, 0))
    for other in (philox_uniform(100, 1235, 0, 0), philox_uniform(100, 1234, 1, 0), philox_uniform(100, 1234, 0, 1)):
        assert not np.array_equal(u[:100], other)


def test_dropout_in_training_and_eval(backend):
    gn.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.3))
    x = np.ones((400, 50), np.float32)
    predict = gn.compile(model, backend=backend)
    first, second = predict(x), predict(x)
    assert set(np.unique(first)) == {0.0, np.float32(1 / 0.7)}
    assert abs((first == 0).mean() - 0.3) < 0.01
    assert not np.array_equal(first, second)  # a fresh mask per call
    model.eval()
    np.testing.assert_array_equal(predict(x), x)


def test_dropout_backward_uses_the_forward_mask(backend):
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 400, bias=False), nn.Dropout(0.5))
    train = gn.compile(model, nn.MSELoss(reduction="sum"), optim.SGD(model.parameters(), lr=0.1), backend=backend)
    loss = train.grad(np.ones((1, 1), np.float32), np.zeros((1, 400), np.float32))
    h = model[0].weight.data[:, 0]
    # y = h * m / 0.5, loss = sum(y^2): d loss / d w_j = 8 h_j m_j, so the gradient reveals the mask
    mask = ~np.isclose(model[0].weight.grad[:, 0], 0)
    assert 0.4 < mask.mean() < 0.6
    np.testing.assert_allclose(model[0].weight.grad[mask, 0], 8 * h[mask], rtol=1e-5)
    np.testing.assert_allclose(loss, float((4 * h[mask] ** 2).sum()), rtol=1e-5)  # the forward used the same mask


def test_version_command():
    out = subprocess.run([sys.executable, "-m", "graphnn.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"graphnn {gn.__version__}"
