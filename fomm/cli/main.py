"""``fomm`` command line: one subcommand per task, each a thin layer over the Python API."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fomm import __version__
from fomm.allocator import keep_freed_memory
from fomm.cli import animate as _animate
from fomm.cli import composite as _composite
from fomm.cli import demo as _demo
from fomm.cli import depth as _depth
from fomm.cli import download as _download
from fomm.cli import eval as _eval
from fomm.cli import export_onnx as _export_onnx
from fomm.cli import live as _live
from fomm.cli import prepare as _prepare
from fomm.cli import train as _train
from fomm.errors import FommError
from fomm.interrupt import Terminated, signals_as_interrupts

SUBCOMMANDS = [_animate, _train, _eval, _prepare, _export_onnx, _demo, _depth, _composite, _download, _live]


class FommArgumentParser(argparse.ArgumentParser):
    """argparse with fomm's error style: one ``fomm: error: ...`` line pointing at the subcommand's ``--help``.

    argparse's own ``error`` prints the whole usage block first, ten lines that bury the one that says what is
    wrong. Subparsers inherit this class (``add_subparsers`` makes them with ``type(self)``), and each knows its own
    ``prog`` (``fomm animate``), so the hint names the right help page.
    """

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"fomm: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = FommArgumentParser(prog="fomm", description="First Order Motion Model toolkit")
    parser.add_argument("--version", action="version", version=f"fomm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()  # large tensors reuse freed memory instead of faulting in new pages (fomm/allocator.py)
    try:
        # SIGTERM/SIGHUP raise a KeyboardInterrupt subclass, so every writer's Ctrl-C cleanup runs for them too.
        with signals_as_interrupts():
            return int(args.func(args) or 0)
    except FommError as err:
        print(f"fomm: error: {err}", file=sys.stderr)
        return 2
    except Terminated as stop:
        print("fomm: terminated", file=sys.stderr)
        return 128 + stop.signum  # what a shell reports for a process killed by that signal
    except KeyboardInterrupt:
        print("fomm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (`fomm eval ... | head`): not an error of ours, and no traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
