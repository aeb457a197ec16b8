"""The `graphnn` console script, run in a subprocess like a user runs it."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
GRAPHNN = [sys.executable, "-m", "graphnn.cli"]


def graphnn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*GRAPHNN, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_version_and_help():
    import graphnn as gn

    assert graphnn("--version").stdout.strip() == f"graphnn {gn.__version__}"
    help_text = graphnn("dump", "--help").stdout
    assert "--stage" in help_text and "examples:" in help_text


def test_graph_stage_matches_the_checked_in_text():
    result = graphnn("dump", "tests/data/tanh_net.py:net", "--input-shape", "B,1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (DATA / "tanh_net_graph.txt").read_text()


@pytest.mark.parametrize("stage", ["graph", "backward", "train", "plan", "memory", "c", "triton"])
def test_each_stage_as_text_and_json(stage):
    text = graphnn("dump", "examples/thermometer.py:model", "--stage", stage)
    assert text.returncode == 0, text.stderr
    if stage in ("graph", "backward", "train"):
        assert re.search(r"%\d+:f32\[B,8\] = ", text.stdout) and "# hidden_linear (Linear)" in text.stdout
    if stage == "plan":
        assert "kernel k0_" in text.stdout and "matmul[B,8]" in text.stdout
    if stage == "memory":
        assert "arena:" in text.stdout and "peak memory" in text.stdout
    if stage == "c":
        assert "int train_step(int64_t B, void* const* bufs)" in text.stdout
    if stage == "triton":
        assert "def train_step(B, buffers, arena):" in text.stdout and "@triton.jit" in text.stdout
        assert "# k0_hidden_activation: hidden_linear, hidden_activation" in text.stdout
    if stage not in ("c", "triton"):
        assert re.search(r"# parameters 25, flops/step \d+\*B\+\d+", text.stdout)
    as_json = graphnn("dump", "examples/thermometer.py:model", "--stage", stage, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    import jsonschema

    document = json.loads(as_json.stdout)
    jsonschema.validate(document, json.loads((ROOT / "graphnn" / "dump.schema.json").read_text()))
    assert document["schema"] == "graphnn.dump/1" and document["stage"] == stage


def test_all_stages_with_headings_to_a_file(tmp_path):
    out = tmp_path / "dump.txt"
    result = graphnn("dump", "examples/digits.py:model", "--stage", "all", "-o", str(out))
    assert result.returncode == 0 and result.stdout == ""
    text = out.read_text()
    for stage in ("graph", "backward", "train", "plan", "memory", "c", "triton"):
        assert f"==== {stage} ====" in text


def test_dump_of_the_convolutional_example(tmp_path):
    out = tmp_path / "cnn.txt"
    result = graphnn("dump", "examples/digits_cnn.py:model", "--stage", "all", "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "= window{kernel=(3,3), stride=(1,1), padding=(1,1), dilation=(1,1), fill=0.0}" in text
    assert "= unwindow{kernel=(3,3), stride=(1,1), padding=(1,1), dilation=(1,1)}" in text  # conv backward
    assert "/* k0_block1_0: pointwise over [1, 3, 3, B, 8, 8]" in text  # the first layer's patches, channels first
    assert " in [0,8) else 0.0" in text  # a padded load in the plan


def _check_dot(dot: str) -> None:
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True)
        return
    declared = set(re.findall(r'^\s*("?[\w.]+"?) \[', dot, re.M))  # without Graphviz: a structural check
    for a, b in re.findall(r'^\s*("?[\w.]+"?) -> ("?[\w.]+"?);', dot, re.M):
        assert a in declared and b in declared
    assert dot.count("{") == dot.count("}")


@pytest.mark.parametrize("stage", ["graph", "train", "plan"])
def test_dot_output_parses(stage):
    result = graphnn("dump", "examples/digits.py:model", "--stage", stage, "--format", "dot")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("digraph")
    if stage != "plan":
        assert 'label="layer1.0"' in result.stdout
    _check_dot(result.stdout)


def test_svg_renders_or_says_how_to_install_graphviz(tmp_path):
    out = tmp_path / "g.svg"
    result = graphnn("dump", "examples/thermometer.py:model", "--format", "svg", "-o", str(out))
    if shutil.which("dot"):
        assert result.returncode == 0 and out.read_text().lstrip().startswith("<?xml")
    else:
        assert result.returncode == 1 and "apt-get install graphviz" in result.stderr


@pytest.mark.parametrize("args,status,message", [
    (["nofile.py:model"], 1, "nofile.py: no such file"),
    (["tests/data/tanh_net.py:missing"], 1, "has no name 'missing'"),
    (["examples/digits.py:LOSS"], 1, "is not a Module"),
    (["tests/data/tanh_net.py:Broken", "--input-shape", "B,1"], 1, "could not be traced.*static graph"),
    (["examples/digits.py:model", "--input-shape", "B,x"], 2, "dimension 'x'"),
    (["examples/digits.py:model", "--stage", "nope"], 2, "invalid choice"),
    (["examples/digits.py:model", "--format", "gif"], 2, "invalid choice"),
    (["tests/data/tanh_net.py:net"], 2, "--input-shape"),
    (["examples/digits.py"], 2, "FILE.py:NAME"),
])
def test_errors_have_a_status_and_a_message_not_a_traceback(args, status, message):
    result = graphnn("dump", *args)
    assert result.returncode == status
    assert re.search(message, result.stderr)
    assert "Traceback" not in result.stderr


def test_bytes_moved_counts_the_elements_each_access_reaches():
    """A slice of a flat buffer counts as the slice, a broadcast scalar as one element, a matmul's
    operands as their (M, K) and (K, N) extents; hyperparameter scalars not at all."""
    from graphnn.dump import bytes_moved
    from graphnn.ir import B
    from graphnn.passes.plan import Buffer, Kernel, KernelPlan, Load, Store

    buffers = {name: Buffer(name, kind, size, "f32") for name, kind, size in [
        ("flat", "param", 100), ("hyper", "hyper", 3), ("x", "input", 7 * B), ("out", "output", 5 * B), ("tmp", "arena", 10)]}
    update = Kernel("k0", "pointwise", (10,),
                    loads=[Load("l0", "flat", 20, (1,), "f32"), Load("l1", "flat", 99, (0,), "f32"), Load("l2", "hyper", 0, (0,), "f32")],
                    stores=[Store("flat", "l0", 20, (1,), "f32"), Store("tmp", "l1", 0, (1,), "f32")])
    product = Kernel("k1", "matmul", (B, 5), stores=[Store("out", "acc", 0, (5, 1), "f32")], k=7,
                     a=Load("a", "x", 0, (7, 1), "f32"), b=Load("b", "flat", 0, (1, 7), "f32"))
    plan = KernelPlan([update, product], buffers, {})
    assert bytes_moved(plan) == 4 * (10 + 1 + 10 + 10) + 4 * (5 * B + 7 * B + 35)


LOOP = '''
import graphnn as torch
from graphnn import nn

model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.ones(5, 3), torch.zeros(5, 1)
for epoch in range(3):
    loss = nn.MSELoss()(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(loss.item())
'''


def test_dump_loop_shows_what_a_pytorch_loop_compiled_to(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    graph = graphnn("dump", "--loop", str(script))
    assert graph.returncode == 0, graph.stderr
    assert "==== recorded program 0: step ====" in graph.stdout and "# Linear (Linear backward)" in graph.stdout
    assert graph.stdout.count("==== recorded program") == 1  # one compiled step served iterations 2 and 3
    source = graphnn("dump", "--loop", str(script), "--stage", "c")
    assert source.returncode == 0 and "train_step" in source.stdout
    bad = graphnn("dump", "--loop", str(script), "--stage", "memory")
    assert bad.returncode == 2 and "--loop shows the stages graph, plan" in bad.stderr
