"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import math

from fomm.errors import FommError
from fomm.families import family_names

#: ``--model`` choices: the registered model families (:mod:`fomm.families`)
MODEL_CHOICES = family_names()


class RangeType:
    """An argparse ``type=`` for a number within bounds, so every numeric flag is checked where it is read.

    A bad value then ends in argparse's one line, which names the flag (``argument --workers: ...``) and the accepted
    range, before any model or video is loaded. A plain ``type=int`` would accept ``--workers -1`` or
    ``--checkpoint-freq 0`` and fail later, deep inside torch or with a silently wrong run. Floats must be finite:
    ``float("nan")`` parses and passes every ``<`` comparison, so a range check alone would let it through.

    ``low_open`` excludes the lower bound (``> 0`` rather than ``>= 0``). ``message``, when given, replaces the
    wording, with ``{text}`` (what the user typed) and ``{range}`` (e.g. ``an integer from 16 to 19``) filled in.
    """

    def __init__(self, kind: type, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                 message: str | None = None) -> None:
        self.kind = kind
        self.low = low
        self.high = high
        self.low_open = low_open
        self.message = message
        # argparse shows ``type.__name__`` in some of its own messages.
        self.__name__ = self.describe()

    def describe(self) -> str:
        """The accepted values in words: ``an integer >= 1``, ``a number from 0 to 0.5``, ``a number > 0``."""
        noun = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None and not self.low_open:
            return f"{noun} from {_num(self.low)} to {_num(self.high)}"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_num(self.low)}")
        if self.high is not None:
            parts.append(f"<= {_num(self.high)}")
        return f"{noun} {' and '.join(parts)}" if parts else noun

    def contains(self, value: float) -> bool:
        if self.kind is float and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            value = None
        if value is None or not self.contains(value):
            if self.message is not None:
                raise argparse.ArgumentTypeError(self.message.format(text=text, range=self.describe()))
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got '{text}'")
        return value

    def out_of_range(self) -> list[str]:
        """Values this type refuses (a non-number, a non-finite float, just past each bound): the hostile-input
        tests feed them to every flag that uses the type."""
        bad = ["abc"]
        step = 1 if self.kind is int else 0.001
        if self.low is not None:
            bad.append(_num(self.low) if self.low_open else _num(self.low - step))
        if self.high is not None:
            bad.append(_num(self.high + step))
        if self.kind is int:
            bad.append("1.5")
        else:
            bad += ["nan", "inf"]
        return bad

    def __repr__(self) -> str:
        return f"RangeType({self.describe()})"


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def int_range(low: int | None = None, high: int | None = None, message: str | None = None) -> RangeType:
    """An integer in ``[low, high]`` (either bound may be None: unbounded)."""
    return RangeType(int, low, high, message=message)


def fraction(low: float = 0.0, high: float = 1.0) -> RangeType:
    """A finite number in ``[low, high]`` (a share, a margin, a blend amount)."""
    return RangeType(float, low, high)


#: ``>= 1``: counts, batch sizes, epochs, frequencies
positive_int = int_range(1)
#: ``>= 0``: indices, worker counts where 0 means "in this process"
nonneg_int = int_range(0)
#: ``> 0``, finite: limits in MB or seconds
positive_float = RangeType(float, 0, None, low_open=True)
#: ``>= 0``, finite: margins
nonneg_float = RangeType(float, 0, None)
#: driving frames per forward pass: beyond this a batch only costs memory
batch_size = int_range(1, 1024)
#: a TCP port a server can listen on
port = int_range(1, 65535)
#: a square frame side in pixels (the same bounds as :func:`parse_size`)
side = int_range(16, 8192)
#: a seed torch and numpy both accept
seed = int_range(0, 2**32 - 1)


def device_name(text: str) -> str:
    """argparse ``type=`` for ``--device``: refuses a device torch does not know (``quantum``) at parse time, so the
    message names the flag; whether it is available here is checked when the model loads. ``auto`` (train) passes."""
    from fomm.api import parse_device

    if text != "auto":
        try:
            parse_device(text)
        except FommError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return text


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
    g.add_argument("--device", type=device_name, default="cpu",
                   help="torch device, e.g. cpu or cuda (default: %(default)s)")


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



def _size_out_of_range() -> list[str]:
    return ["0", "15", "8193", "64x64x64", "abc", "-5", "64x", "64x0"]


#: values :func:`parse_size` refuses, for the hostile-input tests (as :meth:`RangeType.out_of_range`)
parse_size.out_of_range = _size_out_of_range  # type: ignore[attr-defined]
