"""Shared test helpers: torch as the oracle, the book's data, weight transfer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

T_C = np.array([0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0], np.float32).reshape(-1, 1)
T_U = np.array([35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4], np.float32).reshape(-1, 1)
TRAIN_INDICES = [2, 7, 8, 9, 10, 0, 1, 4, 6]
VAL_INDICES = [3, 5]


def copy_torch_weights(gn_model, torch_model) -> None:
    """Load torch's state_dict (as numpy) into the graphnn model."""
    state = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    gn_model.load_state_dict(state)


def assert_state_close(gn_model, torch_model, rtol=1e-4, atol=1e-6) -> None:
    ours = gn_model.state_dict()
    theirs = torch_model.state_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        np.testing.assert_allclose(np.asarray(ours[key]), theirs[key].detach().numpy(), rtol=rtol, atol=atol, err_msg=key)


@pytest.fixture
def thermometer():
    return T_U * 0.1, T_C
