"""How many threads a compiled step runs on, and how OpenMP's idle threads wait.

The generated C splits large loops and GEMMs across OpenMP's threads (codegen/c.py decides which
by their size). A parallel region ends when its last thread is done, so on a machine where
another process keeps a core busy, a region waits for whichever thread the operating system has
descheduled: on a 2-core machine a 0.5 ms MLP step took 15-40 ms while another process ran. Two
things keep a step fast when its cores are shared:

- **Bounded spinning.** After a parallel region, libgomp's threads spin for ``GOMP_SPINCOUNT``
  rounds of a pause loop before they sleep: 300,000 by default, 10-15 ms on current x86 cores. A
  thread spinning that long takes its core from the other process, and the scheduler then holds
  it back when it has work. graphnn loads libgomp with ``GOMP_SPINCOUNT`` = ``SPIN_COUNT``
  (a fraction of a millisecond: enough to bridge the gaps between one step's regions and between
  steps of a loop) unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set. libgomp reads them
  once, when the first library that links it loads; the variable is set around that load only,
  so child processes see the environment as it was.
- **One thread where two do not pay** (``ThreadChoice``). Each compiled entry point, per batch
  size, times a few of its calls on OpenMP's whole team and a few on one thread, runs on the
  faster, and tries the other again now and then, the more rarely the more a try costs (at most
  ``BUDGET`` of the time); a run of slow calls brings the next try forward. A batch size whose
  calls start no parallel region is left alone. Every kernel gives the same numbers on any number
  of threads (a thread owns whole outputs, and each output's sums run in one order), so the
  choice changes the time a step takes, never its results.

``GRAPHNN_THREADS=openmp`` turns both off: OpenMP as its own variables configure it, every
region that is large enough on the whole team. ``GRAPHNN_THREADS=N`` (a number) runs every such
region on N threads, and setting ``OMP_NUM_THREADS`` fixes the team too: no measured choice.

A process that loaded libgomp before graphnn's first library (``import torch`` does: its wheel
carries a libgomp.so.1 that graphnn's libraries then share) keeps the spinning it was loaded with;
set ``GOMP_SPINCOUNT`` before Python starts to bound it there.
"""
from __future__ import annotations

import contextlib
import os
from time import perf_counter

SPIN_COUNT = 10_000
"""libgomp's spin rounds before an idle thread sleeps, where the user sets neither
``OMP_WAIT_POLICY`` nor ``GOMP_SPINCOUNT`` (libgomp's own default: 300,000)."""
TRIAL = 3
"""Calls timed on each team size per try; their median is compared."""
SWITCH = 0.9
"""The other team size is taken when its median call is at most this fraction of the current's."""
BUDGET = 0.02
"""The share of the time that tries of the slower team size may cost."""
MIN_INTERVAL, MAX_INTERVAL = 0.05, 5.0
"""Seconds between tries, at least and at most."""
SLOW = 2.0
"""TRIAL calls in a row this many times slower than the current team size's last median start a
try at once (another process has taken a core, say)."""
SIZES = 64
"""Batch sizes whose choice is kept per entry point (more are measured afresh)."""
MODES = ("auto", "openmp")


def mode() -> str | int:
    """``$GRAPHNN_THREADS``: ``auto`` (the default: bounded spinning and the measured choice),
    ``openmp`` (neither), or a number of threads for every parallel region."""
    value = os.environ.get("GRAPHNN_THREADS", "").strip().lower() or "auto"
    if value in MODES:
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(f"GRAPHNN_THREADS={os.environ['GRAPHNN_THREADS']!r}: expected auto (graphnn runs each call on "
                     "one thread or on OpenMP's team, whichever it measured faster), openmp (OpenMP's own settings) "
                     "or a number of threads")


def openmp_defaults() -> dict[str, str]:
    """The variables graphnn sets for libgomp where the user did not (see the module docstring)."""
    if mode() == "openmp" or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return {}
    return {"GOMP_SPINCOUNT": str(SPIN_COUNT)}


