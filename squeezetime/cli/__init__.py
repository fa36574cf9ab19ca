"""``squeezetime`` command line. Each subcommand lives in its own module with ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

NOT_COMMANDS = {"common", "__main__"}


def command_modules() -> list[str]:
    """Every module of this package but the shared ones defines ``register(subparsers)``."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in NOT_COMMANDS]
    return [f"{__name__}.{name}" for name in sorted(names)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squeezetime", description="SqueezeTime video classification: "
                                     "predict, benchmark, export and serve.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import SqueezeTimeError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SqueezeTimeError as e:  # bad input: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
