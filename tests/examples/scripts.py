"""Running an example script in this process, as written (graphnn) or with its imports turned
back into torch's, to compare the two runs' printed numbers."""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_script(path: Path, source: str, argv: list, namespace: dict) -> str:
    """What the script prints when ``source`` (its text, possibly edited) runs with ``argv``."""
    out, saved = io.StringIO(), sys.argv
    sys.argv = [str(path), *argv]
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(source, str(path), "exec"), {"__name__": "__main__", **namespace})
    finally:
        sys.argv = saved
    return out.getvalue()


def as_torch(source: str, imports: tuple) -> str:
    """The script with each graphnn import in ``imports`` replaced by torch's."""
    for ours, theirs in imports:
        assert ours in source, ours
        source = source.replace(ours, theirs)
    return source