@contextlib.contextmanager
def openmp_environment():
    """graphnn's defaults for libgomp's variables in the process environment while a library
    loads (libgomp reads them when it is loaded), removed again afterwards."""
    added = openmp_defaults()
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def configure(library) -> "ThreadChoice | None":
    """Set up the team size of a library's calls: the measured choice that runs them (returned),
    or None where there is nothing to choose: ``GRAPHNN_THREADS=openmp``, ``GRAPHNN_THREADS=N``
    (set here), ``OMP_NUM_THREADS`` set, or a single core."""
    setting = mode()
    if isinstance(setting, int):
        library.function("graphnn_set_threads")(setting)
        return None
    if setting == "openmp" or os.environ.get("OMP_NUM_THREADS") or _cores() < 2:
        return None
    return ThreadChoice(library.function("graphnn_set_threads"), library.function("graphnn_parallel_regions"))


def _cores() -> int:
    """The cores this process may run on (what libgomp's team size defaults to)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Size:
    """The choice for one batch size: ``threads`` (0: OpenMP's team; 1: one thread), when the
    next try is due, and the calls timed in a try under way."""

    __slots__ = ("threads", "due", "samples", "slow", "slow_calls")

    def __init__(self) -> None:
        self.threads = 0
        self.due = 0.0  # the first try starts at the second call
        self.samples: list[float] = []
        self.slow = float("inf")  # a call slower than this counts towards starting a try early
        self.slow_calls = 0


SERIAL = _Size()
"""The state of a batch size whose calls start no parallel region: nothing to choose."""


class ThreadChoice:
    """Runs a library's calls on OpenMP's team or on one thread, whichever its recent calls of
    the same batch size ran faster on (see the module docstring)."""

    def __init__(self, set_threads, parallel_regions) -> None:
        self.set_threads, self.parallel_regions = set_threads, parallel_regions
        self.threads = 0  # the library's setting now
        self.sizes: dict[int, _Size] = {}

    def __call__(self, function, batch: int, table) -> None:
        size = self.sizes.get(batch)
        if size is None:
            return self._first(function, batch, table)
        if size is SERIAL:
            function(batch, table)
            return
        start = perf_counter()
        if start >= size.due:
            return self._try(size, function, batch, table)
        if self.threads != size.threads:
            self._set(size.threads)
        function(batch, table)
        if perf_counter() - start > size.slow:
            size.slow_calls += 1
            if size.slow_calls >= TRIAL:
                size.due = 0.0
        else:
            size.slow_calls = 0

    def _set(self, threads: int) -> None:
        self.set_threads(threads)
        self.threads = threads

    def _first(self, function, batch: int, table) -> None:
        """The first call of a batch size, on the whole team: does it start a parallel region?"""
        if len(self.sizes) >= SIZES:
            self.sizes.clear()
        if self.threads != 0:
            self._set(0)
        before = self.parallel_regions()
        function(batch, table)
        self.sizes[batch] = _Size() if self.parallel_regions() != before else SERIAL

    def _try(self, size: _Size, function, batch: int, table) -> None:
        """One call of a try: TRIAL calls on the current team size, then TRIAL on the other; after
        the last, keep the faster and schedule the next try."""
        current, other = size.threads, 1 - size.threads
        threads = current if len(size.samples) < TRIAL else other
        if self.threads != threads:
            self._set(threads)
        start = perf_counter()
        function(batch, table)
        size.samples.append(perf_counter() - start)
        if len(size.samples) < 2 * TRIAL:
            return
        mine, theirs = _median(size.samples[:TRIAL]), _median(size.samples[TRIAL:])
        if theirs < SWITCH * mine:
            size.threads, mine, theirs = other, theirs, mine
        loss = TRIAL * max(theirs - mine, 0.0)  # what trying the slower team size costs
        size.due = perf_counter() + min(MAX_INTERVAL, max(MIN_INTERVAL, loss / BUDGET))
        size.slow = SLOW * mine
        size.samples, size.slow_calls = [], 0


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]
