"""Microseconds per training step: graphnn (C backend) against torch eager, torch.compile, JAX
(when installed: the `bench` extra) and graphnn's numpy reference, with the matmul GFLOP/s graphnn
achieves.

    python benchmarks/train_step.py [--rounds 5] [--no-compile] [--quick] [--cases mlp,cnn,...]

Each framework runs in a process of its own (in one process their thread pools contend for the
cores: on a 2-core machine that once inflated torch's MLP step from 1 ms to 87 ms and graphnn's
from 0.5 ms to 15 ms): a round starts one subprocess per framework and model, which builds the
step for each batch size of the model, warms it up and times it, and prints its times as a JSON
line. The rounds are interleaved (a slow spell of the machine hits every column) and each cell is
the median over the rounds.

Models: the MLP 784-300-100-10 (ReLU, CrossEntropy, SGD(lr=0.01, momentum=0.9)) at several
batch sizes, the same with Adam and AdamW (mlp_adam, mlp_adamw; their rows also time graphnn's
SGD step, so "vs graphnn SGD" below 1 is what the optimizer costs), the book's MNIST network with BatchNorm at batch 64 and 128, the thermometer model
(Linear(1,13), Tanh, Linear(13,1), 9 samples), the CNN of examples/digits_cnn.py (two
conv-BatchNorm-ReLU-maxpool blocks on 8x8 images) at batch 64 and 256, small MLPs 32-64-64-4
with SiLU and with Tanh at batch 32 (mlp_silu, mlp_tanh: steps dominated by pointwise work and
call overhead), a LeNet-style network (5x5 convolutions with 16 and 32 channels, each followed by
ReLU and 2x2 max pooling, on 28x28 images, then Linear layers 512-120-84-10) at batch 64, and a
wide MLP 1024-1024-1024-10 at batch 128 (mlp_1024), a 2-layer LSTM (input 64, hidden 128, 32
steps, a time loop in graphnn) at batch 32 (lstm) and the book's ResNet-18 of examples/resnet.py
on 28x28 digits at batch 64 (resnet18). Also graphnn's compile time (cold and cached)
and the Python overhead of one call. Each row's GFLOP/s is also given as a fraction of the
machine's measured ceiling: the best of its float32 multiply-add peak on every core and numpy's
sgemm (benchmarks/peak.py).
"""
from __future__ import annotations

import os

# numpy's OpenBLAS is held to its AVX2 kernel by the machine's environment; a fair comparison
# lets it use its best kernel. This must happen before numpy is imported, in this process only.
for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import graphnn as gn  # noqa: E402
from graphnn import nn, optim  # noqa: E402
from peak import cores  # noqa: E402
from processes import run_worker, worker_task  # noqa: E402

torch = None
"""torch, once a worker that needs it has imported it (the parent process never does)."""


def mlp(lib, batchnorm=False):
    layers = [lib.Flatten(), lib.Linear(784, 300)] + ([lib.BatchNorm1d(300)] if batchnorm else []) + [lib.ReLU()]
    layers += [lib.Linear(300, 100)] + ([lib.BatchNorm1d(100)] if batchnorm else []) + [lib.ReLU(), lib.Linear(100, 10)]
    return lib.Sequential(*layers)


def thermometer(lib):
    return lib.Sequential(lib.Linear(1, 13), lib.Tanh(), lib.Linear(13, 1))


def cnn(lib):
    """The convolutional network of examples/digits_cnn.py (8x8 images, 1 channel)."""
    def block(inputs, outputs):
        return [lib.Conv2d(inputs, outputs, 3, padding=1), lib.BatchNorm2d(outputs), lib.ReLU(), lib.MaxPool2d(2)]
    return lib.Sequential(*block(1, 32), *block(32, 64), lib.Flatten(), lib.Linear(64 * 2 * 2, 10))


def small_mlp(lib, activation: str):
    """32-64-64-4 with ``activation`` (a layer name both libraries have) after each hidden layer."""
    layer = getattr(lib, activation)
    return lib.Sequential(lib.Linear(32, 64), layer(), lib.Linear(64, 64), layer(), lib.Linear(64, 4))


