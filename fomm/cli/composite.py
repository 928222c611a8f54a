"""``fomm composite``: parallax moves, stereo 3D, depth of field, fog and new backgrounds for any video (and the
compositing options ``fomm animate`` shares).

Option values are read here, not by argparse (no ``type=``/``choices=``), so a bad value is one
``fomm: error:`` line naming the option rather than a usage dump.
"""

from __future__ import annotations

import argparse
import sys

from fomm.cli.common import int_range, positive_int
from fomm.errors import FommError

_COLOURS = {"white": (255, 255, 255), "gray": (128, 128, 128), "grey": (128, 128, 128), "black": (0, 0, 0),
            "blue": (170, 190, 220), "warm": (235, 215, 190)}
#: Options that only make sense with another one: ``{option dest: (flag, needs dest, needs flag)}``.
_NEEDS = {"parallax_amount": ("--parallax-amount", "parallax", "--parallax"),
          "pivot": ("--pivot", "parallax", "--parallax"), "period": ("--period", "parallax", "--parallax"),
          "divergence": ("--divergence", "stereo", "--stereo"), "convergence": ("--convergence", "stereo", "--stereo"),
          "anaglyph": ("--anaglyph", "stereo", "--stereo"),
          "plate_depth": ("--plate-depth", "background", "--background"),
          "matte_threshold": ("--matte-threshold", "background", "--background")}


def add_composite_options(p: argparse.ArgumentParser, title: str = "compositing") -> argparse._ArgumentGroup:
    g = p.add_argument_group(title, "effects run in this order: background -> fog -> dof -> parallax -> stereo")
    g.add_argument("--parallax", metavar="MOVE",
                   help="camera move: orbit, swing (sideways and back), dolly (push in) or zoom (dolly zoom)")
    g.add_argument("--parallax-amount", metavar="F", help="size of the move, fraction of the width (default 0.02)")
    g.add_argument("--pivot", metavar="DEPTH", help="depth that stays still, 0 (far) - 1 (near) (default 0.5)")
    g.add_argument("--period", metavar="SECONDS", help="seconds per cycle of the move (default 4)")
    g.add_argument("--stereo", metavar="FORMAT",
                   help="stereo 3D: sbs, hsbs (half side-by-side), tb, htb (half top-bottom), anaglyph, cross; .mkv "
                        "outputs are tagged so players know the layout")
    g.add_argument("--divergence", metavar="PERCENT", help="disparity between the eyes, percent of the width "
                                                            "(default 2)")
    g.add_argument("--convergence", metavar="DEPTH", help="depth on the screen plane, 0-1 (default 0.5)")
    g.add_argument("--anaglyph", metavar="MODE", help="anaglyph colours: dubois (default), gray or color")
    g.add_argument("--dof", metavar="FOCUS,APERTURE",
                   help="depth of field: the depth in focus (0-1) and the blur, percent of the width per unit of "
                        "depth (e.g. 0.8,2)")
    g.add_argument("--fog", metavar="DENSITY[,COLOR]",
                   help="exponential depth fog: density (e.g. 2) and colour (#rrggbb, r,g,b or white, gray, black, "
                        "blue, warm; default white)")
    g.add_argument("--background", metavar="PLATE", help="new background behind the person: an image or a video")
    g.add_argument("--plate-depth", metavar="DEPTH", help="the plate's depth for parallax, 0-1 (default 0: far)")
    g.add_argument("--matte-threshold", metavar="DEPTH",
                   help="depth separating the person from the background (default 0.5)")
    g.add_argument("--renderer", metavar="NAME", help="splat (default, per pixel) or layers (depth slabs)")
    g.add_argument("--layers", metavar="K", help="slabs of the layers renderer, 2-64 (default 8)")
    g.add_argument("--fill", metavar="METHOD",
                   help="holes behind moved foreground: edge (default), opencv, or an .onnx inpainting model (LaMa)")
    return g


def _float(text: str | None, flag: str, default: float) -> float:
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise FommError(f"{flag} takes a number, got {text!r}") from None


def _numbers(text: str, flag: str, count: int, form: str) -> list[float]:
    parts = [t.strip() for t in text.split(",")]
    if len(parts) != count:
        raise FommError(f"{flag} takes {form}, got {text!r}")
    return [_float(t, flag, 0.0) for t in parts]


