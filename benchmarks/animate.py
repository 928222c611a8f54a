"""Animator throughput and peak memory at vox-256 size, for a short and a long driving clip.

Each case runs in a fresh subprocess so its peak RSS (``ru_maxrss``) is its own. Random weights are used
(speed and memory do not depend on the values). Prints a Markdown table and writes JSON.

    python benchmarks/animate.py                      # 50 and 500 frames, writes benchmarks/results/animate.json
    python benchmarks/animate.py --frames 20 60 --json /tmp/a.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_driving(path: Path, frames: int, size: int = 256, fps: int = 25) -> None:
    from fomm.io.writing import VideoWriter

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    with VideoWriter(path, fps=fps) as w:
        for t in range(frames):
            cx, cy = 0.5 + 0.2 * np.cos(t / 10), 0.5 + 0.2 * np.sin(t / 13)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02)
            img = np.stack([blob, 0.5 * xx + 0.3 * blob, 0.5 * yy], -1)
            w.write((np.clip(img, 0, 1) * 255).astype(np.uint8))


def child(args: argparse.Namespace) -> None:
    import torch

    import fomm
    from fomm.animate import animate_video

    torch.set_num_threads(args.threads)
    model = fomm.load_model(args.config)
    source = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = animate_video(model, source, args.driving, Path(tmp) / "out.mp4", batch_size=args.batch_size,
                            progress=False)
        elapsed = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": res.num_frames, "seconds": elapsed, "peak_rss_mib": peak_kib / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[50, 500])
    ap.add_argument("--config", default="vox-256")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=str(HERE / "results" / "animate.json"))
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--driving", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        child(args)
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            clip = Path(tmp) / f"driving_{n}.mp4"
            make_driving(clip, n)
            cmd = [sys.executable, __file__, "--_child", "--driving", str(clip), "--config", args.config,
                   "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=dict(os.environ))
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["fps"] = r["frames"] / r["seconds"]
            rows.append(r)
            print(f"  {n} frames: {r['fps']:.3f} frames/s, peak RSS {r['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    base = rows[0]["peak_rss_mib"]
    for r in rows:
        r["rss_vs_first"] = r["peak_rss_mib"] / base
    result = {
        "benchmark": "animate", "config": args.config, "weights": "random", "batch_size": args.batch_size,
        "threads": args.threads, "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                             "python": platform.python_version()},
        "rows": rows,
    }
    print(f"| driving frames | frames/s | s/frame | peak RSS (MiB) | RSS vs {rows[0]['frames']} frames |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['frames']} | {r['fps']:.3f} | {1 / r['fps']:.3f} | {r['peak_rss_mib']:.0f} | "
              f"{r['rss_vs_first']:.3f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
