"""``fomm live`` speed: frames/s out and capture-to-output latency at 256x256, what ``fomm live --benchmark`` measures.

Each variant runs the live pipeline exactly as the CLI builds it (:class:`fomm.live.LiveEngine` at batch 1,
:class:`fomm.live.LiveRunner` with its capture, inference and output threads and one-slot queues, keypoint smoothing
on, ``--output null``) on a webcam-like input: the bundled ``driving.mp4`` face clip padded to 640x480 and played at
30 frames/s (a file source is paced like a camera; the centre crop and the resize to 256 are part of the timed
capture stage). The first 5 output frames are left out (allocation, the bf16 calibration).

Variants: vox-256 (random weights: speed does not depend on them) in torch bf16 (the fastest CPU path, where the CPU
has bf16 kernels), torch fp32 and ONNX Runtime fp32; and ``slow_100ms``: the shipped 64x64 model padded to 100 ms
per frame, which shows the queues' bound (p95 capture-to-output <= model time + two frame intervals at 30 frames/s).

Target (issue 21): on this CPU at 256x256 with the fastest backend, >= 8 frames/s out and p95 capture-to-output
<= 200 ms; on a GPU, >= 100 frames/s and <= 30 ms. For the torch variants the JSON also records the model's
GFLOP per frame (torch's profiler count) and what this device does on the generator's dominant op (a 3x3 conv
256 -> 256 at 64x64, channels-last, same precision): their ratio is the model's floor in ms per frame here, which
says whether a target is within the device's reach at all. The machine may be shared: the JSON records the load average
before and after, and the threads torch used.

    python benchmarks/live.py                       # writes benchmarks/results/live.json
    python benchmarks/live.py --frames 200 --variants bf16 --json /tmp/live.json
    python benchmarks/live.py --device cuda --variants fp16 --json benchmarks/results/live_cuda.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def webcam_clip(out: Path, frames: int = 169) -> Path:
    """The bundled face clip padded to 640x480 at 30 frames/s, like a webcam's frames."""
    from fomm.assets import example_path
    from fomm.io.reading import iter_frames
    from fomm.io.writing import VideoWriter

    with VideoWriter(out, 30) as w:
        for frame in iter_frames(example_path("driving.mp4"), size=(480, 480), max_frames=frames):
            w.write(np.pad(frame, ((0, 0), (80, 80), (0, 0)), mode="edge"))
    return out


class SlowEngine:
    """An engine padded to ``seconds`` per frame (the runner's bound does not depend on what the model is)."""

    def __init__(self, engine, seconds: float) -> None:
        self.engine, self.seconds = engine, seconds

    def prepare(self, frame, t, index):
        return self.engine.prepare(frame, t, index)

    def animate(self, prepared):
        start = time.perf_counter()
        result = self.engine.animate(prepared)
        time.sleep(max(0.0, self.seconds - (time.perf_counter() - start)))
        return result

    def command(self, name):
        return self.engine.command(name)


def run_variant(name: str, clip: Path, frames: int, device: str, stack: contextlib.ExitStack) -> dict:
    import fomm
    from fomm.assets import example_path
    from fomm.io.image import read_image
    from fomm.live import LiveEngine, LiveOptions, LiveRunner, RunOptions
    from fomm.live.outputs import NullOutput
    from fomm.live.sources import VideoFileSource

    source = read_image(example_path("source.png"))
    if name == "slow_100ms":
        engine = SlowEngine(LiveEngine.for_model(fomm.load_model("actions-64"), [source]), 0.100)
    elif name == "onnx":
        from fomm.realtime.export import export_onnx
        from fomm.realtime.onnx_runtime import OnnxModel

        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="fomm-live-onnx-"))
        export_onnx(fomm.load_model("vox-256", None, device=device), folder)
        engine = LiveEngine.for_model(OnnxModel(folder, device=device), [source])
    else:
        model = fomm.load_model("vox-256", None, device=device)
        engine = LiveEngine.for_model(model, [source], LiveOptions(precision=name))
    warmup = 5
    # The same engine alone, in this thread, just before the run: what the pipeline adds is the difference.
    from fomm.io.reading import iter_frames

    frame = next(iter(iter_frames(clip, max_frames=1)))
    alone = []
    for i in range(warmup + 10):
        start = time.perf_counter()
        engine.animate(engine.prepare(frame, i / 30, i))
        alone.append(time.perf_counter() - start)
    engine.command("calibrate")
    runner = LiveRunner(engine, VideoFileSource(clip), [NullOutput()],
                        RunOptions(max_frames=frames + warmup, warmup=warmup))
    stats = runner.run()
    stats["variant"] = name
    stats["engine_alone_p50_ms"] = round(float(np.median(alone[warmup:])) * 1000, 1)
    if name in ("bf16", "fp16", "fp32"):
        gflop = frame_gflop(engine, frame)
        stats["gflop_per_frame"] = round(gflop, 2)
        stats["achieved_gflops"] = round(gflop / (stats["engine_alone_p50_ms"] / 1000), 1)
    return stats


