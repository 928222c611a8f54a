"""``fomm depth``: depth maps of an image, a video or a folder of frames (and the depth options ``animate`` shares)."""

from __future__ import annotations

import argparse
import sys

from fomm.cli.common import positive_int

ESTIMATORS = ("auto", "portrait", "depth-anything", "file")


def add_depth_options(p: argparse.ArgumentParser, title: str = "depth") -> argparse._ArgumentGroup:
    g = p.add_argument_group(title)
    g.add_argument("--depth-estimator", choices=ESTIMATORS, default="auto",
                   help="auto (default): --depth-file if given, else Depth-Anything if its weights are on disk, else "
                        "portrait; portrait: offline person/face depth from mediapipe; depth-anything: "
                        "Depth-Anything-V2 (pip install 'fomm[depth]'); file: the depth given with --depth-file")
    g.add_argument("--depth-model", metavar="DIR|ID",
                   help="Depth-Anything weights: a folder, or a Hugging Face id (downloaded only when not cached; "
                        "default: depth-anything/Depth-Anything-V2-Small-hf from the local cache)")
    g.add_argument("--depth-file", metavar="PATH",
                   help="depth you bring: one image (8/16-bit PNG, EXR, NPY), a folder of them, or a video; near = "
                        "1 (white), far = 0 (black); resized to the frames when sizes differ")
    g.add_argument("--depth-format", choices=("png", "exr", "npy"), default=None,
                   help="depth frames as 16-bit PNG (default), EXR (float channel Z) or NPY (float32)")
    return g


def depth_options_from_args(args: argparse.Namespace):
    from fomm.compositing.depth import DepthOptions

    return DepthOptions(estimator=args.depth_estimator, model=args.depth_model, depth_file=args.depth_file,
                        device=getattr(args, "device", "cpu"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("depth", help="depth maps of an image, a video or a folder of frames",
                       description="Estimate depth (relative inverse depth, near = 1, far = 0) for an image, a video "
                                   "or a folder of frames. One image -> one file (.png 16-bit, .exr, .npy); a video -> "
                                   "a folder with one file per frame. A JSON sidecar records the convention, "
                                   "estimator, size and fps. Video estimates are aligned to a running reference so "
                                   "they do not flicker.")
    p.add_argument("input", help="image, video, or folder of frames")
    p.add_argument("-o", "--output", required=True,
                   help="depth file (.png/.exr/.npy) for an image; a folder for a video or frame folder")
    add_depth_options(p)
    run = p.add_argument_group("run")
    run.add_argument("--no-align", action="store_true",
                     help="write each frame's estimate as it comes (no alignment to a running reference)")
    run.add_argument("--max-frames", type=positive_int, default=None, metavar="N", help="only the first N frames")
    run.add_argument("--device", default="cpu", help="torch device for Depth-Anything (default: %(default)s)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from fomm.compositing.depth import export_depth
    from fomm.errors import FommError

    if args.max_frames is not None and args.max_frames < 1:
        raise FommError("--max-frames must be >= 1")
    result = export_depth(args.input, args.output, depth_options_from_args(args), fmt=args.depth_format,
                          align=not args.no_align, max_frames=args.max_frames, progress=not args.quiet)
    h, w = result.size
    cuts = f", {len(result.cuts) - 1} scene cut(s)" if len(result.cuts) > 1 else ""
    print(f"wrote {result.output} ({result.num_frames} depth frame(s), {w}x{h}, {result.estimator}{cuts})",
          file=sys.stderr if args.quiet else sys.stdout)
    return 0
