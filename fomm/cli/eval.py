"""``fomm eval``: the papers' reconstruction protocol for FOMM, Monkey-Net, X2Face or copy-the-source."""

from __future__ import annotations

import argparse

from fomm.cli.common import batch_size, device_name
from fomm.cli.safety import refuse_eval_overwrite
from fomm.families import family_names


def _add_model_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--relative", action="store_true",
                   help="relative keypoint motion (default: absolute, as in the papers' protocol)")
    p.add_argument("--device", type=device_name, default="cpu", help="torch device: cpu, cuda, cuda:N, mps")
    p.add_argument("--batch-size", type=batch_size, default=8, help="frames per forward pass, 1-1024 (default: 8)")


def register(sub: argparse._SubParsersAction) -> None:
    from fomm.eval.cli import add_eval_parser

    p = add_eval_parser(sub)
    _add_model_run_args(p)  # the sub-command-less form: fomm eval --model M --data ROOT --out DIR
    for action in p._subparsers._group_actions[0].choices.values():  # type: ignore[union-attr]
        if any(a.dest == "model" for a in action._actions):
            _add_model_run_args(action)
    p.set_defaults(func=main)


def fomm_reconstructor(model, relative: bool = False, batch_size: int = 8):
    """The reconstructor of ``model``'s family (kept under its old name; see :mod:`fomm.eval.reconstruct`)."""
    from fomm.families import get_family

    return get_family(model.model).resolve("reconstructor")(model, relative=relative, batch_size=batch_size)


#: the models ``fomm eval --model`` builds (besides ``copy-source``): every registered family
EVAL_MODELS = family_names()


def _make_reconstructor(args: argparse.Namespace):
    from fomm.api import load_model
    from fomm.errors import FommError

    if args.model not in EVAL_MODELS:
        raise FommError(f"fomm eval --model {args.model}: unknown model; choose copy-source, "
                        f"{', '.join(EVAL_MODELS)}")
    if args.checkpoint is None:
        raise FommError(f"fomm eval --model {args.model} needs --checkpoint (and --config for fomm/monkeynet)")
    if args.config is None and args.model != "x2face":
        raise FommError(f"fomm eval --model {args.model} needs --config (the YAML or bundled name it was "
                        "trained with) and --checkpoint")
    if args.batch_size < 1:
        raise FommError("--batch-size must be at least 1")
    refuse_eval_overwrite(args)  # after the option checks, before the model loads
    model = load_model(args.config, args.checkpoint, device=args.device, model=args.model)
    return fomm_reconstructor(model, relative=args.relative, batch_size=args.batch_size)


def main(args: argparse.Namespace) -> int:
    from fomm.eval.cli import run_eval

    if args.eval_command == "compare" or args.rescore or args.model == "copy-source":
        refuse_eval_overwrite(args)  # no model to load: before any work (a model run checks in _make_reconstructor)
    print(run_eval(args, make_reconstructor=_make_reconstructor))
    return 0
