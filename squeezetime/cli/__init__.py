"""``squeezetime`` command line. Each subcommand lives in its own module with ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import sys

# One module per feature; each defines register(subparsers) and sets a ``func`` default.
COMMAND_MODULES = [
    "squeezetime.cli.predict",
    "squeezetime.cli.demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squeezetime", description="SqueezeTime video classification: "
                                     "predict, benchmark, export and serve.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
