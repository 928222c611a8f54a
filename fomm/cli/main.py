"""``fomm`` command line: one subcommand per task, each a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fomm import __version__
from fomm.cli import animate as _animate
from fomm.cli import demo as _demo
from fomm.cli import eval as _eval
from fomm.cli import export_onnx as _export_onnx
from fomm.cli import live as _live
from fomm.cli import prepare as _prepare
from fomm.cli import train as _train
from fomm.errors import FommError

SUBCOMMANDS = [_animate, _train, _eval, _prepare, _export_onnx, _demo, _live]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fomm", description="First Order Motion Model toolkit")
    parser.add_argument("--version", action="version", version=f"fomm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FommError as err:
        print(f"fomm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fomm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
