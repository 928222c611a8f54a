"""Depth flicker on still-camera clips: per-frame min-max (a), the aligned video mode (b), warped source depth (c).

Flicker of a depth sequence = the mean over frame pairs of ``mean |d_t - d_(t-1)|`` over the pixels that do not move
between the two frames, relative to the depth range (``max - min`` of the two maps, averaged; 1 for min-max
normalised maps). The range, not the depth itself, is the reference because relative depth puts the background at or
near 0, where any change divided by the depth is huge. Static pixels: every RGB channel within 4/255 of the previous
frame (for the animated clip also a motion-field change under a quarter pixel), so what is measured is the depth
changing where the picture does not. Prints a Markdown table and writes JSON.

* real clips (shared LivePortrait driving clips, still camera, one talking head): (a) and (b) from the estimator;
* an animated clip (the shipped ``actions-64`` model driven by its still-camera example clip, the fomm model whose
  weights are real): (a), (b) on the animated frames and (c) the source's depth moved by each frame's deformation
  (:class:`fomm.compositing.depth.DepthPassStage`).

    python benchmarks/depth_flicker.py                         # portrait estimator, writes results/depth_flicker.json
    python benchmarks/depth_flicker.py --estimator depth-anything --depth-model DIR --json /tmp/d.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_CLIPS = ["faces/liveportrait/driving/d0.mp4", "faces/liveportrait/driving/d11.mp4",
                 "faces/tpsmm/driving.mp4"]


def static_mask(prev: np.ndarray, cur: np.ndarray, tol: int = 4) -> np.ndarray:
    """Pixels whose RGB values all stay within ``tol`` (of 255) between two uint8 frames."""
    return (np.abs(cur.astype(np.int16) - prev.astype(np.int16)).max(axis=2) <= tol)


def flicker(depths: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """Mean frame-to-frame change over the static pixels (``masks[t]`` for the pair t-1, t) relative to the depth
    range, in percent."""
    vals = []
    for t in range(1, len(depths)):
        m = masks[t]
        if m.sum() < 16:
            continue
        prev, cur = depths[t - 1].astype(np.float64), depths[t].astype(np.float64)
        span = max((float(prev.max() - prev.min()) + float(cur.max() - cur.min())) / 2, 1e-6)
        vals.append(float(np.abs(cur[m] - prev[m]).mean()) / span)
    return 100.0 * float(np.mean(vals)) if vals else float("nan")


def minmax(d: np.ndarray) -> np.ndarray:
    lo, hi = float(d.min()), float(d.max())
    return (d - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(d)


def measure_clip(path: Path, est, frames: int) -> dict:
    from fomm.compositing.depth import VideoDepthAligner
    from fomm.io.reading import iter_frames

    aligner = VideoDepthAligner()
    imgs, per_frame, aligned = [], [], []
    for img in iter_frames(path, max_frames=frames):
        d = est(img)
        imgs.append(img)
        per_frame.append(minmax(d))
        aligned.append(aligner(img, d))
    masks = [None] + [static_mask(imgs[t - 1], imgs[t]) for t in range(1, len(imgs))]
    static = float(np.mean([m.mean() for m in masks[1:]]))
    return {"clip": str(path.relative_to(path.parents[3])) if len(path.parents) > 3 else path.name,
            "frames": len(imgs), "static_pixels": static, "a_per_frame_minmax": flicker(per_frame, masks),
            "b_aligned": flicker(aligned, masks), "c_warped_source": None, "scene_cuts": aligner.cuts}


class _Capture:
    """A stage that keeps each frame's deformation (for the motion part of the static mask)."""

    def __init__(self) -> None:
        self.grids: list[np.ndarray] = []

    def __call__(self, frame, outputs):
        self.grids.append(outputs.deformation_at(frame.shape[:2])[0].float().cpu().numpy())
        return frame


class _FloatSink:
    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def write(self, depth: np.ndarray) -> None:
        self.frames.append(np.array(depth, np.float32))


