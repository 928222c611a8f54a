"""Options shared by several subcommands."""

from __future__ import annotations

import argparse

from fomm.errors import FommError
from fomm.families import family_names

#: ``--model`` choices: the registered model families (:mod:`fomm.families`)
MODEL_CHOICES = family_names()


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--pretrained", metavar="NAME",
                   help="a model shipped with fomm (see `fomm.pretrained`; default when no --checkpoint is given: "
                        "actions-64)")
    g.add_argument("--model", choices=MODEL_CHOICES, default="fomm",
                   help="which model the checkpoint is: fomm, or the monkeynet / x2face baselines "
                        "(default: %(default)s)")
    g.add_argument("--config", default=None,
                   help="bundled config name (vox-256, taichi-256, ...; for --model monkeynet/x2face the names in "
                        "fomm/configs/<model>, e.g. actions-64) or a YAML file (default: vox-256 for fomm, the "
                        "released architecture for x2face)")
    g.add_argument("--checkpoint", help="checkpoint file in the authors' format (e.g. vox-cpk.pth.tar)")
    g.add_argument("--random-weights", action="store_true",
                   help="run without a checkpoint (random weights: for smoke tests and benchmarks only)")
    g.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")


def load_model_from_args(args: argparse.Namespace):
    from fomm.api import load_model
    from fomm.pretrained import DEFAULT_MODEL, REGISTRY, load_pretrained

    if args.pretrained is not None:
        if args.checkpoint is not None or args.random_weights:
            raise FommError("--pretrained cannot be combined with --checkpoint or --random-weights")
        return load_pretrained(args.pretrained, device=args.device)
    if args.checkpoint is None and not args.random_weights:
        if args.config is None and getattr(args, "model", "fomm") == "fomm" and REGISTRY[DEFAULT_MODEL].available:
            return load_pretrained(DEFAULT_MODEL, device=args.device)
        raise FommError("no checkpoint given: pass --checkpoint PATH (e.g. vox-cpk.pth.tar), --pretrained NAME for a "
                        "model shipped with fomm, or --random-weights for a smoke test with an untrained model")
    model = getattr(args, "model", "fomm") or "fomm"
    config = args.config
    if config is None:
        if model == "monkeynet":
            raise FommError("--model monkeynet needs --config (the Monkey-Net YAML the checkpoint was trained with, "
                            "or a bundled name such as actions-64)")
        config = "vox-256" if model == "fomm" else None
    return load_model(config, args.checkpoint, device=args.device, model=model)


def parse_size(text: str) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"480x640"`` (W x H) -> (640, 480) as (h, w)."""
    try:
        if "x" in text.lower():
            w, h = (int(v) for v in text.lower().split("x"))
        else:
            w = h = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size '{text}': use N or WxH, e.g. 256 or 640x480") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"invalid size '{text}': each side must be between 16 and 8192")
    return (h, w)
