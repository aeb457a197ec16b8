"""The CPU runtime: compile generated C with the system compiler, cache it, load it with cffi.

The cache lives in a directory (``$GRAPHNN_CACHE_DIR``, default ``~/.cache/graphnn``), keyed by a
hash of the source, the compiler's identity and the flags, so a second process compiling the
same model loads the library without running the compiler. Libraries are written to a temporary
file and renamed into place, so concurrent compiles never see half a file; each library has a
sidecar with its SHA-256, and a library whose bytes do not match is rebuilt.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import cffi

FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp"],
    ["-O3", "-fopenmp"],
    ["-O3", "-fopenmp-simd"],
    ["-O2"],
)
"""Tried in order: the first set the compiler accepts is used (portable fallbacks last)."""


class CompileError(RuntimeError):
    """The C compiler is missing or rejected the generated source."""


@functools.lru_cache(maxsize=None)
def compiler() -> tuple[str, str, tuple]:
    """(path, identity, flags) of the C compiler: ``$CC`` or cc/gcc/clang on the PATH."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in candidates:
        path = shutil.which(name)
        if path is None:
            continue
        version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.splitlines()
        identity = f"{path} {version[0] if version else ''} {_cpu()}"
        for flags in FLAG_SETS:
            if _accepts(path, flags):
                return path, identity, tuple(flags)
    raise CompileError(
        "no C compiler found (looked for " + ", ".join(candidates) + "); install gcc or clang, or set $CC, "
        "or use backend='numpy'"
    )


def _cpu() -> str:
    """What -march=native compiles for: a library built on one CPU must not load on another that
    shares the cache directory."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return platform.machine() + " " + platform.processor()
    lines = [line for line in info.splitlines() if line.startswith(("model name", "flags"))]
    return hashlib.sha256("\n".join(sorted(set(lines))).encode()).hexdigest()[:16]


def _accepts(path: str, flags: list) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe.c"
        source.write_text("#include <math.h>\nint probe(int n) { float s = 0; for (int i = 0; i < n; ++i) s += sinf(i); return (int)s; }\n")
        result = subprocess.run([path, *flags, "-shared", "-fPIC", str(source), "-o", str(Path(tmp) / "probe.so"), "-lm"],
                                capture_output=True)
        return result.returncode == 0


class Library:
    """A compiled library (one translation unit, or several compiled side by side and linked) with its
    entry points loaded through cffi."""

    def __init__(self, source: str, declarations: str, cache: Path, units: list[str] | None = None) -> None:
        """``units``: the translation units ``source`` splits into, compiled in parallel and then
        linked (default: the source as one unit)."""
        self.source = source
        self.units = units or [source]
        path, identity, flags = compiler()
        self.key = hashlib.sha256("\n".join([source, identity, " ".join(flags)]).encode()).hexdigest()[:32]
        self.cache = Path(cache)
        self.path = self.cache / f"graphnn_{self.key}.so"
        self.compiled = False
        self.ffi = cffi.FFI()
        self.ffi.cdef(declarations)
        self.lib = self._load_or_build(path, flags)

    def _load_or_build(self, compiler_path: str, flags: tuple):
        if self._valid():
            try:
                return self.ffi.dlopen(str(self.path))
            except OSError:
                pass  # unreadable: rebuild below
        self._build(compiler_path, flags)
        return self.ffi.dlopen(str(self.path))

    def _valid(self) -> bool:
        digest = self.path.with_suffix(".sha256")
        if not self.path.exists() or not digest.exists():
            return False
        return digest.read_text().strip() == hashlib.sha256(self.path.read_bytes()).hexdigest()

    def _build(self, compiler_path: str, flags: tuple) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        source_path = self.path.with_suffix(".c")
        _atomic_write(source_path, self.source.encode())
        fd, tmp = tempfile.mkstemp(prefix=self.path.stem, suffix=".so.tmp", dir=self.cache)
        os.close(fd)
        try:
            if len(self.units) == 1:
                _run([[compiler_path, *flags, "-shared", "-fPIC", str(source_path), "-o", tmp, "-lm"]], source_path)
            else:
                with tempfile.TemporaryDirectory(dir=self.cache) as work:
                    units = [Path(work) / f"unit{k}.c" for k in range(len(self.units))]
                    for path, text in zip(units, self.units):
                        path.write_text(text)
                    _run([[compiler_path, *flags, "-fPIC", "-c", str(p), "-o", str(p.with_suffix(".o"))] for p in units],
                         source_path)
                    _run([[compiler_path, *flags, "-shared", *(str(p.with_suffix(".o")) for p in units), "-o", tmp, "-lm"]],
                         source_path)
        except CompileError:
            os.unlink(tmp)
            raise
        data = Path(tmp).read_bytes()
        os.replace(tmp, self.path)
        _atomic_write(self.path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())
        self.compiled = True

    def function(self, name: str):
        return getattr(self.lib, name)


def _run(commands: list, source_path: Path) -> None:
    """Run compiler commands side by side; a failure of any raises CompileError."""
    running = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    errors = [process.communicate()[1] for process in running]  # all finish before any is checked
    for command, process, stderr in zip(commands, running, errors):
        if process.returncode != 0:
            raise CompileError(
                f"the C compiler failed on the generated source {source_path}:\n{' '.join(command)}\n{stderr[-4000:]}"
            )


def _atomic_write(path: Path, data: bytes) -> None:
    from graphnn.checkpoint import atomic_write

    atomic_write(path, data, durable=False)
