"""After a fuzz run: what was tried, what failed, and how graphnn's errors compare with torch's."""
from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from tests.fuzz.run import summary
    from tests.fuzz.test_fuzz import RESULTS

    if not RESULTS:
        return
    terminalreporter.section("differential fuzzing against torch")
    for backend in sorted({r.backend for r in RESULTS}):
        terminalreporter.write_line(f"backend {backend}:")
        for line in summary([r for r in RESULTS if r.backend == backend]).splitlines():
            terminalreporter.write_line("  " + line)
