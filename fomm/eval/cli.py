"""Argument wiring for ``fomm eval`` (the lead's ``fomm.cli`` mounts it; nothing here prints tracebacks).

``fomm eval reconstruction DATASET --out DIR [--model copy-source|NAME] [--metrics pixels|faces|bodies] ...``
``fomm eval --model NAME --config C --checkpoint P --data ROOT --out DIR`` (the same, without the sub-command)
``fomm eval compare DIR... [--out table.md]``

Models other than ``copy-source`` come from a ``make_reconstructor(args) -> Reconstructor`` hook the caller passes,
so this module stays independent of the model code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fomm.cli.common import positive_int, side
from fomm.errors import FommError
from fomm.eval.protocol import (
    METRIC_KINDS,
    Reconstructor,
    copy_source_reconstructor,
    evaluate_reconstruction,
    make_suite,
    require_scored,
)
from fomm.eval.report import compare, markdown
from fomm.io.atomic import write_text_atomic


def _add_reconstruction_args(p: argparse.ArgumentParser, top_level: bool) -> None:
    if not top_level:
        p.add_argument("dataset", type=Path, nargs="?", default=None,
                       help="dataset folder holding test/ (or the test folder itself); or give --data")
    p.add_argument("--data", type=Path, default=None, metavar="ROOT",
                   help="dataset folder holding test/ (or the test folder itself)")
    p.add_argument("--out", type=Path, required=not top_level, default=None,
                   help="run folder (resumable; reports are written here)")
    p.add_argument("--model", default="copy-source",
                   help="'copy-source' baseline, or a model the CLI knows (fomm, monkeynet, x2face)")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint for --model")
    p.add_argument("--config", default=None, help="model config for --model")
    p.add_argument("--metrics", choices=METRIC_KINDS, default="pixels",
                   help="pixels: L1; faces: L1, AKD, AED (dlib); bodies: L1, AKD, MKR (mediapipe)")
    p.add_argument("--landmarks", choices=("dlib", "face-alignment"), default="dlib", help="face landmark backend")
    p.add_argument("--max-videos", type=positive_int, default=None, help="score only the first N videos (N >= 1)")
    p.add_argument("--size", type=side, default=None, help="resize frames to SIZE x SIZE, 16-8192 (default: native)")
    p.add_argument("--name", default=None, help="model name shown in reports (default: --model)")
    p.add_argument("--rescore", action="store_true", help="recompute metrics from saved frames; no model runs")
    p.add_argument("--allow-failures", action="store_true",
                   help="exit 0 when some videos could not be scored (default: exit 2 unless every video was; a "
                        "run that scores none always fails)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``eval`` with sub-commands ``reconstruction`` and ``compare`` to an argparse sub-parser group.

    ``fomm eval --model M --config C --checkpoint P --data ROOT --out DIR`` (no sub-command) is the same as
    ``fomm eval reconstruction ROOT --out DIR --model M ...``. Give the options either before or after
    ``reconstruction``, not both (the sub-command's own defaults would win).
    """
    ev = subparsers.add_parser("eval", help="evaluate reconstruction (L1, AKD, MKR, AED) and compare runs",
                               description="Reconstruction protocol of the papers: frame 0 of each test video is "
                                           "the source, every frame is driven (absolute motion by default) and "
                                           "scored. 'fomm eval --model M --config C --checkpoint P --data ROOT "
                                           "--out DIR' is short for 'fomm eval reconstruction ROOT ...'.")
    _add_reconstruction_args(ev, top_level=True)
    sub = ev.add_subparsers(dest="eval_command", required=False, metavar="{reconstruction,compare}")
    rec = sub.add_parser("reconstruction", help="reconstruct every test video and score it")
    _add_reconstruction_args(rec, top_level=False)
    cmp = sub.add_parser("compare", help="merge run folders into one paper-style Markdown table")
    cmp.add_argument("runs", type=Path, nargs="+")
    cmp.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    return ev


def run_eval(args: argparse.Namespace,
             make_reconstructor: Callable[[argparse.Namespace], Reconstructor] | None = None) -> str:
    """Execute a parsed ``fomm eval`` command; returns the text to print."""
    if args.eval_command == "compare":
        table = compare(args.runs)
        if args.out is not None:
            write_text_atomic(args.out, table)
        return table
    dataset = getattr(args, "dataset", None)
    if dataset is not None and args.data is not None and Path(dataset) != Path(args.data):
        raise FommError(f"two datasets given ({dataset} and --data {args.data}); give one")
    dataset = dataset if dataset is not None else args.data
    if dataset is None:
        raise FommError("no dataset: pass --data ROOT (the folder holding test/)")
    if args.out is None:
        raise FommError("no run folder: pass --out DIR (metrics and reconstructed frames are written there)")
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
        dataset,
        args.out,
        reconstruct,
        suite=make_suite(args.metrics, landmark_backend=args.landmarks),
        model_name=args.name or args.model,
        max_videos=args.max_videos,
        size=args.size,
        progress=not getattr(args, "quiet", False),
    )
    require_scored(summary, args.out, allow_failures=getattr(args, "allow_failures", False))
    return markdown(summary)