def _colour(parts: list[str], flag: str) -> tuple[float, float, float]:
    if len(parts) == 1 and parts[0].lower() in _COLOURS:
        return tuple(float(v) for v in _COLOURS[parts[0].lower()])
    if len(parts) == 1 and parts[0].startswith("#") and len(parts[0]) == 7:
        try:
            return tuple(float(int(parts[0][i:i + 2], 16)) for i in (1, 3, 5))
        except ValueError:
            pass
    if len(parts) == 3:
        return tuple(_float(v, flag, 0.0) for v in parts)
    raise FommError(f"{flag}: colour must be #rrggbb, r,g,b (0-255) or one of {', '.join(_COLOURS)}; got "
                    f"{','.join(parts)!r}")


def composite_options_from_args(args: argparse.Namespace):
    """A :class:`~fomm.compositing.stage.CompositeOptions` from the options of :func:`add_composite_options`
    (every value checked; an option without the one it refines is refused)."""
    from fomm.compositing.camera import ParallaxConfig
    from fomm.compositing.stage import CompositeOptions
    from fomm.compositing.stereo import StereoConfig

    for dest, (flag, needs, needs_flag) in _NEEDS.items():
        if getattr(args, dest) is not None and getattr(args, needs) is None:
            raise FommError(f"{flag} only applies with {needs_flag}")
    if args.layers is not None and args.renderer != "layers":
        raise FommError("--layers only applies with --renderer layers")
    parallax = None if args.parallax is None else ParallaxConfig(
        move=args.parallax, amount=_float(args.parallax_amount, "--parallax-amount", 0.02),
        pivot=_float(args.pivot, "--pivot", 0.5), period=_float(args.period, "--period", 4.0))
    stereo = None if args.stereo is None else StereoConfig(
        format=args.stereo, divergence=_float(args.divergence, "--divergence", 2.0),
        convergence=_float(args.convergence, "--convergence", 0.5), anaglyph=args.anaglyph or "dubois")
    dof = None if args.dof is None else tuple(_numbers(args.dof, "--dof", 2, "FOCUS,APERTURE (e.g. 0.8,2)"))
    fog = None
    if args.fog is not None:
        parts = [t.strip() for t in args.fog.split(",")]
        fog = (_float(parts[0], "--fog density", 0.0), _colour(parts[1:], "--fog") if parts[1:] else (255.0,) * 3)
    layers = 8
    if args.layers is not None:
        try:
            layers = int(args.layers)
        except ValueError:
            raise FommError(f"--layers takes a whole number, got {args.layers!r}") from None
    return CompositeOptions(parallax=parallax, stereo=stereo, dof=dof, fog=fog, background=args.background,
                            plate_depth=_float(args.plate_depth, "--plate-depth", 0.0),
                            matte_threshold=_float(args.matte_threshold, "--matte-threshold", 0.5),
                            renderer=args.renderer or "splat", layers=layers, fill=args.fill or "edge")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("composite", help="parallax, stereo 3D, depth of field, fog and new backgrounds for any video",
                       description="Composite a video with its depth: a parallax camera move, stereo 3D (SBS, "
                                   "top-bottom, anaglyph), depth of field, fog, a new background plate. Depth comes "
                                   "from a depth pass (fomm depth VIDEO -o DIR) or is estimated offline (--depth "
                                   "auto). The output keeps the video's frame rate and audio.")
    p.add_argument("video", help="video file, folder of frames, or image")
    p.add_argument("-o", "--output", required=True,
                   help="output .mp4/.mkv/.mov, or a folder ending with / for PNG frames (.mkv carries the stereo "
                        "layout tag)")
    p.add_argument("--depth", default="auto", metavar="DIR|FILE|auto",
                   help="depth pass of this video (a folder of 16-bit PNG/EXR/NPY maps, one map for every frame, or a "
                        "grey video; near = white) or auto: estimate it offline (default)")
    add_composite_options(p)
    run = p.add_argument_group("run")
    run.add_argument("--max-frames", type=positive_int, metavar="N", help="only the first N frames")
    run.add_argument("--no-audio", action="store_true", help="do not copy the video's audio")
    run.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    run.add_argument("--threads", type=int_range(1, 256), metavar="N",
                     help="CPU threads for torch (default: torch's choice)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from fomm.compositing.composite import composite_video

    options = composite_options_from_args(args)
    if not options.active:
        raise FommError("nothing to composite: give at least one of --parallax, --stereo, --dof, --fog, --background")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    result = composite_video(args.video, args.output, options, args.depth, max_frames=args.max_frames,
                             audio=not args.no_audio, progress=not args.quiet, device=args.device)
    h, w = result.size
    extra = f", stereo_mode {result.stereo_mode}" if result.stereo_mode else ""
    audio = "with audio" if result.has_audio else "no audio"
    print(f"wrote {result.output} ({result.num_frames} frames, {w}x{h}, {result.fps:g} fps, {audio}, depth "
          f"{result.depth}{extra})", file=sys.stderr if args.quiet else sys.stdout)
    return 0
