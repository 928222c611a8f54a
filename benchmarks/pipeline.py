"""End to end against the model alone: how much of the model's speed ``fomm animate`` keeps.

In one run, on the same weights and frames (the bundled ``driving.mp4`` and ``source.png``), rounds interleaved:

* ``model``: :meth:`Animator.animate_batch` on driving frames decoded and resized beforehand (model work only);
* ``frames``: :meth:`Animator.animate_frames`, uint8 frames in and out (adds the host conversions);
* ``e2e``: :func:`fomm.animate.animate_video` writing an MP4 (decode, resize, model, stages, encode, mux),
  pipelined (reader and writer threads, the default) and ``e2e_serial`` (one thread), timed from the call to the
  closed file: what ``fomm animate`` does, minus process start and model loading;
* on CUDA, also batch-1 latency with and without CUDA graphs (``Animator(cuda_graphs=True)``), and the reduced
  precision (fp16 on CUDA, bf16 on CPUs with bf16 kernels).

The target (issue "GPU end to end"): end-to-end frames/s within 15% of model-only frames/s at the same batch and
precision. Weights are random (speed does not depend on them). Prints a Markdown table, writes JSON with the device
name.

    python benchmarks/pipeline.py                          # CPU, writes benchmarks/results/pipeline.json
    python benchmarks/pipeline.py --device cuda --frames 1000 --batch-size 8 \
        --json benchmarks/results/pipeline_cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="vox-256")
    ap.add_argument("--frames", type=int, default=32, help="driving frames per variant per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=str(HERE / "results" / "pipeline.json"))
    args = ap.parse_args()
    import fomm
    from benchmarks.machine import device_name
    from fomm.animate import AnimationOptions, Animator, animate_video
    from fomm.assets import example_path
    from fomm.io.image import read_image
    from fomm.io.reading import iter_frames, probe_video
    from fomm.models.fomm.precision import cpu_supports_bf16

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = fomm.load_model(args.config, device=device)
    source, driving_path = read_image(example_path("source.png")), example_path("driving.mp4")
    available = probe_video(driving_path).num_frames
    # A driving clip of exactly --frames frames (the example looped), so every variant animates the same frames.
    frames = []
    while len(frames) < args.frames:
        frames += list(iter_frames(driving_path, max_frames=min(available, args.frames - len(frames))))
    b = args.batch_size
    low = "fp16" if device.type == "cuda" else ("bf16" if cpu_supports_bf16() else None)
    precisions = ["fp32"] + ([low] if low else [])
    channels_last = device.type == "cpu"

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "driving"
        clip.mkdir()
        from fomm.io.image import write_image

        for i, f in enumerate(frames):
            write_image(clip / f"{i:06d}.png", f)
        (clip / "fps.txt").write_text("30\n")
        variants = []
        for prec in precisions:
            anim = Animator(model, batch_size=b, precision=prec, channels_last=channels_last)
            anim.set_source(source)
            inputs = list(anim.input_batches(frames))

            def run_model(anim=anim, inputs=inputs) -> None:
                for x in inputs:
                    anim.animate_batch(x)
                sync()

            def run_frames(anim=anim) -> None:
                for _ in anim.animate_frames(frames):
                    pass

            def run_e2e(prec=prec, pipelined=True) -> None:
                opts = AnimationOptions(batch_size=b, precision=prec, channels_last=channels_last, progress=False,
                                        audio=False, pipelined=pipelined)
                animate_video(model, source, clip, Path(tmp) / f"out-{prec}-{pipelined}.mp4", opts)

            variants += [(f"model_{prec}", "model only (pre-decoded inputs)", prec, b, run_model),
                         (f"frames_{prec}", "animate_frames, uint8 in and out", prec, b, run_frames),
                         (f"e2e_{prec}", "animate_video to MP4, pipelined", prec, b, run_e2e),
                         (f"e2e_serial_{prec}", "animate_video to MP4, one thread", prec, b,
                          lambda prec=prec: run_e2e(prec, pipelined=False))]
        if device.type == "cuda":
            for graphs in (False, True):
                for prec in precisions:
                    anim = Animator(model, batch_size=1, precision=prec, cuda_graphs=graphs)
                    anim.set_source(source)
                    one = list(anim.input_batches(frames))

                    def run_b1(anim=anim, one=one) -> None:
                        for x in one:
                            anim.animate_batch(x)
                        sync()

                    variants.append((f"b1_{prec}{'_graphs' if graphs else ''}",
                                     f"batch 1{' with CUDA graphs' if graphs else ''}", prec, 1, run_b1))

        for _, _, _, _, fn in variants:  # warm-up: kernels, caches, CUDA graph capture
            fn()
        times: dict[str, list[float]] = {v[0]: [] for v in variants}
        for r in range(args.rounds):
            for name, _, _, _, fn in variants:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
            print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {len(frames) / t[-1]:.1f}"
                                                                 for n, t in times.items()) + " frames/s",
                  file=sys.stderr)

    rows = []
    for name, label, prec, batch, _ in variants:
        sec = statistics.median(times[name])
        fps = len(frames) / sec
        model_fps = len(frames) / statistics.median(times[f"model_{prec}"])
        rows.append({"variant": name, "label": label, "precision": prec, "batch": batch, "fps": fps,
                     "ms_per_frame": 1000 * sec / len(frames), "vs_model": fps / model_fps,
                     "seconds_rounds": times[name]})
    result = {"benchmark": "pipeline", "config": args.config, "frames": len(frames), "rounds": args.rounds,
              "batch_size": b, "threads": args.threads, "device": str(device), "device_name": device_name(device),
              "torch": torch.__version__, "cpu_count": os.cpu_count(), "platform": platform.platform(),
              "loadavg_1min": os.getloadavg()[0], "rows": rows}
    print(table(result))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)


def table(result: dict) -> str:
    head = (f"{result['config']}, {result['device_name']} ({result['device']}), {result['threads']} threads, "
            f"{result['frames']} frames, median of {result['rounds']} interleaved rounds\n\n"
            "| variant | precision | batch | frames/s | ms/frame | vs model only |\n|---|---|---:|---:|---:|---:|")
    lines = [f"| {r['label']} | {r['precision']} | {r['batch']} | {r['fps']:.2f} | {r['ms_per_frame']:.1f} | "
             f"{r['vs_model']:.2f} |" for r in result["rows"]]
    return "\n".join([head, *lines])


if __name__ == "__main__":
    main()