def lenet(lib):
    """LeNet-style: two 5x5 convolutions (16 and 32 channels) with ReLU and 2x2 max pooling on
    28x28 images (28 -> 24 -> 12 -> 8 -> 4), then 512-120-84-10."""
    return lib.Sequential(lib.Conv2d(1, 16, 5), lib.ReLU(), lib.MaxPool2d(2), lib.Conv2d(16, 32, 5), lib.ReLU(),
                          lib.MaxPool2d(2), lib.Flatten(), lib.Linear(32 * 4 * 4, 120), lib.ReLU(), lib.Linear(120, 84),
                          lib.ReLU(), lib.Linear(84, 10))


def wide_mlp(lib):
    return lib.Sequential(lib.Linear(1024, 1024), lib.ReLU(), lib.Linear(1024, 1024), lib.ReLU(), lib.Linear(1024, 10))


def lstm(lib):
    """A 2-layer LSTM (input 64, hidden 128) over 32 steps, batch first, its last output through
    a Linear to 10 classes."""
    class Net(lib.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lib.LSTM(64, 128, num_layers=2, batch_first=True)
            self.head = lib.Linear(128, 10)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    return Net()


def resnet18(lib):
    """The book's ResNet-18 as examples/resnet.py writes it (1-channel 28x28 digits, width 64)."""
    source = (Path(__file__).resolve().parents[1] / "examples" / "resnet.py").read_text()
    namespace = {"nn": lib, "F": lib.functional}
    exec(source[source.index("class RestNetBasicBlock"):source.index("def fully_connected")], namespace)
    return namespace["RestNet18"]()


CASES = {
    "mlp": (lambda lib: mlp(lib), "ce", (784,)),
    "mnist_bn": (lambda lib: mlp(lib, batchnorm=True), "ce", (784,)),
    "thermometer": (thermometer, "mse", (1,)),
    "cnn": (cnn, "ce", (1, 8, 8)),
    "mlp_adam": (lambda lib: mlp(lib), "ce", (784,), "Adam"),
    "mlp_adamw": (lambda lib: mlp(lib), "ce", (784,), "AdamW"),
    "mlp_silu": (lambda lib: small_mlp(lib, "SiLU"), "ce", (32,)),
    "mlp_tanh": (lambda lib: small_mlp(lib, "Tanh"), "ce", (32,)),
    "lenet": (lenet, "ce", (1, 28, 28)),
    "mlp_1024": (wide_mlp, "ce", (1024,)),
    "lstm": (lstm, "ce", (32, 64)),
    "resnet18": (resnet18, "ce", (1, 28, 28)),
}
ROWS = {"mlp": (1, 16, 64, 256, 1024), "mnist_bn": (64, 128), "thermometer": (9,), "cnn": (64, 256),
        "mlp_adam": (1, 64, 1024), "mlp_adamw": (1, 64, 1024), "mlp_silu": (32,), "mlp_tanh": (32,), "lenet": (64,),
        "mlp_1024": (128,), "lstm": (32,), "resnet18": (64,)}
CLASSES = {"mlp_silu": 4, "mlp_tanh": 4}
"""The classes of a cross-entropy case's labels, where not 10."""
JAX_MLPS = {"mlp": ((784, 300, 100, 10), "relu"), "thermometer": ((1, 13, 1), "tanh"),
            "mlp_silu": ((32, 64, 64, 4), "silu"), "mlp_tanh": ((32, 64, 64, 4), "tanh"),
            "mlp_1024": ((1024, 1024, 1024, 10), "relu")}
"""The cases written for JAX: (layer sizes, activation) of each fully connected network."""
OPTIMIZERS = {"SGD": dict(lr=0.01, momentum=0.9), "Adam": dict(lr=1e-3), "AdamW": dict(lr=1e-3)}
"""Each case's optimizer (SGD unless the case names another) and its settings, in both libraries
(torch's default implementation of each: the single-tensor loop on the CPU)."""


def optimizer_of(case: str) -> str:
    return CASES[case][3] if len(CASES[case]) > 3 else "SGD"


def data(case: str, batch: int, rng):
    _, loss, features = CASES[case][:3]
    x = rng.standard_normal((batch, *features)).astype(np.float32)
    if loss == "ce":
        return x, rng.integers(0, CLASSES.get(case, 10), batch)
    y = rng.standard_normal((batch, 1)).astype(np.float32)
    return x, y


def graphnn_stepper(case: str, backend: str, x, y, optimizer: str | None = None):
    model = CASES[case][0](nn)
    loss = nn.CrossEntropyLoss() if CASES[case][1] == "ce" else nn.MSELoss()
    name = optimizer or optimizer_of(case)
    train = gn.compile(model, loss, getattr(optim, name)(model.parameters(), **OPTIMIZERS[name]), backend=backend)
    train.step(x, y)
    step = lambda: train.step(x, y)  # noqa: E731
    step.program = train
    return step


def matmul_flops(program, batch: int) -> int:
    """Useful matmul FLOPs of one step (2*M*N*K per matmul of the simplified train step)."""
    from graphnn.ir import evaluate_dim, numel
    from graphnn.passes.simplify import simplify

    def flops(nodes) -> int:  # a time loop's step once per position
        return sum(2 * evaluate_dim(numel(n.shape), batch) * evaluate_dim(n.inputs[0].shape[-1], batch)
                   if n.op == "matmul" else n.attrs["length"] * flops(n.attrs["body"].graph.live_nodes())
                   for n in nodes if n.op in ("matmul", "scan"))

    return flops(simplify(next(iter(program.graphs.values()))["step"]).nodes)


def jax_stepper(case: str, x, y):
    """The same step jitted whole by JAX (None when JAX is missing or for BatchNorm)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if case not in JAX_MLPS:  # BatchNorm, convolutions and Adam: not written for JAX here
        return None
    sizes, activation = JAX_MLPS[case]
    key = jax.random.PRNGKey(0)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        key, k1, k2 = jax.random.split(key, 3)
        bound = 1 / np.sqrt(a)
        params.append((jax.random.uniform(k1, (b, a), minval=-bound, maxval=bound),
                       jax.random.uniform(k2, (b,), minval=-bound, maxval=bound)))
    activation = {"relu": jax.nn.relu, "silu": jax.nn.silu, "tanh": jnp.tanh}[activation]

    def loss_fn(params, x, y):
        h = x.reshape(x.shape[0], -1)
        for k, (w, b) in enumerate(params):
            h = h @ w.T + b
            if k < len(params) - 1:
                h = activation(h)
        if CASES[case][1] == "ce":
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), y[:, None], 1))
        return jnp.mean((h - y) ** 2)

    @jax.jit
    def step(params, momentum, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        momentum = jax.tree_util.tree_map(lambda m, g: 0.9 * m + g, momentum, grads)
        params = jax.tree_util.tree_map(lambda p, m: p - 0.01 * m, params, momentum)
        return params, momentum, loss

    state = {"params": params, "momentum": jax.tree_util.tree_map(jnp.zeros_like, params)}
    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def run():
        state["params"], state["momentum"], loss = step(state["params"], state["momentum"], jx, jy)
        return loss.block_until_ready()

    run()
    return run


def torch_stepper(case: str, x, y, compiled: bool, device: str = "cpu"):
    model = CASES[case][0](torch.nn).to(device)
    loss_fn = torch.nn.CrossEntropyLoss() if CASES[case][1] == "ce" else torch.nn.MSELoss()
    name = optimizer_of(case)
    opt = getattr(torch.optim, name)(model.parameters(), **OPTIMIZERS[name])
    tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

    def step():
        opt.zero_grad()
        loss = loss_fn(model(tx), ty)
        loss.backward()
        opt.step()
        return loss

    if compiled:
        torch._dynamo.reset()  # a fresh model per case: start from an empty compile cache
        step = torch.compile(step)
    step()
    step()
    return step


def time_per_step(fn, budget: float = 0.25) -> float:
    """Median-friendly timing: as many steps as fit in the budget, at least 3; microseconds."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    repeats = max(3, min(10000, int(budget / max(once, 1e-7))))
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e6


WARM_UP = 10
"""Calls every step makes before it is timed, however long a call takes: graphnn's thread policy
times its first calls on both cores and on one thread before it settles (runtime/threads.py),
and torch's allocator and oneDNN's primitive caches warm up over the first calls too; with the
time budget alone, a 70 ms step would be timed during those trials."""


FRAMEWORKS = ("graphnn", "graphnn SGD", "torch eager", "torch.compile", "jax.jit", "numpy ref")
"""Every column a row can have, each timed in processes of its own."""


def stepper(framework: str, case: str, x, y):
    """One framework's step of ``case`` on (x, y), built and run once; None where that framework
    has no such step (JAX without JAX or for convolutions, graphnn SGD for an SGD case)."""
    if framework == "graphnn":
        return graphnn_stepper(case, "c", x, y)
    if framework == "graphnn SGD":  # what the optimizer costs over graphnn's SGD-momentum step
        return graphnn_stepper(case, "c", x, y, optimizer="SGD") if optimizer_of(case) != "SGD" else None
    if framework == "numpy ref":
        return graphnn_stepper(case, "numpy", x, y)
    if framework == "jax.jit":
        return jax_stepper(case, x, y)
    if _torch() is None:
        return None
    return torch_stepper(case, x, y, compiled=framework == "torch.compile")


def _torch():
    """torch, imported on first use (the parent process never imports it), or None when it is
    not installed."""
    global torch
    if torch is None and importlib.util.find_spec("torch") is not None:
        import torch as module

        torch = module
    return torch


def set_up_torch() -> None:
    """torch as a worker process runs it: on every core, torch.compile's log quiet."""
    if _torch() is not None:
        import logging
        import warnings

        torch.set_num_threads(cores())
        torch._logging.set_logs(dynamo=logging.ERROR, inductor=logging.ERROR)
        warnings.filterwarnings("ignore")


def time_framework(framework: str, case: str, batches, budget: float = 0.25) -> dict:
    """In this process: µs per step of ``framework`` on each batch size of ``case`` (after a
    warm-up of the same length), with graphnn's matmul FLOPs per step; {batch: {"us", "flops"}}."""
    rows = {}
    for batch in batches:
        x, y = data(case, batch, np.random.default_rng(0))
        fn = stepper(framework, case, x, y)
        if fn is None:
            continue
        for _ in range(WARM_UP):
            fn()
        time_per_step(fn, budget)
        rows[batch] = {"us": time_per_step(fn, budget)}
        if framework == "graphnn":
            rows[batch]["flops"] = matmul_flops(fn.program, batch)
    return rows


def frameworks(with_compile: bool, with_reference: bool, case: str) -> list[str]:
    """The columns timed for ``case``."""
    names = ["graphnn"] + (["graphnn SGD"] if optimizer_of(case) != "SGD" else [])
    if importlib.util.find_spec("torch") is not None:
        names += ["torch eager"] + (["torch.compile"] if with_compile else [])
    if importlib.util.find_spec("jax") is not None and case in JAX_MLPS:
        names.append("jax.jit")
    return names + (["numpy ref"] if with_reference else [])


def measure_case(case: str, batches, rounds: int, with_compile: bool, with_reference: bool,
                 isolated: bool = True, budget: float = 0.25) -> dict:
    """Each batch size's row: the median µs per step of every framework over ``rounds``
    interleaved rounds, each framework in a subprocess of its own per round (in this process
    with ``isolated=False``) timed for about ``budget`` seconds per batch size, and graphnn's
    matmul GFLOP/s. The slow numpy reference runs in half the rounds."""
    batches = list(batches)
    samples: dict[int, dict[str, list]] = {batch: {} for batch in batches}
    flops = {}
    for round_ in range(rounds):
        for framework in frameworks(with_compile, with_reference, case):
            if framework == "numpy ref" and round_ >= max(1, rounds // 2):
                continue
            if isolated:
                task = {"framework": framework, "case": case, "batches": batches, "budget": budget}
                rows = {int(b): row for b, row in run_worker(__file__, task).items()}
            else:
                rows = time_framework(framework, case, batches, budget)
            for batch, row in rows.items():
                samples[batch].setdefault(framework, []).append(row["us"])
                flops.setdefault(batch, row.get("flops"))
    result = {}
    for batch in batches:
        result[batch] = {name: statistics.median(values) for name, values in samples[batch].items()}
        result[batch]["GFLOP/s"] = flops[batch] / result[batch]["graphnn"] * 1e-3
    return result


def measure(case: str, batch: int, rounds: int, with_compile: bool, with_reference: bool,
            isolated: bool = True) -> dict:
    """One row (see measure_case)."""
    return measure_case(case, [batch], rounds, with_compile, with_reference, isolated)[batch]


def compile_times() -> tuple[float, float]:
    rng = np.random.default_rng(0)
    x, y = data("mnist_bn", 64, rng)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GRAPHNN_CACHE_DIR"] = cache
        times = []
        for _ in range(2):
            start = time.perf_counter()
            graphnn_stepper("mnist_bn", "c", x, y)
            times.append(time.perf_counter() - start)
        del os.environ["GRAPHNN_CACHE_DIR"]
    return times[0], times[1]


def gpu_main(args) -> None:
    """Steps per second on a CUDA GPU: graphnn's Triton backend against torch eager and
    torch.compile on the same device, with FLOPs and bytes per step and the fraction of the
    GPU's measured peak (a float32 matmul without TF32, a large copy) they reach."""
    if torch is None or not torch.cuda.is_available():
        raise SystemExit("--backend triton needs torch and a CUDA GPU")
    from graphnn.dump import bytes_moved
    from graphnn.ir import evaluate_dim

    device = torch.cuda.get_device_name()
    a = torch.randn(8192, 8192, device="cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    peak_flops = 2 * 8192**3 / cuda_seconds(lambda: a @ a)
    big = torch.empty(1 << 28, device="cuda")
    peak_bytes = 2 * big.numel() * 4 / cuda_seconds(lambda: big.clone())
    print(f"{device}: measured float32 matmul peak {peak_flops * 1e-12:.1f} TFLOP/s, copy {peak_bytes * 1e-9:.0f} GB/s")
    print("steps per second (median of interleaved rounds); ratio = graphnn / other")
    print(f"{'model':<10} {'batch':>5} {'graphnn':>10} {'eager':>10} {'compile':>10} {'vs eager':>9} {'vs compile':>10} "
          f"{'MFLOP':>9} {'MB':>8} {'% FLOP peak':>11} {'% BW peak':>9}")
    for case, batch in [("mlp", b) for b in (64, 256, 1024, 4096)] + [("mnist_bn", 64)]:
        rng = np.random.default_rng(0)
        x, y = data(case, batch, rng)
        steppers = {"graphnn": graphnn_stepper(case, "triton", x, y),
                    "eager": torch_stepper(case, x, y, compiled=False, device="cuda"),
                    "compile": torch_stepper(case, x, y, compiled=True, device="cuda")}
        samples = {name: [] for name in steppers}
        for _ in range(args.rounds):
            for name, fn in steppers.items():
                samples[name].append(cuda_seconds(fn))
        seconds = {name: statistics.median(v) for name, v in samples.items()}
        program = steppers["graphnn"].program
        flops = matmul_flops(program, batch)
        plan, _ = next(iter(program.executables.values())).plans["train_step"]
        moved = evaluate_dim(bytes_moved(plan), batch)
        rate = {name: 1 / s for name, s in seconds.items()}
        print(f"{case:<10} {batch:>5} {rate['graphnn']:>10.0f} {rate['eager']:>10.0f} {rate['compile']:>10.0f} "
              f"{rate['graphnn'] / rate['eager']:>8.2f}x {rate['graphnn'] / rate['compile']:>9.2f}x {flops * 1e-6:>9.1f} "
              f"{moved * 1e-6:>8.2f} {100 * flops / seconds['graphnn'] / peak_flops:>10.1f}% "
              f"{100 * moved / seconds['graphnn'] / peak_bytes:>8.1f}%", flush=True)


def cuda_seconds(fn, budget: float = 0.25) -> float:
    """Seconds per call of ``fn`` on the GPU, synchronised, as many calls as fit the budget."""
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    once = time.perf_counter() - start
    repeats = max(3, min(2000, int(budget / max(once, 1e-6))))
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    task = worker_task(sys.argv)
    if task is not None:  # a subprocess of the parent's rounds: one framework, one model
        if task["framework"].startswith("torch"):  # never imported beside graphnn: one libgomp would serve both
            set_up_torch()
        print(json.dumps(time_framework(task["framework"], task["case"], task["batches"], task["budget"])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    parser.add_argument("--quick", action="store_true",
                        help="batch 1 and 64 only (and the one batch of a model with one row), 3 rounds")
    parser.add_argument("--cases", default="mlp,mnist_bn,thermometer,cnn,mlp_silu,mlp_tanh,lenet,mlp_1024",
                        help="which models (comma-separated): "
                        + ", ".join(CASES))
    parser.add_argument("--backend", choices=["c", "triton"], default="c",
                        help="c: the CPU table; triton: steps per second on a CUDA GPU")
    args = parser.parse_args()
    if args.backend == "triton":
        set_up_torch()
        return gpu_main(args)
    rounds = 3 if args.quick else args.rounds
    cases = args.cases.split(",")
    batches = {case: [b for b in ROWS[case] if not args.quick or b in (1, 64) or len(ROWS[case]) == 1] for case in cases}
    timed = {name for case in cases for name in frameworks(not args.no_compile, True, case)}
    columns = [name for name in FRAMEWORKS if name in timed]
    import peak

    machine = peak.measure(measurements=3)
    ceiling = peak.ceiling(machine)
    print("\n".join(peak.report(machine)))
    print(f"µs per training step, median of {rounds} interleaved rounds, each framework in its own processes; "
          "ratio = other / graphnn (higher: graphnn faster)")
    print(f"GFLOP/s: graphnn's useful matmul work; % peak: of {ceiling:.0f} GFLOP/s, the best of the measured "
          f"float32 multiply-add peak on {machine['cores']} cores and numpy's sgemm (benchmarks/peak.py)")
    header = f"{'model':<12} {'batch':>5} " + " ".join(f"{c:>13}" for c in columns) + f" {'GFLOP/s':>8} {'% peak':>6}  " + " ".join(
        f"{'vs ' + c:>17}" for c in columns[1:])
    print(header)
    for case in cases:
        rows = measure_case(case, batches[case], rounds, not args.no_compile, with_reference=True)
        for batch, result in rows.items():
            cells = " ".join(f"{result.get(c, float('nan')):>13.1f}" for c in columns)
            ratios = " ".join(f"{result.get(c, float('nan')) / result['graphnn']:>16.2f}x" for c in columns[1:])
            print(f"{case:<12} {batch:>5} {cells} {result['GFLOP/s']:>8.1f} {100 * result['GFLOP/s'] / ceiling:>5.0f}%  "
                  f"{ratios}", flush=True)
    cold, cached = compile_times()
    print(f"\ngraphnn compile of the MNIST BatchNorm network (trace, autodiff, passes, C compiler, load): "
          f"cold {cold * 1e3:.0f} ms, cached {cached * 1e3:.0f} ms")
    tiny = nn.Sequential(nn.Linear(1, 1))
    train = gn.compile(tiny, nn.MSELoss(), optim.SGD(tiny.parameters(), lr=0.01), backend="c")
    x1 = np.ones((1, 1), np.float32)
    overhead = statistics.median(time_per_step(lambda: train.step(x1, x1)) for _ in range(5))
    print(f"Python overhead of one call (a Linear(1, 1) step, negligible native work): {overhead:.1f} µs")


if __name__ == "__main__":
    main()
