"""Running a benchmark's measurements in a process of their own.

Thread pools of different libraries in one process contend for the same cores (torch's OpenMP,
JAX's, numpy's OpenBLAS and graphnn's libgomp each keep threads that spin after their work), and
libgomp reads its settings once per process; so the benchmarks time each contender in a fresh
subprocess: ``python <script> --worker '<json task>'``, which prints its result as one JSON line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_worker(script: str, task: dict, env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``script --worker <task as JSON>`` in a fresh Python process with ``env`` added to
    this one's environment (a value of None removes that variable) and return the JSON object
    of its last line of output. A failed worker raises RuntimeError with the end of its stderr."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    result = subprocess.run([sys.executable, script, "--worker", json.dumps(task)], capture_output=True, text=True,
                            env=environment, timeout=timeout)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{Path(script).name} worker {task} failed (exit {result.returncode}):\n"
                           f"{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def worker_task(argv: list[str]) -> dict | None:
    """The task of a worker process (``--worker <json>`` among ``argv``), or None in the parent."""
    if "--worker" not in argv:
        return None
    return json.loads(argv[argv.index("--worker") + 1])
