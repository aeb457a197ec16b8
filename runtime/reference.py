"""The numpy reference backend: a straightforward interpreter of a Graph.

It is the executable specification every native backend is tested against, so it favours
obviousness over speed: one numpy call per node, float32 by default and float64 on request (for
gradient checks against finite differences).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from graphnn.evaluate import EVALUATORS, dtype_of, evaluate, philox4x32, philox_uniform  # noqa: F401 (re-exported)
from graphnn.ir import Graph, Node, evaluate_shape


def run(graph: Graph, feeds: Mapping[str, np.ndarray], batch: int, precision: type = np.float32):
    """Evaluate every output and update of ``graph``.

    ``feeds`` maps each leaf's name to its value; ``batch`` binds the symbol B. Returns the pair
    (outputs, updates) of name -> new array; nothing in ``feeds`` is modified.
    """
    env: dict[int, np.ndarray] = {}
    with np.errstate(all="ignore"):  # Piecewise evaluates every branch; the unused ones may overflow
        for node in graph.live_nodes():
            env[node.id] = _evaluate(node, env, feeds, batch, precision)
    outputs = {name: env[n.id] for name, n in graph.outputs.items()}
    updates = {name: env[n.id] for name, n in graph.updates.items()}
    return outputs, updates


def _evaluate(node: Node, env: dict, feeds: Mapping, batch: int, precision: type) -> np.ndarray:
    args = [env[i.id] for i in node.inputs]
    if node.op in ("input", "param", "buffer", "hyper"):
        shape = evaluate_shape(node.shape, batch)
        value = np.asarray(feeds[node.attrs["name"]])
        if value.shape != shape:
            raise ValueError(f"leaf {node.ref} expects shape {shape}, got {value.shape}")
        return value.astype(dtype_of(node, precision), copy=False)
    return evaluate(node, args, batch, precision)