def measure_animated(est, frames: int, size: int) -> dict:
    from fomm.animate import animate_video
    from fomm.assets import example_path
    from fomm.compositing.depth import DepthPassStage, FillConfig, VideoDepthAligner
    from fomm.io.image import read_image, resize_uint8
    from fomm.io.writing import MemorySink
    from fomm.pretrained import load_pretrained

    model = load_pretrained("actions-64")
    source = read_image(example_path("body-source.png"), min_size=16)
    # The estimator sees the frames at `size` (mediapipe wants more than 64 px); depth is compared at that size.
    big = resize_uint8(source, (size, size))
    src_depth = est(big)
    stage = DepthPassStage(src_depth)
    # The same without the disocclusion fill, to tell the motion's share of the change from the fill's.
    raw = DepthPassStage(src_depth, FillConfig(visible=1e-6), view="depth_no_fill")
    capture, sink, depth_sink, raw_sink = _Capture(), MemorySink(), _FloatSink(), _FloatSink()
    animate_video(model, source, example_path("body-driving.mp4"), sink, output_size=size, max_frames=frames,
                  progress=False, audio=False, stages=[capture, stage, raw],
                  view_sinks={"depth": depth_sink, "depth_no_fill": raw_sink})
    imgs = sink.frames
    aligner = VideoDepthAligner()
    per_frame, aligned = [], []
    for img in imgs:
        d = est(img)
        per_frame.append(minmax(d))
        aligned.append(aligner(img, d))
    px = (size - 1) / 2  # normalised grid units -> pixels
    masks = [None]
    for t in range(1, len(imgs)):
        moved = np.abs(capture.grids[t] - capture.grids[t - 1]).max(axis=2) * px
        masks.append(static_mask(imgs[t - 1], imgs[t]) & (moved < 0.25))
    return {"clip": "animated: actions-64 (shipped), body-source.png driven by body-driving.mp4", "frames": len(imgs),
            "static_pixels": float(np.mean([m.mean() for m in masks[1:]])),
            "a_per_frame_minmax": flicker(per_frame, masks), "b_aligned": flicker(aligned, masks),
            "c_warped_source": flicker(depth_sink.frames, masks),
            "c_warped_source_without_fill": flicker(raw_sink.frames, masks), "scene_cuts": aligner.cuts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--estimator", default="portrait", choices=("portrait", "depth-anything"))
    ap.add_argument("--depth-model", default=None)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    ap.add_argument("--clips", nargs="*", default=DEFAULT_CLIPS, help="clips under --data")
    ap.add_argument("--frames", type=int, default=30, help="frames per clip")
    ap.add_argument("--animated-size", type=int, default=256, help="size the animated clip is rendered at")
    ap.add_argument("--json", default=str(HERE / "results" / "depth_flicker.json"))
    args = ap.parse_args()

    from fomm.compositing.depth import DepthOptions, make_estimator

    data = Path(args.data)
    if not data.is_dir():
        for cand in (REPO.parent.parent / "shared" / "data", REPO / "shared" / "data"):
            if cand.is_dir():
                data = cand
    est = make_estimator(DepthOptions(estimator=args.estimator, model=args.depth_model))
    rows = []
    start = time.time()
    try:
        for clip in args.clips:
            rows.append(measure_clip(data / clip, est, args.frames))
            rows[-1]["clip"] = clip
            print(f"  {clip}: done", file=sys.stderr)
        rows.append(measure_animated(est, args.frames, args.animated_size))
    finally:
        getattr(est, "close", lambda: None)()

    def pct(v):
        return "-" if v is None else f"{v:.2f}%"

    print(f"\nDepth flicker ({args.estimator} estimator; mean frame-to-frame change on static pixels / depth range)\n")
    print("| clip | frames | static px | (a) per-frame min-max | (b) aligned video mode | (c) warped source |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['clip']} | {r['frames']} | {100 * r['static_pixels']:.0f}% | {pct(r['a_per_frame_minmax'])} | "
              f"{pct(r['b_aligned'])} | {pct(r['c_warped_source'])} |")
    result = {"estimator": args.estimator, "model": args.depth_model, "frames_per_clip": args.frames,
              "metric": "mean over frame pairs of mean|d_t - d_t-1| on static pixels / depth range (max - min), %",
              "machine": platform.platform(), "python": platform.python_version(),
              "seconds": round(time.time() - start, 1), "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
