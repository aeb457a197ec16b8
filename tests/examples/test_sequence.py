"""examples/sequence.py, the LSTM digit classifier and the GRU character model, trains as the same
script on torch: from the same initial weights on the same batches, small models' printed losses
and accuracies are torch's. (The numpy reference runs it: the layers' generated code is compared
with torch in tests/graphnn/test_recurrent.py.)"""
from __future__ import annotations

import re

import numpy as np

from tests.examples.scripts import EXAMPLES, as_torch, run_script

SCRIPT = EXAMPLES / "sequence.py"
IMPORTS = (("import graphnn as torch", "import torch"), ("import graphnn.nn as nn", "import torch.nn as nn"),
           ("import graphnn.nn.functional as F", "import torch.nn.functional as F"),
           ("from graphnn.utils.data import", "from torch.utils.data import"))
MODELS = ("    model = RowLSTM(8, args.hidden, 10)\n", "    model = CharGRU(len(chars), args.n_embd, args.char_hidden)\n")
# the same data order and batches in both runs: from numpy generators the test passes in
SAME_DATA = (("    order = torch.randperm(len(digits.target))\n", "    order = torch.tensor(ORDER)\n"),
             ("shuffle=True, drop_last=True", "shuffle=False, drop_last=True"),
             ("        ix = torch.randint(len(source) - args.block_size, (args.char_batch_size,))\n",
              "        ix = [int(i) for i in INDICES.integers(0, len(source) - args.block_size, args.char_batch_size)]\n"))
SMALL = ["--epochs", "2", "--hidden", "6", "--char-epochs", "2", "--steps", "6", "--block-size", "5", "--n-embd", "4",
         "--char-hidden", "6", "--char-batch-size", "3", "--eval-batches", "2"]


def printed_numbers(text: str) -> np.ndarray:
    lines = [line for line in text.splitlines() if " epoch " in line]
    return np.array([float(v) for line in lines for v in re.findall(r"\d+\.\d+", line)])


def test_both_models_match_torch_from_the_same_weights_and_batches(monkeypatch):
    monkeypatch.setenv("GRAPHNN_BACKEND", "numpy")
    source = SCRIPT.read_text()
    for old, new in SAME_DATA:
        assert old in source, old
        source = source.replace(old, new)
    records, loads = source, as_torch(source, IMPORTS)
    for k, line in enumerate(MODELS):
        assert line in source, line
        records = records.replace(line, line + f"    INITIAL[{k}] = {{n: v.numpy().copy() for n, v in model.state_dict().items()}}\n")
        loads = loads.replace(line, line + f"    model.load_state_dict({{n: torch.tensor(v) for n, v in INITIAL[{k}].items()}})\n")
    initial: dict = {}
    order = np.random.default_rng(0).permutation(1797)
    ours = run_script(SCRIPT, records, SMALL, {"INITIAL": initial, "ORDER": order, "INDICES": np.random.default_rng(1)})
    theirs = run_script(SCRIPT, loads, SMALL, {"INITIAL": initial, "ORDER": order, "INDICES": np.random.default_rng(1)})
    a, b = printed_numbers(ours), printed_numbers(theirs)
    assert a.shape == b.shape and a.size == 2 * 2 + 2 * 3  # per epoch: loss and accuracy; losses and entropy
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)
