"""examples/char_gpt.py, the character-level GPT, trains as the same script on torch: its first 20
steps from the same initial weights on the same batches give torch's losses, with the fused
attention (F.scaled_dot_product_attention) and with the attention written out; and it learns (a
smaller run than the default, 240 steps, takes its validation loss well below the text's unigram
entropy; the default run reaches about 1.7 nats against 3.0)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tests.examples.scripts import EXAMPLES, as_torch, run_script

SCRIPT = EXAMPLES / "char_gpt.py"
MODEL = "model = GPT(vocab_size, args.block_size, args.n_layer, args.n_head, args.n_embd, args.dropout)\n"
BATCH = "    ix = torch.randint(len(source) - args.block_size, (args.batch_size,))\n"
IMPORTS = (("import graphnn as torch", "import torch"), ("import graphnn.nn as nn", "import torch.nn as nn"),
           ("import graphnn.nn.functional as F", "import torch.nn.functional as F"))
SMALL = ["--epochs", "2", "--steps", "10", "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16",
         "--batch-size", "4", "--eval-batches", "2", "--sample-length", "20"]


def epoch_numbers(text: str) -> np.ndarray:
    lines = [line for line in text.splitlines() if line.startswith("epoch ") or "entropy" in line]
    return np.array([float(v) for line in lines for v in re.findall(r"\d+\.\d+", line)])


@pytest.mark.parametrize("attention", [[], ["--manual-attention"]], ids=["flash", "manual"])
def test_twenty_steps_match_torch_from_the_same_weights_and_batches(attention):
    source = SCRIPT.read_text()
    assert MODEL in source and BATCH in source
    # the same batches in both runs: indices from one seeded generator per run
    batches = "    ix = [int(i) for i in INDICES.integers(0, len(source) - args.block_size, args.batch_size)]\n"
    source = source.replace(BATCH, batches)
    initial: dict = {}
    records = MODEL + "INITIAL.update({k: v.numpy().copy() for k, v in model.state_dict().items()})\n"
    ours = run_script(SCRIPT, source.replace(MODEL, records), SMALL + attention,
                      {"INITIAL": initial, "INDICES": np.random.default_rng(0)})
    loads = MODEL + "model.load_state_dict({k: torch.tensor(v) for k, v in INITIAL.items()})\n"
    theirs = run_script(SCRIPT, as_torch(source, IMPORTS).replace(MODEL, loads), SMALL + attention,
                        {"INITIAL": initial, "INDICES": np.random.default_rng(0)})
    a, b = epoch_numbers(ours), epoch_numbers(theirs)
    assert a.shape == b.shape and a.size >= 7  # entropy, then train and validation loss per epoch
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)
    assert "--- sample" in ours and len(ours.split("--- sample")[1]) > 20


def test_it_learns_the_text():
    out = run_script(SCRIPT, SCRIPT.read_text(), ["--epochs", "3", "--steps", "80", "--n-layer", "2", "--n-embd", "64",
                                                  "--block-size", "32", "--sample-length", "40"], {})
    entropy = float(re.search(r"unigram entropy (\d+\.\d+)", out).group(1))
    losses = [float(v) for v in re.findall(r"validation loss (\d+\.\d+)", out)]
    assert losses[-1] < losses[0] and losses[-1] < entropy - 0.5, (losses, entropy)
