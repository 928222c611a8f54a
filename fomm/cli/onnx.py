"""`fomm animate --backend onnx`: open an ONNX export, or export the chosen model into a temporary folder first."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile

from fomm.errors import FommError


def onnx_model_from_args(args: argparse.Namespace, stack: contextlib.ExitStack):
    """An :class:`~fomm.realtime.OnnxModel` from ``--onnx-dir``, or from ``--config/--checkpoint`` exported into a
    temporary folder that ``stack`` removes afterwards."""
    from fomm.cli.common import load_model_from_args
    from fomm.realtime.export import export_onnx
    from fomm.realtime.onnx_runtime import OnnxModel

    if args.precision != "fp32":
        raise FommError("--precision applies to the torch backend; the ONNX graphs run in fp32")
    if args.onnx_dir:
        if args.checkpoint:
            raise FommError("pass either --onnx-dir (an existing export) or --checkpoint (exported on the fly), "
                            "not both")
        return OnnxModel(args.onnx_dir, device=args.device)
    model = load_model_from_args(args)
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fomm-onnx-"))
    if not args.quiet:
        print("exporting the model to ONNX (use 'fomm export-onnx' once and --onnx-dir to skip this)",
              file=sys.stderr)
    export_onnx(model, tmp)
    return OnnxModel(tmp, device=args.device)
