"""``fomm animate``: source photo + driving video -> animated video."""

from __future__ import annotations

import argparse
import contextlib
import sys

from fomm.cli.common import (
    RangeType,
    add_model_options,
    batch_size,
    fraction,
    load_model_from_args,
    nonneg_int,
    parse_size,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("animate", help="animate a photo with a driving video",
                       description="Animate a source image with the motion of a driving video. The output keeps the "
                                   "driving video's frame rate and audio.")
    add_model_options(p)
    io = p.add_argument_group("input/output")
    io.add_argument("--source", help="source image (any format Pillow reads)")
    io.add_argument("--driving", help="driving video (mp4/mov/gif/...), folder of frames, or image")
    io.add_argument("--example", action="store_true",
                    help="use the bundled example pair (the shipped model's own pair, else a face photo and clip)")
    io.add_argument("-o", "--output", required=True,
                    help="output .mp4, or a folder ending with / for lossless PNG frames")
    io.add_argument("--size", type=parse_size, default=None,
                    help="output size, N or WxH (default: the model's size, e.g. 256)")
    io.add_argument("--no-audio", action="store_true", help="do not copy the driving video's audio")
    crop = p.add_argument_group("face auto-crop")
    crop.add_argument("--auto-crop", action="store_true",
                      help="animate only the face of a full-size photo and paste it back (output at the photo's "
                           "size); the driving video is cropped around its face the same way (needs dlib or "
                           "OpenCV: pip install 'fomm[crop]')")
    crop.add_argument("--crop-increase", type=RangeType(float, 0, 5), default=None, metavar="F",
                      help="margin around each face per side, as a fraction of the face size, 0-5 (default: 0.5)")
    crop.add_argument("--feather", type=fraction(0, 0.5), default=0.1, metavar="F",
                      help="soft edge of the pasted face, as a fraction of the crop size, 0-0.5 (default: 0.1)")
    motion = p.add_argument_group("motion")
    motion.add_argument("--absolute", action="store_true",
                        help="absolute keypoints instead of relative motion (only for the same person)")
    motion.add_argument("--no-adapt-scale", action="store_true",
                        help="do not adapt the movement scale to the size of the source face")
    motion.add_argument("--best-frame", type=nonneg_int, default=None, metavar="N",
                        help="driving frame whose pose matches the source (reference for relative motion)")
    motion.add_argument("--find-best-frame", action="store_true",
                        help="find that frame by face landmarks (dlib; pip install 'fomm[landmarks]')")
    run = p.add_argument_group("run")
    run.add_argument("--batch-size", type=batch_size, default=4,
                     help="driving frames per forward pass, 1-1024 (default: 4)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                     help="inference engine: torch, or onnx = ONNX Runtime (pip install 'fomm[onnx]')")
    run.add_argument("--onnx-dir", metavar="DIR",
                     help="folder from 'fomm export-onnx' (--backend onnx; default: export the model to a "
                          "temporary folder first)")
    run.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                     help="torch backend: bf16 (CPUs with AVX512-BF16/AMX, or GPU) or fp16 (GPU) for the "
                          "generator's decoder; keypoints and motion stay fp32 (default: fp32)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from fomm.animate import AnimationOptions, animate_video
    from fomm.assets import example_path
    from fomm.errors import FommError
    from fomm.io.writing import check_output_path

    if not args.example and (not args.source or not args.driving):
        raise FommError("need --source IMAGE and --driving VIDEO (or --example for the bundled pair)")
    if args.best_frame is not None and args.best_frame < 0:
        raise FommError("--best-frame must be >= 0")
    check_output_path(args.output)  # fail before loading a large model
    if args.crop_increase is not None and not args.auto_crop:
        raise FommError("--crop-increase only applies with --auto-crop")
    crop = {"crop_increase": args.crop_increase} if args.crop_increase is not None else {}
    # Checked here, before a large model is loaded.
    options = AnimationOptions(relative=not args.absolute, adapt_movement_scale=not args.no_adapt_scale,
                               best_frame=args.best_frame, find_best_frame=args.find_best_frame,
                               output_size=args.size, batch_size=args.batch_size, audio=not args.no_audio,
                               progress=not args.quiet, auto_crop=args.auto_crop, feather=args.feather,
                               precision=args.precision, **crop)
    with contextlib.ExitStack() as stack:
        if args.backend == "onnx":
            from fomm.cli.onnx import onnx_model_from_args

            model = onnx_model_from_args(args, stack)
        else:
            if args.onnx_dir:
                raise FommError("--onnx-dir needs --backend onnx")
            model = load_model_from_args(args)
        if args.example:
            # A shipped model brings the example pair it was trained for (bodies, shapes); else the face pair.
            from fomm.pretrained import REGISTRY

            entry = REGISTRY.get(str(getattr(model, "meta", {}).get("pretrained")))
            args.source = args.source or str(example_path(entry.example_source if entry else "source.png"))
            args.driving = args.driving or str(example_path(entry.example_driving if entry else "driving.mp4"))
        options = options.replace(channels_last=model.device.type == "cpu")
        result = animate_video(model, args.source, args.driving, args.output, options)
    h, w = result.size
    audio = "with audio" if result.has_audio else "no audio"
    print(f"wrote {result.output} ({result.num_frames} frames, {w}x{h}, {result.fps:g} fps, {audio})",
          file=sys.stderr if args.quiet else sys.stdout)
    return 0
