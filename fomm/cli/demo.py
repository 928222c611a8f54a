"""``fomm demo``: the Gradio web demo (photo + driving video -> animated video; live webcam tab)."""

from __future__ import annotations

import argparse

from fomm.cli.common import device_name, port, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="web demo in the browser (Gradio)",
                       description="Start the Gradio demo. The model picker lists the installed shipped models plus "
                                   "those given here. Needs: pip install 'fomm[demo]'.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 for all)")
    p.add_argument("--port", type=port, default=None, help="port, 1-65535 (default: 7860, or the next free one)")
    p.add_argument("--share", action="store_true", help="also publish a temporary public gradio.live link")
    g = p.add_argument_group("models (besides the shipped ones)")
    g.add_argument("--config", help="bundled config name or YAML of an extra model (with --checkpoint)")
    g.add_argument("--checkpoint", help="checkpoint of the extra model")
    g.add_argument("--models", metavar="FILE",
                   help="YAML list of extra models: '- {name: mine, config: vox-256, checkpoint: vox-cpk.pth.tar}'")
    g.add_argument("--random-weights", action="store_true",
                   help="also offer --config (default actions-64) with random weights, to try the pipeline")
    g.add_argument("--device", type=device_name, default="cpu",
                   help="torch device for the models (default: %(default)s)")
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-upload-mb", type=positive_float, default=50.0, help="largest upload (default: %(default)s)")
    lim.add_argument("--max-video-seconds", type=positive_float, default=60.0,
                     help="longest driving video (default: %(default)s)")
    lim.add_argument("--queue-size", type=positive_int, default=8, help="jobs waiting at most (default: %(default)s)")
    lim.add_argument("--concurrency", type=positive_int, default=1, help="jobs running at once (default: %(default)s)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from fomm.api import resolve_device
    from fomm.errors import FommError

    try:
        from fomm.demo.app import launch
    except ImportError as err:
        raise FommError(f"the demo needs Gradio ({err.name or err} is missing): pip install 'fomm[demo]'") from None
    from fomm.demo.jobs import DemoLimits
    from fomm.demo.models import checkpoint_choice, choices_from_file

    resolve_device(args.device)  # a clear message now rather than at the first job
    if args.checkpoint and not args.config:
        raise FommError("--checkpoint needs --config (the bundled config name or YAML it was trained with)")
    extra = []
    if args.checkpoint:
        extra.append(checkpoint_choice(args.config, args.checkpoint, device=args.device))
    if args.random_weights:
        extra.append(checkpoint_choice(args.config or "actions-64", None, device=args.device))
    if args.models:
        extra.extend(choices_from_file(args.models, device=args.device))
    for name, value in (("--max-upload-mb", args.max_upload_mb), ("--max-video-seconds", args.max_video_seconds),
                        ("--queue-size", args.queue_size), ("--concurrency", args.concurrency)):
        if value <= 0:
            raise FommError(f"{name} must be positive")
    limits = DemoLimits(max_upload_mb=args.max_upload_mb, max_video_seconds=args.max_video_seconds,
                        queue_size=args.queue_size, concurrency=args.concurrency)
    launch(host=args.host, port=args.port, share=args.share, models=extra, limits=limits, device=args.device)
    return 0
