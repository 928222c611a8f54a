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
        return _report(OnnxModel(args.onnx_dir, device=args.device), args)
    # The graphs are traced on the CPU whatever --device says (it picks ONNX Runtime's providers, not torch's).
    model = load_model_from_args(argparse.Namespace(**{**vars(args), "device": "cpu"}))
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fomm-onnx-"))
    if not args.quiet:
        print("exporting the model to ONNX (use 'fomm export-onnx' once and --onnx-dir to skip this)",
              file=sys.stderr)
    export_onnx(model, tmp)
    return _report(OnnxModel(tmp, device=args.device), args)


def _report(model, args: argparse.Namespace):
    """Say which ONNX Runtime provider runs the graphs, and why when it is not the one asked for."""
    if model.provider_note is not None:
        print(f"fomm: note: {model.provider_note}", file=sys.stderr)
    if not args.quiet:
        print(f"ONNX Runtime provider: {model.providers[0]}", file=sys.stderr)
    return model
