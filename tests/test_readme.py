"""The README's quickstart runs as written."""
from __future__ import annotations

import re
from pathlib import Path


def test_quickstart_runs(capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    assert "Sequential(" in capsys.readouterr().out
