"""The ``graphnn`` command line."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    import graphnn

    parser = argparse.ArgumentParser(prog="graphnn", description="A symbolic graph compiler for neural networks.")
    parser.add_argument("--version", action="version", version=f"graphnn {graphnn.__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
