"""examples/book_mnist.py, the book's MNIST loop (on the digits) with graphnn's imports, gives
torch's numbers: run once as written and once on torch from the same initial weights, both with
the loaders' shuffling off so the batches are the same."""
from __future__ import annotations

import re

import numpy as np

from tests.examples.scripts import EXAMPLES, as_torch, run_script

SCRIPT = EXAMPLES / "book_mnist.py"
MODEL = "model = Net(8 * 8, 300, 100, 10)\n"
IMPORTS = (("import graphnn as torch", "import torch"), ("import graphnn.nn.functional as F", "import torch.nn.functional as F"),
           ("import graphnn.optim as optim", "import torch.optim as optim"), ("from graphnn import nn", "from torch import nn"),
           ("from graphnn.utils.data import", "from torch.utils.data import"))


def test_the_books_loop_matches_torch():
    source = SCRIPT.read_text().replace("shuffle=True", "shuffle=False")
    assert MODEL in source
    initial: dict = {}
    records = MODEL + "INITIAL.update({k: v.numpy().copy() for k, v in model.state_dict().items()})\n"
    ours = run_script(SCRIPT, source.replace(MODEL, records), ["--epochs", "6"], {"INITIAL": initial})
    loads = MODEL + "model.load_state_dict({k: torch.tensor(v) for k, v in INITIAL.items()})\n"
    theirs = run_script(SCRIPT, as_torch(source, IMPORTS).replace(MODEL, loads), ["--epochs", "6"], {"INITIAL": initial})
    pattern = r"Train Loss: ([\d.]+), Train Acc: ([\d.]+), Test Loss: ([\d.]+), Test Acc: ([\d.]+)"
    a = np.array(re.findall(pattern, ours), float)
    b = np.array(re.findall(pattern, theirs), float)
    assert a.shape == b.shape == (6, 4)
    np.testing.assert_allclose(a, b, atol=2e-4)
    assert a[-1, 3] > 0.7
