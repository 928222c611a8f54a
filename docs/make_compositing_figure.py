"""Make ``docs/compositing.png``: the README's strip for depth-aware compositing.

Panels, left to right: the frame, its depth (the offline ``auto`` estimator; near = white), the two extremes of a
swing parallax move (pivot 0.5, 4% of the width), and the red-cyan (Dubois) anaglyph of the stereo pair (2%
divergence). The frame is the bundled face clip's frame 20; with ``--checkpoint vox-cpk.pth.tar`` it is instead
that frame of the bundled photo animated by the bundled clip, the way ``fomm animate`` makes it.

    python docs/make_compositing_figure.py                      # writes docs/compositing.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

SIDE = 256
FRAME = 20


def _frame(checkpoint: str | None) -> tuple[np.ndarray, str]:
    from fomm.assets import example_path
    from fomm.io.reading import read_frames_at

    if checkpoint is None:
        return read_frames_at(example_path("driving.mp4"), [FRAME], size=(SIDE, SIDE))[0], "video frame"
    import fomm
    from fomm.animate import AnimationOptions, animate_video
    from fomm.io.writing import MemorySink

    model = fomm.load_model("vox-256", checkpoint)
    sink = MemorySink()
    animate_video(model, example_path("source.png"), example_path("driving.mp4"), sink,
                  AnimationOptions(progress=False, max_frames=FRAME + 1))
    return sink.frames[FRAME], "animated frame"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="a vox-256 checkpoint, to show an animated frame")
    ap.add_argument("-o", "--output", default=str(HERE / "compositing.png"))
    args = ap.parse_args()

    from fomm.compositing.camera import ParallaxConfig
    from fomm.compositing.depth import make_estimator
    from fomm.compositing.stage import CompositeOptions, CompositeStage
    from fomm.compositing.stereo import StereoConfig
    from fomm.io.image import write_image

    frame, label = _frame(args.checkpoint)
    depth = make_estimator().__call__(frame)
    panels = [(frame, label), ((np.clip(depth, 0, 1)[..., None].repeat(3, 2) * 255).round().astype(np.uint8),
                               "depth (near = white)")]
    swing = ParallaxConfig("swing", amount=0.04, pivot=0.5, period=4.0)
    for seconds, name in ((1.0, "parallax, camera right"), (3.0, "parallax, camera left")):
        stage = CompositeStage(CompositeOptions(parallax=swing), depth=lambda f: depth, fps=1)
        stage.index = int(seconds)  # the swing's extremes: a quarter and three quarters of the period
        panels.append((stage(frame), name))
    ana = CompositeStage(CompositeOptions(stereo=StereoConfig("anaglyph", divergence=2.0)), depth=lambda f: depth)
    panels.append((ana(frame), "anaglyph (Dubois)"))
    pad, caption = 6, 18
    strip = Image.new("RGB", (len(panels) * (SIDE + pad) + pad, SIDE + caption + 2 * pad), "white")
    draw = ImageDraw.Draw(strip)
    for i, (img, name) in enumerate(panels):
        x = pad + i * (SIDE + pad)
        strip.paste(Image.fromarray(img), (x, pad))
        draw.text((x + 4, SIDE + pad + 3), name, fill=(0, 0, 0))
    write_image(args.output, np.asarray(strip))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
