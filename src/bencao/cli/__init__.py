"""The ``bencao`` command: prepare, run, demo, report, info and bench.

Each subcommand lives in its own module with a ``register(commands)`` function that adds its
parser and sets ``handler``.  Errors meant for users (:class:`bencao.errors.BencaoError`) print as
one line and exit with status 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bencao.errors import BencaoError

SUBCOMMANDS = ("prepare", "run", "demo", "report", "pockets", "info", "bench")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(prog="bencao", description="bencao molecular dynamics")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback when something fails")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"bencao.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bencao.cli.{name}":
                raise
            continue
        module.register(commands)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``bencao`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("bencao: interrupted", file=sys.stderr)
        return 130
    except BencaoError as exc:
        if args.debug:
            raise
        print(f"bencao: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug or an unforeseen failure: still one line without --debug
        if args.debug:
            raise
        print(f"bencao: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
