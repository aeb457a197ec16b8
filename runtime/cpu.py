"""The CPU runtime: compile generated C with the system compiler, cache it, load it with cffi.

The cache lives in a directory (``$GRAPHNN_CACHE_DIR``, default ``~/.cache/graphnn``), keyed by a
hash of the source, the compiler's identity and the flags, so a second process compiling the
same model loads the library without running the compiler. Libraries are written to a temporary
file and renamed into place, so concurrent compiles never see half a file; each library has a
sidecar with its SHA-256 and carries the digest of its own source, and a library whose bytes or
source digest do not match is rebuilt. Opening the cache removes temporary files that compiles
killed over an hour ago left behind.

``$GRAPHNN_SANITIZE`` (e.g. ``address,undefined``) builds with those sanitizers (a separate
cache entry); loading an AddressSanitizer library needs the ASan runtime preloaded (``make asan``).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import cffi

from graphnn.files import atomic_write
from runtime.threads import openmp_environment

FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp", "-fno-math-errno"],
    ["-O3", "-fopenmp", "-fno-math-errno"],
    ["-O3", "-fopenmp-simd", "-fno-math-errno"],
    ["-O2"],
)
"""Tried in order: the first set the compiler accepts is used (portable fallbacks last).
``-fno-math-errno``: generated code never reads errno, and a sqrtf that must set it for a
negative argument keeps GCC from vectorising it (Adam's update ran 10x slower, scalar). It
changes no result: IEEE sqrt is exact and the libm calls stay the same functions."""

LIBMVEC = "-DGRAPHNN_LIBMVEC"
"""Added to the flags where ``-lmvec`` links: the generated prelude then declares the libm
functions glibc vectorises (codegen/c.py), and libraries link ``-lmvec``."""

STALE_SECONDS = 3600
"""Temporary files and unit directories older than this are left by killed compiles; younger
ones may belong to a compile running now."""

DIGEST_MARK = "graphnn source digest "
"""Precedes the source digest each library carries as an exported string."""


class CompileError(RuntimeError):
    """The C backend cannot build: no compiler, the compiler rejected the source, or the cache
    directory is unusable."""


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
                if "-fno-math-errno" in flags and _accepts(path, [*flags, "-lmvec"]):
                    flags = [*flags, LIBMVEC]  # glibc's vector math library is there: link it
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


# -- sanitizers ------------------------------------------------------------------------------
def sanitizers() -> tuple[str, ...]:
    """The sanitizers ``$GRAPHNN_SANITIZE`` names (comma-separated, e.g. ``address,undefined``)."""
    value = os.environ.get("GRAPHNN_SANITIZE", "")
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if any(not re.fullmatch(r"[a-z][a-z-]*", name) for name in names):
        raise CompileError(f"GRAPHNN_SANITIZE={value!r}: expected sanitizer names separated by commas, "
                           "such as address,undefined")
    return names


def sanitize_flags() -> list[str]:
    """Compiler flags for the sanitizers of ``$GRAPHNN_SANITIZE`` (none when it is unset)."""
    names = sanitizers()
    if not names:
        return []
    if "address" in names and _asan() is None:
        raise CompileError(
            "GRAPHNN_SANITIZE=address needs the AddressSanitizer runtime loaded before Python starts: run with "
            "LD_PRELOAD=$(cc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 (as `make asan` does)"
        )
    return [f"-fsanitize={','.join(names)}", "-fno-omit-frame-pointer", "-g"]


@functools.lru_cache(maxsize=None)
def _asan():
    """The process's ASan memory-poisoning functions (poison, unpoison), or None without ASan."""
    process = ctypes.CDLL(None)
    try:
        functions = process.__asan_poison_memory_region, process.__asan_unpoison_memory_region
    except AttributeError:
        return None
    for function in functions:
        function.argtypes, function.restype = [ctypes.c_void_p, ctypes.c_size_t], None
    return functions


def poison(address: int, nbytes: int, poisoned: bool = True) -> None:
    """Mark memory unaddressable for AddressSanitizer (or addressable again); nothing without it."""
    functions = _asan()
    if functions is not None and nbytes > 0:
        functions[0 if poisoned else 1](address, nbytes)


# -- the cache -------------------------------------------------------------------------------
def open_cache(directory: Path) -> Path:
    """Create the cache directory if needed, with a clear error when it cannot be one, and (once
    per process) remove what compiles killed over an hour ago left in it."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = "it exists and is not a directory" if isinstance(error, FileExistsError) else str(error)
        raise CompileError(f"cannot use {directory} as the compile cache directory ($GRAPHNN_CACHE_DIR, default "
                           f"~/.cache/graphnn): {reason}; point GRAPHNN_CACHE_DIR at a directory") from None
    _remove_stale(str(directory))
    return directory


@functools.lru_cache(maxsize=None)
def _remove_stale(directory: str) -> None:
    """Remove graphnn's temporary files and unit directories not modified for STALE_SECONDS (only
    names graphnn gives them: the cache directory may be shared with other programs)."""
    cutoff = time.time() - STALE_SECONDS
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
            if entry.is_dir(follow_symlinks=False) and _is_unit_directory(entry):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif entry.is_file(follow_symlinks=False) and re.fullmatch(r"\.?graphnn_.*\.tmp", entry.name):
                os.unlink(entry.path)
        except OSError:
            pass  # removed by another process meanwhile


def _is_unit_directory(entry: os.DirEntry) -> bool:
    """A directory of translation units: ``graphnn_<key>.units.*``, or an unnamed ``tmp*`` one
    (older versions) that holds nothing but ``unit<k>.c`` and ``unit<k>.o`` files."""
    if entry.name.startswith("graphnn_") and ".units." in entry.name:
        return True
    if not entry.name.startswith("tmp"):
        return False
    names = os.listdir(entry.path)
    return bool(names) and all(re.fullmatch(r"unit\d+\.[co]", name) for name in names)


class Library:
    """A compiled library (one translation unit, or several compiled side by side and linked) with its
    entry points loaded through cffi."""

    def __init__(self, source: str, declarations: str, cache: Path, units: list[str] | None = None) -> None:
        """``units``: the translation units ``source`` splits into, compiled in parallel and then
        linked (default: the source as one unit)."""
        self.source = source
        self.units = units or [source]
        path, identity, flags = compiler()
        flags = (*flags, *sanitize_flags())
        self.digest = hashlib.sha256("\n".join([source, identity, " ".join(flags)]).encode()).hexdigest()
        self.key = self.digest[:32]
        self.cache = Path(cache)
        self.path = self.cache / f"graphnn_{self.key}.so"
        self.compiled = False
        self.ffi = cffi.FFI()
        self.ffi.cdef(declarations)
        open_cache(self.cache)
        self.lib = self._load_or_build(path, flags)

    def _load_or_build(self, compiler_path: str, flags: tuple):
        if self._valid():
            try:
                return self._open()
            except OSError:
                pass  # unreadable: rebuild below
        self._build(compiler_path, flags)
        return self._open()

    def _open(self):
        """Load the library, with graphnn's defaults for OpenMP's variables in the environment
        (libgomp reads them once, when the first library that links it loads; runtime/threads.py)."""
        with openmp_environment():
            return self.ffi.dlopen(str(self.path))

    def _valid(self) -> bool:
        """The entry is whole (its bytes match the sidecar's checksum) and was built from this
        source, compiler and flags (it carries their digest): only then is it loaded."""
        try:
            data = self.path.read_bytes()
            recorded = self.path.with_suffix(".sha256").read_bytes().strip()
        except OSError:
            return False
        return recorded == hashlib.sha256(data).hexdigest().encode() and self._stamp().encode() in data

    def _stamp(self) -> str:
        return DIGEST_MARK + self.digest

    def _build(self, compiler_path: str, flags: tuple) -> None:
        # the digest as an exported string: checked on load, so another library under this key is rebuilt
        stamp = f'\nconst char graphnn_source_digest[] = "{self._stamp()}";\n'
        tmp = None
        try:
            source_path = self.path.with_suffix(".c")
            _atomic_write(source_path, (self.source + stamp).encode())
            fd, tmp = tempfile.mkstemp(prefix=self.path.stem, suffix=".so.tmp", dir=self.cache)
            os.close(fd)
            self._compile([compiler_path, *flags], source_path, stamp, tmp)
            data = Path(tmp).read_bytes()
            os.replace(tmp, self.path)
            tmp = None
            _atomic_write(self.path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())
        except OSError as error:  # a full disk, or the cache directory removed meanwhile
            raise CompileError(f"could not build {self.path.name} in the compile cache {self.cache}: {error}") \
                from error
        finally:
            if tmp is not None:  # the compiler may have removed it already on failure
                Path(tmp).unlink(missing_ok=True)
        self.compiled = True

    def _compile(self, cc: list, source_path: Path, stamp: str, output: str) -> None:
        """Compile the source (or its units side by side, then link them) into ``output``."""
        libraries = ["-lmvec", "-lm"] if LIBMVEC in cc else ["-lm"]
        if len(self.units) == 1:
            _run([[*cc, "-shared", "-fPIC", str(source_path), "-o", output, *libraries]], source_path)
            return
        with tempfile.TemporaryDirectory(prefix=f"{self.path.stem}.units.", dir=self.cache) as work:
            units = [Path(work) / f"unit{k}.c" for k in range(len(self.units))]
            for k, (path, text) in enumerate(zip(units, self.units)):
                path.write_text(text + stamp if k == 0 else text)
            objects = [str(path.with_suffix(".o")) for path in units]
            _run([[*cc, "-fPIC", "-c", str(path), "-o", obj] for path, obj in zip(units, objects)], source_path)
            _run([[*cc, "-shared", *objects, "-o", output, *libraries]], source_path)

    def function(self, name: str):
        return getattr(self.lib, name)


def _run(commands: list, source_path: Path) -> None:
    """Run compiler commands side by side; a failure of any raises CompileError."""
    env = _compiler_environment()
    running = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for c in commands]
    errors = [process.communicate()[1] for process in running]  # all finish before any is checked
    for command, process, stderr in zip(commands, running, errors):
        if process.returncode != 0:
            raise CompileError(
                f"the C compiler failed on the generated source {source_path}:\n{' '.join(command)}\n{stderr[-4000:]}"
            )


def _compiler_environment() -> dict | None:
    """The environment for compiler processes: without an ASan runtime preloaded for Python (it
    only slows the compiler down), else unchanged (None)."""
    preload = os.environ.get("LD_PRELOAD", "")
    kept = [p for p in preload.replace(":", " ").split() if not os.path.basename(p).startswith("libasan")]
    if not preload or len(kept) == len(preload.replace(":", " ").split()):
        return None
    return {**os.environ, "LD_PRELOAD": " ".join(kept)}


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write(path, data, durable=False)
