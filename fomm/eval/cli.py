"""Argument wiring for ``fomm eval`` (the lead's ``fomm.cli`` mounts it; nothing here prints tracebacks).

``fomm eval reconstruction DATASET --out DIR [--model copy-source|NAME] [--metrics pixels|faces|bodies] ...``
``fomm eval compare DIR... [--out table.md]``

Models other than ``copy-source`` come from a ``make_reconstructor(args) -> Reconstructor`` hook the caller passes,
so this module stays independent of the model code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fomm.errors import FommError
from fomm.eval.frames import write_text_atomic
from fomm.eval.protocol import METRIC_KINDS, Reconstructor, copy_source_reconstructor, evaluate_reconstruction, make_suite
from fomm.eval.report import compare, markdown


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``eval`` with sub-commands ``reconstruction`` and ``compare`` to an argparse sub-parser group."""
    ev = subparsers.add_parser("eval", help="evaluate reconstruction (L1, AKD, MKR, AED) and compare runs")
    sub = ev.add_subparsers(dest="eval_command", required=True)
    rec = sub.add_parser("reconstruction", help="reconstruct every test video and score it")
    rec.add_argument("dataset", type=Path, help="dataset folder holding test/ (or the test folder itself)")
    rec.add_argument("--out", type=Path, required=True, help="run folder (resumable; reports are written here)")
    rec.add_argument("--model", default="copy-source", help="'copy-source' baseline, or a model the CLI knows")
    rec.add_argument("--checkpoint", type=Path, default=None, help="checkpoint for --model")
    rec.add_argument("--config", default=None, help="model config for --model")
    rec.add_argument("--metrics", choices=METRIC_KINDS, default="pixels",
                     help="pixels: L1; faces: L1, AKD, AED (dlib); bodies: L1, AKD, MKR (mediapipe)")
    rec.add_argument("--landmarks", choices=("dlib", "face-alignment"), default="dlib", help="face landmark backend")
    rec.add_argument("--max-videos", type=int, default=None)
    rec.add_argument("--size", type=int, default=None, help="resize frames to SIZE x SIZE (default: native)")
    rec.add_argument("--name", default=None, help="model name shown in reports (default: --model)")
    rec.add_argument("--rescore", action="store_true", help="recompute metrics from saved frames; no model runs")
    cmp = sub.add_parser("compare", help="merge run folders into one paper-style Markdown table")
    cmp.add_argument("runs", type=Path, nargs="+")
    cmp.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    return ev


def run_eval(args: argparse.Namespace, make_reconstructor: Callable[[argparse.Namespace], Reconstructor] | None = None) -> str:
    """Execute a parsed ``fomm eval`` command; returns the text to print."""
    if args.eval_command == "compare":
        table = compare(args.runs)
        if args.out is not None:
            write_text_atomic(args.out, table)
        return table
    if args.max_videos is not None and args.max_videos < 1:
        raise FommError("--max-videos must be at least 1")
    reconstruct: Reconstructor | None
    if args.rescore:
        reconstruct = None
    elif args.model == "copy-source":
        reconstruct = copy_source_reconstructor
    elif make_reconstructor is not None:
        reconstruct = make_reconstructor(args)
    else:
        raise FommError(f"unknown model {args.model!r}; use 'copy-source' or a model fomm provides")
    summary = evaluate_reconstruction(
        args.dataset,
        args.out,
        reconstruct,
        suite=make_suite(args.metrics, landmark_backend=args.landmarks),
        model_name=args.name or args.model,
        max_videos=args.max_videos,
        size=args.size,
    )
    return markdown(summary)
