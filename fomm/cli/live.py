"""``fomm live`` (a photo follows the camera, in real time) and ``fomm live-worker`` (the model on another machine).

Checks run cheapest first, so a typo fails before a model is loaded or a camera opened: the outputs' syntax, the
photos, the input, then the model, then the outputs themselves (a port in use, a missing virtual camera).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from fomm.cli.common import (
    add_model_options,
    int_range,
    load_model_from_args,
    parse_size,
    port,
    positive_float,
    positive_int,
)
from fomm.errors import FommError


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    run = p.add_argument_group("engine")
    run.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                     help="inference engine: torch, or onnx = ONNX Runtime (pip install 'fomm[onnx]')")
    run.add_argument("--onnx-dir", metavar="DIR", help="folder from 'fomm export-onnx' (--backend onnx)")
    run.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                     help="torch FOMM: auto = fp16 on CUDA, bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else "
                          "fp32 (default: %(default)s)")


def register(sub: argparse._SubParsersAction) -> None:
    from fomm.live.control import COMMANDS

    keys = "; ".join(f"{name}: {text}" for name, text in COMMANDS.items())
    p = sub.add_parser("live", help="animate a photo live with a camera or a video (window, virtual camera, stream)",
                       description="Animate a photo with the motion of a camera (or a looping video) in real time. "
                                   "Window keys: c/space calibrate, o overlay, n/p next/previous photo, s smoothing, "
                                   "i stats, q/Esc quit. The same commands headless: --control stdin (one per "
                                   f"line) or POST /control/<command> on the mjpeg output. Commands: {keys}.")
    io = p.add_argument_group("input/output")
    io.add_argument("--source", required=True, help="photo, or a folder of photos (n/p switch between them)")
    io.add_argument("--camera", type=int_range(0, 255), metavar="N",
                    help="camera index (OpenCV; 0 is the first camera)")
    io.add_argument("--driving", metavar="VIDEO", help="a video played at its own frame rate, looping")
    io.add_argument("--output", default=None,
                    help="comma-separated: window, virtualcam (pip install 'fomm[live]' + v4l2loopback/OBS), "
                         "mjpeg:PORT (http://127.0.0.1:PORT/stream), record:FILE.mp4, null (default: window; null "
                         "with --benchmark)")
    io.add_argument("--size", type=parse_size, default=None, help="output size, N or WxH (default: the model's)")
    io.add_argument("--crop", choices=("auto", "center", "none"), default="center",
                    help="what the model sees of the camera frame: auto = track the face (dlib/OpenCV, "
                         "pip install 'fomm[crop]'), center = the centre square, none = the whole frame squashed "
                         "(default: %(default)s)")
    io.add_argument("--fps-cap", type=positive_float, default=None, metavar="N",
                    help="animate at most N frames per second")
    io.add_argument("--remote", metavar="HOST:PORT", help="run the model on a 'fomm live-worker' there")
    motion = p.add_argument_group("motion")
    motion.add_argument("--smooth", choices=("on", "off"), default="on",
                        help="One-Euro keypoint smoothing against jitter (default: %(default)s)")
    motion.add_argument("--absolute", action="store_true", help="absolute keypoints (only for the same person)")
    motion.add_argument("--no-adapt-scale", action="store_true", help="do not adapt the movement scale")
    ctl = p.add_argument_group("run")
    ctl.add_argument("--control", choices=("stdin",), help="also read commands from stdin, one per line")
    ctl.add_argument("--every-frame", action="store_true",
                     help="animate every frame of --driving instead of keeping up with its frame rate (for "
                          "recording a file; nothing is dropped)")
    ctl.add_argument("--once", action="store_true", help="play --driving once instead of looping")
    ctl.add_argument("--frames", type=positive_int, metavar="N", help="stop after N output frames")
    ctl.add_argument("--benchmark", type=positive_int, metavar="N",
                     help="run N frames without a window and print JSON: fps in/out, drops, p50/p95 latency per "
                          "stage and capture to output")
    add_model_options(p)
    _add_engine_options(p)
    p.set_defaults(func=main)

    w = sub.add_parser("live-worker", help="serve the model to 'fomm live --remote' (e.g. on a GPU machine)",
                       description="Run the model for 'fomm live --remote HOST:PORT' clients (one at a time). No "
                                   "authentication: bind beyond 127.0.0.1 only on a trusted network.")
    w.add_argument("--port", type=port, required=True, help="TCP port to listen on")
    w.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    add_model_options(w)
    _add_engine_options(w)
    w.set_defaults(func=worker_main)


def _load_model(args: argparse.Namespace, stack: contextlib.ExitStack):
    if args.backend == "onnx":
        from fomm.cli.onnx import onnx_model_from_args

        args.quiet = True
        precision, args.precision = args.precision, "fp32"
        if precision not in ("auto", "fp32"):
            raise FommError("--precision applies to the torch backend; the ONNX graphs run in fp32")
        return onnx_model_from_args(args, stack)
    if args.onnx_dir:
        raise FommError("--onnx-dir needs --backend onnx")
    return load_model_from_args(args)


def _precision(args: argparse.Namespace, model) -> str:
    """``--precision auto``: the fastest precision this model and device run well."""
    if args.precision != "auto":
        return args.precision
    if args.backend != "torch" or getattr(model, "model", "fomm") != "fomm":
        return "fp32"
    if model.device.type == "cuda":
        return "fp16"
    if model.device.type == "cpu":
        from fomm.models.fomm.precision import cpu_supports_bf16

        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


def _live_options(args: argparse.Namespace, precision: str = "fp32"):
    from fomm.live.engine import LiveOptions

    return LiveOptions(relative=not args.absolute, adapt_movement_scale=not args.no_adapt_scale,
                       smooth=args.smooth == "on", crop=args.crop, output_size=args.size, precision=precision)


def _check_args(args: argparse.Namespace) -> None:
    if (args.camera is None) == (args.driving is None):
        raise FommError("need one input: --camera N (a camera) or --driving VIDEO (a video file)")
    if args.every_frame and args.driving is None:
        raise FommError("--every-frame needs --driving (a camera cannot wait for the model)")
    if args.once and args.driving is None:
        raise FommError("--once needs --driving")
    for name in ("frames", "benchmark"):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= 10_000_000:
            raise FommError(f"--{name} must be 1-10000000, got {value}")
    if args.remote and (args.checkpoint or args.pretrained or args.random_weights or args.onnx_dir):
        raise FommError("with --remote the worker runs the model: give the model options to 'fomm live-worker'")


def main(args: argparse.Namespace) -> int:
    from fomm.cli.safety import animate_inputs, folder_files
    from fomm.io.atomic import refuse_input_overwrite
    from fomm.live.control import CommandQueue, StdinControl
    from fomm.live.engine import LiveEngine, load_sources
    from fomm.live.outputs import open_outputs, parse_outputs
    from fomm.live.runner import LiveRunner, RunOptions
    from fomm.live.sources import CameraSource, VideoFileSource

    _check_args(args)
    output_text = args.output if args.output is not None else ("null" if args.benchmark else "window")
    specs = parse_outputs(output_text)
    # A recording must never replace what the run reads (the driving clip, a photo, the model), links included.
    refuse_input_overwrite([s.arg for s in specs if s.kind == "record"],
                           [*animate_inputs(args), *folder_files(args.source)])
    if args.benchmark and any(s.kind == "window" for s in specs):
        raise FommError("--benchmark runs without a window: drop window from --output")
    warmup = 5 if args.benchmark else 0  # first calls allocate and calibrate: not what a long run sees
    run_options = RunOptions(every_frame=args.every_frame, fps_cap=args.fps_cap,
                             max_frames=args.benchmark + warmup if args.benchmark else args.frames, warmup=warmup)
    sources = load_sources(args.source)
    if args.driving is not None:
        source = VideoFileSource(args.driving, loop=not args.once, paced=not args.every_frame)
    else:
        source = CameraSource(args.camera)
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        if args.remote:
            from fomm.live.worker import RemoteEngine

            engine = RemoteEngine(args.remote, sources, _live_options(args))
            stack.callback(engine.close)
            precision, backend = "remote", "remote"
        else:
            model = _load_model(args, stack)
            precision = _precision(args, model)
            engine = LiveEngine.for_model(model, sources, _live_options(args, precision))
            backend = args.backend
        fps = min(source.fps, args.fps_cap) if args.fps_cap else source.fps
        outputs = open_outputs(specs, engine.output_size, fps, every_frame=args.every_frame)
        commands = CommandQueue()
        if args.control == "stdin":
            StdinControl(commands).start()
        runner = LiveRunner(engine, source, outputs, run_options, commands)
        summary = runner.run()
    h, w = engine.output_size
    summary.update(size=[h, w], model_size=list(engine.image_size), precision=precision, backend=backend,
                   smoothing=engine.smoothing)
    if args.benchmark:
        print(json.dumps(summary, indent=2))
        return 0
    lat = summary.get("latency", {}).get("capture_to_output", {})
    print(f"fomm live: {summary['frames_out']} frames out at {summary.get('fps_out', 0):g} frames/s, p95 latency "
          f"{lat.get('p95_ms', float('nan')):g} ms, {summary['dropped']['total']} dropped"
          + "".join(f"; wrote {o.path}" for o in outputs if hasattr(o, "path")), file=sys.stderr)
    return 0


def worker_main(args: argparse.Namespace) -> int:
    from fomm.live.engine import LiveOptions
    from fomm.live.outputs import check_port
    from fomm.live.worker import LiveWorker, serve

    port = check_port(str(args.port))
    with contextlib.ExitStack() as stack:
        model = _load_model(args, stack)
        worker = LiveWorker(model, port, host=args.host, options=LiveOptions(precision=_precision(args, model)))
        serve(worker)
    return 0
