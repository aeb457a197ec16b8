"""examples/quickstart.py, PyTorch's quickstart tutorial with graphnn's imports, gives torch's numbers.

The script runs twice in this process: as written (graphnn), and with its imports turned back
into torch's and the initial weights of the graphnn run loaded, so both train from the same
start on the same batches. Every printed loss, the test accuracy and average loss of each
epoch and the final prediction must agree to float32 rounding.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.examples.scripts import EXAMPLES, as_torch, run_script

SCRIPT = EXAMPLES / "quickstart.py"

MODEL = "model = NeuralNetwork().to(device)\nprint(model)\n"


IMPORTS = (("import graphnn as torch", "import torch"), ("from graphnn import nn", "from torch import nn"),
           ("from graphnn.utils.data import", "from torch.utils.data import"))


def run(source: str, tmp_path: Path, namespace: dict) -> str:
    return run_script(SCRIPT, source, ["--epochs", "3", "--model-path", str(tmp_path / "model.pth")], namespace)


def numbers(text: str, pattern: str) -> list[float]:
    return [float(v) for v in re.findall(pattern, text)]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_quickstart_matches_torch(tmp_path):
    source = SCRIPT.read_text()
    initial: dict = {}
    recorded = source.replace(MODEL, MODEL + "INITIAL.update({k: v.numpy().copy() for k, v in model.state_dict().items()})\n", 1)
    ours = run(recorded, tmp_path, {"INITIAL": initial})
    loads = MODEL + "model.load_state_dict({k: torch.tensor(v) for k, v in INITIAL.items()})\n"
    theirs = run(as_torch(source, IMPORTS).replace(MODEL, loads, 1), tmp_path, {"INITIAL": initial})

    assert "Shape of X [N, C, H, W]: torch.Size([64, 1, 8, 8])" in ours
    assert "Shape of y: torch.Size([64]) torch.int64" in ours
    assert "(linear_relu_stack): Sequential(" in ours and "Using cpu device" in ours
    for pattern in (r"loss: ([\d.]+)", r"Accuracy: ([\d.]+)%", r"Avg loss: ([\d.]+)"):
        a, b = numbers(ours, pattern), numbers(theirs, pattern)
        assert len(a) == len(b) > 0, pattern
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=pattern)
    assert numbers(ours, r"Accuracy: ([\d.]+)%")[-1] > 70  # three epochs of the tutorial's SGD
    assert re.findall(r'Predicted: "\d", Actual: "\d"', ours) == re.findall(r'Predicted: "\d", Actual: "\d"', theirs)
