"""``fomm eval``: the papers' reconstruction protocol for FOMM, Monkey-Net, X2Face or copy-the-source."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator

import numpy as np
import torch


def _add_model_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--relative", action="store_true",
                   help="relative keypoint motion (default: absolute, as in the papers' protocol)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8)


def register(sub: argparse._SubParsersAction) -> None:
    from fomm.eval.cli import add_eval_parser

    p = add_eval_parser(sub)
    _add_model_run_args(p)  # the sub-command-less form: fomm eval --model M --data ROOT --out DIR
    for action in p._subparsers._group_actions[0].choices.values():  # type: ignore[union-attr]
        if any(a.dest == "model" for a in action._actions):
            _add_model_run_args(action)
    p.set_defaults(func=main)


def fomm_reconstructor(model, relative: bool = False, batch_size: int = 8):
    """A :data:`fomm.eval.protocol.Reconstructor` backed by a loaded model: FOMM, Monkey-Net or X2Face
    (:func:`fomm.animate.make_animator`). Frames float ``[H, W, 3]`` in [0, 1]; frame 0 of each video is the source
    (the protocol's caller passes it); generated frames come back at the input size."""
    from fomm.animate import make_animator

    def to_tensor(frame: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).permute(2, 0, 1)[None]
        if t.shape[-2:] != model.image_size:
            t = torch.nn.functional.interpolate(t, size=model.image_size, mode="bilinear", align_corners=False,
                                                antialias=True)
        return t.to(model.device)

    def reconstruct(source: np.ndarray, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        size = source.shape[:2]
        anim = make_animator(model, relative=relative, adapt_movement_scale=False, batch_size=batch_size)
        anim.set_source(to_tensor(source))

        def flush(batch: list[torch.Tensor]) -> Iterator[np.ndarray]:
            pred = anim.animate_batch(torch.cat(batch))
            if tuple(pred.shape[-2:]) != tuple(size):
                pred = torch.nn.functional.interpolate(pred, size=size, mode="bilinear", align_corners=False,
                                                       antialias=True)
            yield from pred.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

        batch: list[torch.Tensor] = []
        for frame in driving:
            batch.append(to_tensor(frame))
            if len(batch) == batch_size:
                yield from flush(batch)
                batch = []
        if batch:
            yield from flush(batch)

    return reconstruct


#: the models ``fomm eval --model`` builds (besides ``copy-source``)
EVAL_MODELS = ("fomm", "monkeynet", "x2face")


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
    model = load_model(args.config, args.checkpoint, device=args.device, model=args.model)
    return fomm_reconstructor(model, relative=args.relative, batch_size=args.batch_size)


def main(args: argparse.Namespace) -> int:
    from fomm.eval.cli import run_eval

    print(run_eval(args, make_reconstructor=_make_reconstructor))
    return 0
