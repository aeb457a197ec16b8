"""The ``graphnn`` command line: ``graphnn dump`` shows every stage of the compiler."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

EXAMPLES = """examples:
  graphnn dump examples/thermometer.py:model                      the traced forward, text
  graphnn dump examples/digits.py:model --stage plan              fused kernels of the train step
  graphnn dump examples/digits.py:model --stage all -o dump.txt   every stage, with headings
  graphnn dump mypkg.models:Net --input-shape B,1,28,28 --loss cross_entropy --stage train
  graphnn dump examples/digits.py:model --format svg -o graph.svg
  graphnn dump --loop examples/thermometer_loop.py --stage c      what the script's PyTorch loop compiled to
"""


class UsageError(Exception):
    """Bad arguments: exit status 2."""


class LoadError(Exception):
    """The target cannot be loaded or traced: exit status 1."""


def parse_shape(text: str, what: str) -> tuple:
    """'64,784' or 'B,1,28,28': the first dimension is the symbolic batch."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UsageError(f"{what}: expected comma-separated dimensions like B,784, got {text!r}")
    dims = []
    for k, part in enumerate(parts):
        if part == "B" and k == 0:
            dims.append("B")
        elif part.isdigit() and int(part) > 0:
            dims.append(int(part))
        else:
            raise UsageError(f"{what}: dimension {part!r} in {text!r} is not a positive integer (only the first may be B)")
    return tuple(dims)


def load_target(spec: str):
    """(Module, the defining module's globals) for 'path/to/file.py:NAME' or 'package.module:NAME'."""
    from graphnn.nn import Module

    if ":" not in spec:
        raise UsageError(f"TARGET must be FILE.py:NAME or package.module:NAME, got {spec!r}")
    where, name = spec.rsplit(":", 1)
    try:
        if where.endswith(".py") or "/" in where:
            path = Path(where)
            if not path.exists():
                raise LoadError(f"{where}: no such file")
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            namespace = importlib.util.module_from_spec(module_spec)
            sys.path.insert(0, str(path.resolve().parent))
            module_spec.loader.exec_module(namespace)
        else:
            namespace = importlib.import_module(where)
    except LoadError:
        raise
    except Exception as error:  # the user's file failed to import
        raise LoadError(f"{where}: could not be loaded: {type(error).__name__}: {error}") from error
    if not hasattr(namespace, name):
        raise LoadError(f"{where}: has no name {name!r}")
    value = getattr(namespace, name)
    try:
        if isinstance(value, type) and issubclass(value, Module):
            value = value()
        elif callable(value) and not isinstance(value, Module):
            value = value()
    except Exception as error:
        raise LoadError(f"{where}:{name}: calling it to build the model failed: {type(error).__name__}: {error}") from error
    if not isinstance(value, Module):
        raise LoadError(f"{where}:{name} is not a Module, a Module subclass or a function returning one "
                        f"(it is a {type(value).__name__})")
    return value, vars(namespace)


