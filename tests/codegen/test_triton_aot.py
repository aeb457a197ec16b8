"""Every Triton kernel the backend generates for the test models compiles for real GPUs (H100,
sm_90, and A100, sm_80) with no GPU present: this catches what the interpreter accepts but the
compiler rejects (types, tl.dot shapes, shared memory). The compile runs in a subprocess,
because this process runs Triton in its interpreter."""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphnn as gn
from graphnn import nn, optim
from tests.graphnn.test_conv import small_cnn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpt_step  # noqa: E402
H100_SHARED = 227 * 1024


def models():
    """(model, loss, input shape, target) covering every kernel kind and Triton helper: matmul
    and attention
    epilogues, reductions (sum and max), BatchNorm, dropout draws, tanh, erf, expm1, log1p,
    convolution and pooling windows."""
    yield nn.Sequential(nn.Linear(1, 13), nn.Tanh(), nn.Linear(13, 1)), nn.MSELoss(), (9, 1), "float"
    yield (nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 16),
                         nn.GELU(), nn.Linear(16, 16), nn.ELU(), nn.Linear(16, 16), nn.Softplus(), nn.Linear(16, 5)),
           nn.CrossEntropyLoss(), (7, 20), "classes")
    # windows: padded patches, strided and grouped convolutions (guards with a divisor), max
    # pooling (-inf fill, first-maximum masks), average pooling over the covered elements
    yield small_cnn(nn), nn.CrossEntropyLoss(), (6, 2, 9, 9), "classes"
    # the GPT of examples/char_gpt.py (as benchmarks/gpt_step.py builds it), small: embedding
    # gathers and their scatter-add gradients, split heads as strided views, flash attention
    # (forward, dq, dk and dv kernels), LayerNorm, GELU, a tied output head; then with the
    # attention written out: batched matmuls of two activations, a sliced causal-mask buffer
    yield gpt_step.gpt(gn, 11, 8, 16, 2, 2), gpt_step.sequence_loss(gn), (5, 8), "tokens"
    yield gpt_step.gpt(gn, 11, 8, 16, 1, 2, attention="manual"), gpt_step.sequence_loss(gn), (5, 8), "tokens"
    # a time loop (an LSTM over 10 steps, more than are unrolled): the kernels of its step and of
    # the reverse loop of its gradient take the loop's position as an argument
    yield recurrent_net(), nn.CrossEntropyLoss(), (3, 10, 3), "classes"


def recurrent_net():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4, batch_first=True)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    return Net()


@functools.lru_cache(maxsize=None)
def generated_modules() -> tuple[tuple[str, Path], ...]:
    """(target kind, module file) of each module the Triton backend generates for ``models()``
    (made once for both capabilities)."""
    paths = []
    for model, loss, shape, target in models():
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.integers(0, 3, shape[0]) if target == "classes" else rng.standard_normal((shape[0], 1)).astype(np.float32)
        if target == "tokens":
            x, y = rng.integers(0, 11, shape), rng.integers(0, 11, shape)
        train = gn.compile(model, loss, optim.SGD(model.parameters(), lr=0.1, momentum=0.9), backend="triton")
        train.step(x, y)
        model.eval()
        predict = gn.compile(model, backend="triton")
        predict(x)  # forward in eval mode: running statistics
        for program in (train, predict):
            for executable in program.executables.values():
                paths += [(target, m.path) for m in executable.modules.values()]
    return tuple(paths)


def compile_ahead(paths: list, capability: int, tmp_path: Path) -> list:
    """runtime.gpu.compile_ahead's report of each module, compiled in as many subprocesses as
    there are cores (the suite itself runs on one), the modules shared out by size, largest
    first, each to the least loaded."""
    script = ("import json, sys\nfrom runtime.gpu import compile_ahead\n"
              "print(json.dumps([compile_ahead(p, int(sys.argv[1])) for p in sys.argv[2:]]))")
    shares: list[list[Path]] = [[] for _ in range(min(len(paths), os.cpu_count() or 1))]
    for path in sorted(paths, key=lambda p: -p.stat().st_size):
        min(shares, key=lambda share: sum(p.stat().st_size for p in share)).append(path)
    workers = []
    for k, share in enumerate(shares):
        env = {name: v for name, v in os.environ.items() if name != "TRITON_INTERPRET"}
        env["TRITON_CACHE_DIR"] = str(tmp_path / f"triton-cache-{k}")
        workers.append(subprocess.Popen([sys.executable, "-c", script, str(capability), *map(str, share)],
                                        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reports = {}
    for share, worker in zip(shares, workers):
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-4000:]
        reports.update(zip(share, json.loads(out.splitlines()[-1])))
    return [reports[path] for path in paths]


@pytest.mark.parametrize("capability", [90, 80])
def test_every_generated_kernel_compiles_for_the_gpu(tmp_path, capability):
    """sm_90: every module; sm_80 (where only the tensor-core instructions differ): the GPT's,
    which have every kernel kind but the time loop's."""
    paths = [path for target, path in generated_modules() if capability == 90 or target == "tokens"]
    assert len(paths) >= (6 if capability == 90 else 4)
    kernels = [k for module in compile_ahead(paths, capability, tmp_path) for k in module]
    kinds = {k["kind"] for k in kernels}
    assert kinds == {"pointwise", "reduce", "matmul", "scatter", "attention"}
    if capability == 90:
        assert any(re.match(r"k\d+_k\d+_lstm", k["name"]) for k in kernels)  # a time loop's step
    for k in kernels:
        assert k["cubin"] > 0, k
        assert k["shared"] <= H100_SHARED, k
        if k["kind"] in ("matmul", "attention"):
            assert k["tensor_cores"], f"{k['name']}: no mma/wgmma in the PTX"
