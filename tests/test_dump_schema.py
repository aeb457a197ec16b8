"""`graphnn dump --format json` follows graphnn/dump.schema.json for every example model and stage."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "graphnn" / "dump.schema.json").read_text())
TARGETS = {
    "thermometer": ["examples/thermometer.py:model"],
    "digits": ["examples/digits.py:model"],
    "digits eval": ["examples/digits.py:model", "--eval"],
    "digits_cnn": ["examples/digits_cnn.py:model"],
    "optimizers": ["examples/optimizers.py:Net"],
    "optimizers adam": ["examples/optimizers.py:Net", "--optimizer", "adam"],
    "embedding": ["tests/data/embedding_net.py:Bag"],
}


@pytest.mark.parametrize("target", TARGETS)
def test_every_stage_of_every_example_follows_the_schema(target, tmp_path, monkeypatch):
    import jsonschema

    from graphnn import cli
    from graphnn.dump import STAGES

    monkeypatch.chdir(ROOT)
    for stage in STAGES:
        out = tmp_path / f"{stage}.json"
        assert cli.main(["dump", *TARGETS[target], "--stage", stage, "--format", "json", "-o", str(out)]) == 0
        document = json.loads(out.read_text())
        jsonschema.validate(document, SCHEMA)
        assert document["schema"] == "graphnn.dump/1" and document["stage"] == stage


def test_the_schema_names_every_leaf_and_movement_op():
    """The ops the examples do not use are still in the schema's enum (a new movement op must be
    added there too)."""
    from graphnn.ir import LEAF_OPS
    from graphnn.passes.views import MOVEMENT

    ops = set(SCHEMA["properties"]["nodes"]["items"]["properties"]["op"]["enum"])
    assert set(LEAF_OPS) | set(MOVEMENT) | {"pointwise", "reduce", "matmul", "gather", "scatter_add", "iota", "rand",
                                            "detach"} <= ops


def test_a_model_that_slices_and_joins_follows_the_schema():
    """slice and pad nodes (a part's gradient), their attributes, and a plan reading them as views."""
    import jsonschema

    from graphnn import nn
    from graphnn.dump import STAGES, Request, Stages, to_json

    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(4, 6)

        def forward(self, x):
            a, b, c = self.l(x).split(2, dim=1)
            return (a * b.tanh()).masked_fill(c > 0, 0.0)[:, -1:] + c[:, :1]

    stages = Stages(Request(Heads(), ("B", 4), loss="mse"))
    ops = set()
    for stage in STAGES:
        document = json.loads(to_json(stages, stage))
        jsonschema.validate(document, SCHEMA)
        ops |= {(n["op"], tuple(sorted(n.get("attrs", {})))) for n in document.get("nodes", [])}
    assert ("slice", ("start", "step")) in ops and ("pad", ("fill", "start", "step")) in ops


def test_a_time_loop_follows_the_schema():
    """A scan node (an LSTM over more steps than are unrolled) and its loop kernels, at every
    stage; the plan's text shows each loop's kernels under it."""
    import jsonschema

    from graphnn import nn
    from graphnn.dump import STAGES, Request, Stages, text, to_json

    class Reader(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4, batch_first=True)

        def forward(self, x):
            return self.lstm(x)[0][:, -1]

    stages = Stages(Request(Reader(), ("B", 12, 3), loss="mse"))
    for stage in STAGES:
        document = json.loads(to_json(stages, stage))
        jsonschema.validate(document, SCHEMA)
        if stage == "train":
            assert [n["attrs"]["length"] for n in document["nodes"] if n["op"] == "scan"] == ["12", "12"]
        if stage == "plan":
            assert sum(k["kind"] == "loop" for k in document["kernels"]) == 2
    assert "over loop_t" in text(stages, "plan")
