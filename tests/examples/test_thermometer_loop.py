"""examples/thermometer_loop.py, the book's chapter 5 and 6 loops with graphnn's imports, prints
the book's final parameters and torch's numbers (the chapter-6 network from the same initial
weights in both libraries)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tests.examples.scripts import EXAMPLES, as_torch, run_script

SCRIPT = EXAMPLES / "thermometer_loop.py"
MODEL = "optimizer = optim.SGD(seq_model.parameters(), lr=1e-3)\n"
IMPORTS = (("import graphnn as torch", "import torch"), ("import graphnn.nn as nn", "import torch.nn as nn"),
           ("import graphnn.optim as optim", "import torch.optim as optim"))


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")  # torch on float(loss)
def test_the_books_loops_match_the_book_and_torch():
    source = SCRIPT.read_text()
    assert MODEL in source
    initial: dict = {}
    records = "INITIAL.update({k: v.numpy().copy() for k, v in seq_model.state_dict().items()})\n" + MODEL
    ours = run_script(SCRIPT, source.replace(MODEL, records), [], {"INITIAL": initial})
    loads = "seq_model.load_state_dict({k: torch.tensor(v) for k, v in INITIAL.items()})\n" + MODEL
    theirs = run_script(SCRIPT, as_torch(source, IMPORTS).replace(MODEL, loads), [], {"INITIAL": initial})
    assert "tensor([  5.3671, -17.3012], requires_grad=True)" in ours  # the book's chapter-5 result
    numbers = [np.array(re.findall(r"-?\d+\.\d+", text), float) for text in (ours, theirs)]
    assert numbers[0].shape == numbers[1].shape
    np.testing.assert_allclose(numbers[0], numbers[1], rtol=2e-3, atol=2e-3)
    assert "output tensor([[" in ours and "grad_fn=<AddmmBackward0>" in ours