def frame_gflop(engine, frame: np.ndarray) -> float:
    """Floating-point operations of one engine frame (convolutions and matmuls, as torch's profiler counts them),
    in GFLOP."""
    prepared = engine.prepare(frame, 0.0, 0)
    with torch.profiler.profile(with_flops=True) as prof:
        engine.animate(prepared)
    return sum(e.flops for e in prof.key_averages() if e.flops) / 1e9


def conv_rate_gflops(precision: str, device: str, repeats: int = 20) -> float:
    """What this device does on the generator's dominant op, in GFLOP/s: a 3x3 conv 256 -> 256 at 64x64, batch 1,
    channels-last, in ``precision`` (the bottleneck blocks run twelve of these per frame)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(device=device, dtype=dtype, memory_format=torch.channels_last)
    x = torch.randn(1, 256, 64, 64, device=device, dtype=dtype).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(3):
            conv(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            conv(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / repeats
    return 2 * 256 * 256 * 9 * 64 * 64 / seconds / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=100, help="measured output frames per variant")
    ap.add_argument("--variants", default="bf16,fp32,onnx,slow_100ms",
                    help="comma-separated: bf16, fp16 (CUDA), fp32, onnx, slow_100ms")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=str(HERE / "results" / "live.json"))
    args = ap.parse_args()
    from benchmarks.machine import device_name
    from fomm.allocator import keep_freed_memory

    keep_freed_memory()  # as the fomm command does first
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fomm-live-bench-") as tmp, contextlib.ExitStack() as stack:
        clip = webcam_clip(Path(tmp) / "webcam.mp4")
        for name in args.variants.split(","):
            rows.append(run_variant(name.strip(), clip, args.frames, args.device, stack))
            lat = rows[-1]["latency"]
            print(f"{name:>10}: {rows[-1]['fps_out']:6.2f} frames/s out, {rows[-1]['fps_in']:5.1f} in, "
                  f"p95 capture-to-output {lat['capture_to_output']['p95_ms']:6.1f} ms, model p50 "
                  f"{lat['model']['p50_ms']:6.1f} ms, dropped {rows[-1]['dropped']['total']}", flush=True)
    load_after = os.getloadavg()
    rates = {r["variant"]: round(conv_rate_gflops(r["variant"], args.device), 1)
             for r in rows if "gflop_per_frame" in r}
    for r in rows:
        if r["variant"] in rates:
            r["conv_rate_gflops"] = rates[r["variant"]]
            r["floor_ms"] = round(r["gflop_per_frame"] / rates[r["variant"]] * 1000, 1)
            print(f"{r['variant']:>10}: {r['gflop_per_frame']:.1f} GFLOP per frame at {r['achieved_gflops']:.0f} "
                  f"GFLOP/s; a 3x3 256->256 conv at 64x64 runs at {rates[r['variant']]:.0f} GFLOP/s here, so the model "
                  f"alone needs >= {r['floor_ms']:.0f} ms per frame on this device")
    print("\n| variant | frames/s out | frames/s in | dropped | engine alone p50 (ms) | model p50 in the run (ms) | "
          "capture-to-output p50 / p95 (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        lat = r["latency"]
        print(f"| {r['variant']} | {r['fps_out']:.2f} | {r['fps_in']:.1f} | {r['dropped']['total']} | "
              f"{r['engine_alone_p50_ms']:.1f} | {lat['model']['p50_ms']:.1f} | "
              f"{lat['capture_to_output']['p50_ms']:.1f} / "
              f"{lat['capture_to_output']['p95_ms']:.1f} |")
    result = {"device": device_name(args.device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "platform": platform.platform(), "input": "640x480 at 30 frames/s",
              "size": "256x256 (vox-256, random weights)", "loadavg_before": load_before,
              "loadavg_after": load_after, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f}; wrote {args.json}")


if __name__ == "__main__":
    main()
