"""``fomm export-onnx``: a FOMM checkpoint -> ONNX graphs for ``fomm animate --backend onnx``."""

from __future__ import annotations

import argparse
from pathlib import Path

from fomm.cli.common import add_model_options, int_range, load_model_from_args
from fomm.cli.safety import model_inputs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-onnx", help="export a FOMM model to ONNX (keypoints, source stage, per-frame stage)",
                       description="Export the keypoint detector and the generator, split into a once-per-source "
                                   "stage and a per-frame stage, as ONNX graphs with a dynamic batch axis, plus a "
                                   "JSON sidecar. Use the folder with 'fomm animate --backend onnx --onnx-dir DIR'.")
    add_model_options(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the .onnx files and sidecar")
    p.add_argument("--opset", type=int_range(16, 19, message="opset {text} is not supported: use {range} (GridSample "
                                                                "needs >= 16)"),
                   default=None,
                   help="ONNX opset, 16-19 (default: 17; GridSample needs >= 16, TensorRT samples >= 20 "
                        "with nearest neighbours)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from fomm.io.atomic import refuse_input_overwrite
    from fomm.realtime.export import DEFAULT_OPSET, GRAPH_FILES, SIDECAR, check_export_dir, export_onnx

    opset = DEFAULT_OPSET if args.opset is None else args.opset
    # The export folder may hold the checkpoint; only the graph files and the sidecar in it are replaced.
    refuse_input_overwrite([Path(args.output) / name for name in (*GRAPH_FILES.values(), SIDECAR)],
                           model_inputs(args), folders=args.output)
    check_export_dir(args.output)  # before a large model is loaded
    model = load_model_from_args(args)
    sidecar = export_onnx(model, args.output, opset=opset)
    h, w = model.image_size
    print(f"wrote ONNX export ({w}x{h}, opset {opset}) to {sidecar.parent} (sidecar {sidecar.name})")
    return 0
