"""The examples run to completion and reach the book's numbers (a reduced run for digits)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, check=True, timeout=600)
    return out.stdout


def test_thermometer_matches_the_book(tmp_path):
    text = run("examples/thermometer.py", "--plot", str(tmp_path / "t.png"))
    final = re.search(r"Epoch 3000, Training loss ([\d.]+), Validation loss ([\d.]+)", text)
    assert final and 3.155 <= float(final.group(1)) <= 3.165
    weight = float(re.search(r"weight Parameter containing:\ntensor\(\[\[\s*([-\d.]+)\]\]", text).group(1))
    bias = float(re.search(r"bias Parameter containing:\ntensor\(\[\s*([-\d.]+)\]", text).group(1))
    assert 5.07 <= weight <= 5.11 and -16.1 <= bias <= -15.9
    assert "(hidden_linear): Linear(in_features=1, out_features=8, bias=True)" in text
    assert "hidden_linear.weight torch.Size([8, 1])" in text  # as the book prints it


def test_digits_reduced_run_reaches_90_percent():
    text = run("examples/digits.py", "--epochs", "3", "--plot", "", "--verbose", "0")
    accuracy = float(re.search(r"final test accuracy ([\d.]+)", text).group(1))
    assert accuracy >= 0.90
    assert len(re.findall(r"^Epoch \d+, lr", text, re.M)) == 3
    assert re.search(r"pred \d true \d", text)


def test_digits_cnn_beats_the_fully_connected_network():
    text = run("examples/digits_cnn.py", "--compare-mlp", "--verbose", "0")
    cnn = float(re.search(r"final test accuracy ([\d.]+)", text).group(1))
    mlp = float(re.search(r"fully connected network after 20 epochs: test accuracy ([\d.]+)", text).group(1))
    assert cnn > mlp and cnn >= 0.98, (cnn, mlp)
    assert "(block1): Sequential(\n    (0): Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" in text
    assert re.search(r"pred \d true \d", text)


def test_optimizer_comparison_ranks_as_in_the_book(tmp_path):
    """SGD is slowest; Momentum, RMSprop and Adam reach the noise floor (variance 0.01) in 10 epochs."""
    text = run("examples/optimizers.py", "--plot", str(tmp_path / "o.png"))
    final = dict(re.findall(r"(\w+) ([\d.]+)", text.split("mean loss over the last epoch:")[1].splitlines()[0]))
    losses = {name: float(value) for name, value in final.items()}
    assert set(losses) == {"SGD", "Momentum", "RMSprop", "Adam"}
    assert all(losses["SGD"] > 2 * losses[name] for name in ("Momentum", "RMSprop", "Adam")), losses
    assert all(0.008 < losses[name] < 0.016 for name in ("Momentum", "RMSprop", "Adam")), losses
    assert len(re.findall(r"^epoch\s+\d+ SGD", text, re.M)) == 10
