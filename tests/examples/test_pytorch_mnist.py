"""examples/pytorch_mnist.py, PyTorch's MNIST example with graphnn's imports, gives torch's
numbers: run once as written and once on torch from the same initial weights, with dropout off
and the training loader unshuffled in both runs (the two libraries draw different masks and
orders)."""
from __future__ import annotations

import re

import numpy as np

from tests.examples.scripts import EXAMPLES, as_torch, run_script

SCRIPT = EXAMPLES / "pytorch_mnist.py"
MODEL = "model = Net().to(device)\n"
IMPORTS = (("import graphnn as torch", "import torch"), ("import graphnn.nn as nn", "import torch.nn as nn"),
           ("import graphnn.nn.functional as F", "import torch.nn.functional as F"),
           ("import graphnn.optim as optim", "import torch.optim as optim"),
           ("from graphnn.optim.lr_scheduler import", "from torch.optim.lr_scheduler import"),
           ("from graphnn.utils.data import", "from torch.utils.data import"))


def test_pytorch_mnist_example_matches_torch():
    source = SCRIPT.read_text()
    for fixed in ("nn.Dropout(0.25)", "nn.Dropout(0.5)", "shuffle=True", MODEL):
        assert fixed in source, fixed
    source = source.replace("nn.Dropout(0.25)", "nn.Dropout(0.0)").replace("nn.Dropout(0.5)", "nn.Dropout(0.0)")
    source = source.replace("shuffle=True", "shuffle=False")
    initial: dict = {}
    records = MODEL + "INITIAL.update({k: v.numpy().copy() for k, v in model.state_dict().items()})\n"
    ours = run_script(SCRIPT, source.replace(MODEL, records), ["--epochs", "2"], {"INITIAL": initial})
    loads = MODEL + "model.load_state_dict({k: torch.tensor(v) for k, v in INITIAL.items()})\n"
    theirs = run_script(SCRIPT, as_torch(source, IMPORTS).replace(MODEL, loads), ["--epochs", "2"], {"INITIAL": initial})
    for pattern in (r"Loss: ([\d.]+)", r"Average loss: ([\d.]+)", r"Accuracy: (\d+)/"):
        a, b = (np.array(re.findall(pattern, text), float) for text in (ours, theirs))
        assert a.shape == b.shape and a.size > 0, pattern
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, err_msg=pattern)
