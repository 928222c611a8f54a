"""``fomm animate``: source photo + driving video -> animated video."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from fomm.cli.common import (
    RangeType,
    add_model_options,
    batch_size,
    fraction,
    load_model_from_args,
    nonneg_int,
    parse_size,
)
from fomm.cli.composite import add_composite_options, composite_options_from_args
from fomm.cli.depth import add_depth_options, depth_options_from_args
from fomm.cli.safety import animate_inputs


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
    depth = add_depth_options(p, "depth pass")
    depth.add_argument("--export-depth", metavar="DIR",
                       help="also write the depth of every frame into DIR (one file per frame + depth.json): the "
                            "source's depth estimated once and moved with the animation, so it does not flicker")
    add_composite_options(p, "compositing (uses the depth pass above; see fomm composite)")
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
    from fomm.io.atomic import refuse_input_overwrite
    from fomm.io.writing import check_output_path

    if not args.example and (not args.source or not args.driving):
        raise FommError("need --source IMAGE and --driving VIDEO (or --example for the bundled pair)")
    if args.best_frame is not None and args.best_frame < 0:
        raise FommError("--best-frame must be >= 0")
    check_output_path(args.output)  # fail before loading a large model
    refuse_input_overwrite(args.output, animate_inputs(args))
    if args.crop_increase is not None and not args.auto_crop:
        raise FommError("--crop-increase only applies with --auto-crop")
    crop = {"crop_increase": args.crop_increase} if args.crop_increase is not None else {}
    composite = composite_options_from_args(args)
    depth = _check_depth_args(args, composite.active)
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
            refuse_input_overwrite(args.output, [args.source, args.driving])  # the pair is known only now
        options = options.replace(channels_last=model.device.type == "cpu")
        stages, sinks = _depth_pass(args, depth) if depth is not None else ([], {})
        output = args.output
        if composite.active:
            from fomm.compositing.stage import CompositeStage

            stages.append(CompositeStage(composite, device=model.device))
            output = _composite_writer(args, composite, options)
        result = animate_video(model, args.source, args.driving, output, options, stages=stages,
                               view_sinks=sinks)
    h, w = composite.output_size(result.size)
    result.output = result.output or args.output
    audio = "with audio" if result.has_audio else "no audio"
    rate = f"{result.fps:g} fps"
    from fomm.io.reading import TIMESTAMPS_FILE

    if result.output is not None and (Path(result.output) / TIMESTAMPS_FILE).is_file():
        # PNG frames carry no timing; a variable-rate driving video's frame times are kept beside them.
        rate += f" on average, variable: frame times in {TIMESTAMPS_FILE}"
    print(f"wrote {result.output} ({result.num_frames} frames, {w}x{h}, {rate}, {audio})",
          file=sys.stderr if args.quiet else sys.stdout)
    if args.export_depth:
        print(f"wrote {args.export_depth} (depth pass, {result.num_frames} frames)",
              file=sys.stderr if args.quiet else sys.stdout)
    return 0


def _check_depth_args(args: argparse.Namespace, compositing: bool = False):
    """The depth options when ``--export-depth`` or a compositing effect is given (checked before a model is
    loaded), else None."""
    from fomm.compositing.depth.files import check_depth_folder
    from fomm.errors import FommError

    depth_flags = [f for f, v in (("--depth-model", args.depth_model), ("--depth-file", args.depth_file),
                                  ("--depth-format", args.depth_format)) if v is not None]
    if args.depth_estimator != "auto":
        depth_flags.append("--depth-estimator")
    if not args.export_depth and not compositing:
        if depth_flags:
            raise FommError(f"{depth_flags[0]} only applies with --export-depth DIR or a compositing effect")
        return None
    if args.export_depth:
        check_depth_folder(args.export_depth)
    return depth_options_from_args(args)


def _depth_pass(args: argparse.Namespace, depth_options) -> tuple[list, dict]:
    """The stage that moves the source's depth with every frame, and the folder sink it writes to.

    The depth is estimated on the photo as given, so with ``--auto-crop`` it is the full photo's: the stage cuts the
    face crop's depth out of it and pastes the moved crop back like the colour (:class:`DepthPassStage`)."""
    from fomm.compositing.depth import DepthFolderWriter, source_depth_stage
    from fomm.io.atomic import refuse_input_overwrite
    from fomm.io.image import read_image
    from fomm.io.reading import probe_video

    refuse_input_overwrite([args.export_depth, args.output], [args.source, args.driving, args.depth_file])
    if args.export_depth and args.output and \
            str(args.export_depth).rstrip("/") == str(args.output).rstrip("/"):
        from fomm.errors import FommError

        raise FommError("--export-depth must be another folder than the video output")
    stage, meta = source_depth_stage(read_image(args.source), depth_options)
    if not args.export_depth:
        return [stage], {}  # the depth is only for the compositing stage
    meta["source"] = str(args.source)
    meta["driving"] = str(args.driving)
    fps = probe_video(args.driving).fps_fraction
    sink = DepthFolderWriter(args.export_depth, fps, args.depth_format or "png", meta)
    return [stage], {stage.view: sink}


def _composite_writer(args: argparse.Namespace, composite, options):
    """The output path, or for a stereo ``.mkv`` a writer that tags the stream with its Matroska stereo mode."""
    from fomm.compositing.composite import stereo_metadata
    from fomm.io.reading import probe_video
    from fomm.io.writing import VideoWriter

    metadata = stereo_metadata(args.output, composite)
    if not metadata:
        return args.output
    return VideoWriter(args.output, probe_video(args.driving).fps_fraction,
                       audio_from=args.driving if options.audio else None, metadata=metadata)
