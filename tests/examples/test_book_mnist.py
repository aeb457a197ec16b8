"""examples/book_mnist.py, the book's MNIST loop (on the digits) with graphnn's imports, gives
torch's numbers: run once as written and once on torch from the same initial weights, both with
the loaders' shuffling off so the batches are the same."""
from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "book_mnist.py"
MODEL = "model = Net(8 * 8, 300, 100, 10)\n"
IMPORTS = (("import graphnn as torch", "import torch"), ("import graphnn.nn.functional as F", "import torch.nn.functional as F"),
           ("import graphnn.optim as optim", "import torch.optim as optim"), ("from graphnn import nn", "from torch import nn"),
           ("from graphnn.utils.data import", "from torch.utils.data import"))


def run(source: str, namespace: dict) -> str:
    out, argv = io.StringIO(), sys.argv
    sys.argv = [str(SCRIPT), "--epochs", "6"]
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(source, str(SCRIPT), "exec"), namespace)
    finally:
        sys.argv = argv
    return out.getvalue()


def test_the_books_loop_matches_torch():
    source = SCRIPT.read_text().replace("shuffle=True", "shuffle=False")
    assert MODEL in source
    initial: dict = {}
    ours = run(source.replace(MODEL, MODEL + "INITIAL.update({k: v.numpy().copy() for k, v in model.state_dict().items()})\n"),
               {"__name__": "__main__", "INITIAL": initial})
    theirs_source = source
    for a, b in IMPORTS:
        assert a in theirs_source
        theirs_source = theirs_source.replace(a, b)
    theirs = run(theirs_source.replace(MODEL, MODEL + "model.load_state_dict({k: torch.tensor(v) for k, v in INITIAL.items()})\n"),
                 {"__name__": "__main__", "INITIAL": initial})
    pattern = r"Train Loss: ([\d.]+), Train Acc: ([\d.]+), Test Loss: ([\d.]+), Test Acc: ([\d.]+)"
    a = np.array(re.findall(pattern, ours), float)
    b = np.array(re.findall(pattern, theirs), float)
    assert a.shape == b.shape == (6, 4)
    np.testing.assert_allclose(a, b, atol=2e-4)
    assert a[-1, 3] > 0.7
