"""examples/resnet.py, the book's ResNet-18 and fully connected network on the digits, trains as the
same script on torch: from the same initial weights on the same (unshuffled) batches, a narrow
run's training losses, test accuracies and parameter counts are torch's. (The default run, the
book's width for 10 epochs, reaches 99.6% test accuracy against 98.2% for the fully connected
network.)"""
from __future__ import annotations

import re

import numpy as np

from tests.examples.scripts import EXAMPLES, as_torch, run_script

SCRIPT = EXAMPLES / "resnet.py"
MODELS = ("model = RestNet18(width=args.width)\n", "mlp_model = fully_connected()\n")
IMPORTS = (("import graphnn as torch", "import torch"), ("import graphnn.nn as nn", "import torch.nn as nn"),
           ("import graphnn.nn.functional as F", "import torch.nn.functional as F"),
           ("from graphnn.utils.data import", "from torch.utils.data import"))
SMALL = ["--epochs", "2", "--width", "8", "--subset", "96", "--batch-size", "32"]


def numbers(text: str, pattern: str) -> np.ndarray:
    return np.array(re.findall(pattern, text), float)


def test_a_narrow_run_matches_torch_from_the_same_weights():
    source = SCRIPT.read_text()
    assert "shuffle=True" in source and all(line in source for line in MODELS)
    source = source.replace("shuffle=True", "shuffle=False")
    initial: dict = {}
    records, loads = source, as_torch(source, IMPORTS)
    for line in MODELS:
        name = line.split(" = ")[0]
        records = records.replace(line, line + f"INITIAL['{name}'] = {{k: v.numpy().copy() for k, v in "
                                               f"{name}.state_dict().items()}}\n")
        loads = loads.replace(line, line + f"{name}.load_state_dict({{k: torch.tensor(v) for k, v in "
                                           f"INITIAL['{name}'].items()}})\n")
    ours = run_script(SCRIPT, records, SMALL, {"INITIAL": initial})
    theirs = run_script(SCRIPT, loads, SMALL, {"INITIAL": initial})
    assert re.findall(r"(\d+) parameters", ours) == re.findall(r"(\d+) parameters", theirs)
    losses = [numbers(text, r"train loss ([\d.]+)") for text in (ours, theirs)]
    assert losses[0].shape == (4,)  # two epochs of each network
    np.testing.assert_allclose(*losses, rtol=2e-4, atol=2e-4)
    accuracies = [numbers(text, r"test accuracy ([\d.]+)") for text in (ours, theirs)]
    np.testing.assert_allclose(*accuracies, atol=2.5 / 450)  # an image whose two best scores tie to rounding
    assert re.search(r"after 2 epochs: ResNet-18 test accuracy [\d.]+, fully connected [\d.]+", ours)