def dump_loop(args) -> str:
    """Run the script TARGET (its output discarded), then show its compiled recorded programs."""
    import contextlib
    import io
    import runpy

    from graphnn import dump as d

    path = Path(args.target)
    if not path.exists():
        raise LoadError(f"{args.target}: no such file")
    if args.stage not in d.LOOP_STAGES:
        raise UsageError(f"--loop shows the stages {', '.join(d.LOOP_STAGES)}, not {args.stage!r}")
    saved = sys.argv
    sys.argv = [str(path)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv = saved
    return d.loop_text(args.stage)


def dump(args) -> str:
    from graphnn import dump as d

    if args.loop:
        return dump_loop(args)
    model, defaults = load_target(args.target)
    input_shape = args.input_shape or defaults.get("INPUT_SHAPE")
    if input_shape is None:
        raise UsageError(f"{args.target}: pass --input-shape (e.g. B,784); the file does not declare INPUT_SHAPE")
    if isinstance(input_shape, str):
        input_shape = parse_shape(input_shape, "--input-shape")
    loss = args.loss or defaults.get("LOSS")
    target_shape = parse_shape(args.target_shape, "--target-shape") if args.target_shape else None
    input_dtype = args.input_dtype or defaults.get("INPUT_DTYPE", "float32")
    if input_dtype not in ("float32", "int64"):
        raise UsageError(f"{args.target}: INPUT_DTYPE must be float32 or int64, got {input_dtype!r}")
    request = d.Request(model, tuple(input_shape), loss, target_shape, args.target_dtype,
                        {"name": args.optimizer, "lr": args.lr, "momentum": args.momentum}, args.eval, input_dtype)
    try:
        stages = d.Stages(request)
    except Exception as error:
        raise LoadError(f"{args.target}: could not be traced with input shape {input_shape}: {error}") from error
    names = list(d.STAGES) if args.stage == "all" else [args.stage]
    render = {"text": d.text, "json": d.to_json, "dot": d.to_dot, "svg": d.to_dot, "png": d.to_dot}[args.format]
    parts = []
    for stage in names:
        body = render(stages, stage)
        parts.append(f"==== {stage} ====\n{body}" if args.stage == "all" else body)
    return "\n\n".join(parts) + "\n"


def render_graphviz(dot: str, fmt: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise LoadError("rendering --format svg/png needs Graphviz's `dot`, which is not installed: "
                        "install it with `apt-get install graphviz` (Debian/Ubuntu) or `brew install graphviz`, "
                        "or use --format dot")
    return subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, check=True).stdout


def main(argv: list[str] | None = None) -> int:
    import graphnn

    parser = argparse.ArgumentParser(prog="graphnn", description="A symbolic graph compiler for neural networks.")
    parser.add_argument("--version", action="version", version=f"graphnn {graphnn.__version__}")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("dump", help="show a stage of the compiler for a model", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="TARGET", help="FILE.py:NAME or package.module:NAME (a Module, a Module "
                   "subclass or a function returning one); with --loop, a script")
    p.add_argument("--loop", action="store_true", help="run the script TARGET and show what its PyTorch training "
                   "loop (loss.backward(), optimizer.step()) compiled to: --stage graph, plan or a backend's source")
    p.add_argument("--input-shape", help="e.g. 64,784 or B,1,28,28 (the first dimension is the batch)")
    p.add_argument("--input-dtype", choices=["float32", "int64"],
                   help="the input's dtype: int64 for indices, as an Embedding takes (default: float32)")
    p.add_argument("--target-shape", help="the target's shape (default: from the loss and the output)")
    p.add_argument("--target-dtype", choices=["float32", "int64"], help="the target's dtype")
    p.add_argument("--loss", choices=["cross_entropy", "mse", "l1", "nll", "bce_with_logits"])
    from graphnn.dump import STAGES, optimizer_classes

    p.add_argument("--optimizer", choices=sorted(optimizer_classes()), default="sgd",
                   help="the optimizer whose update the train step fuses (default: sgd)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, help="for optimizers that take one (default for sgd: 0.9)")
    p.add_argument("--eval", action="store_true", help="trace in eval mode (BatchNorm running stats, no dropout)")
    p.add_argument("--stage", choices=[*STAGES, "all"], default="graph",
                   help="a compiler stage, or the source a backend generates (default: graph)")
    p.add_argument("--format", choices=["text", "json", "dot", "svg", "png"], default="text")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.add_argument("--traceback", action="store_true", help="show the Python traceback on errors")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        text = dump(args)
        data = render_graphviz(text, args.format) if args.format in ("svg", "png") else text.encode()
    except UsageError as error:
        print(f"graphnn dump: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # LoadError, DumpError, or anything the model raised
        if args.traceback:
            traceback.print_exc()
        message = str(error) if isinstance(error, LoadError) else f"{type(error).__name__}: {error}"
        print(f"graphnn dump: error: {message}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
