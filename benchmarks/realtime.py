"""Real-time inference: frames/s and latency of the original-style eager path against our torch, ONNX Runtime and
reduced-precision paths, in one run on the same weights and frames.

Variants (vox-256 architecture, 256x256, relative motion with adapted scale, as ``fomm animate``):

* ``a_original``: what the original demo does per frame: the full generator (source re-encoded every frame), batch 1,
  fp32, eager, default memory format. The source keypoints are computed once, as the original demo does.
* ``b_torch``: :class:`fomm.animate.Animator`: source encoded once, driving frames batched, channels-last,
  inference mode, fp32, through ``animate_outputs`` (prediction, deformation, occlusion map, keypoints per frame).
* ``b_torch_direct``: the same networks called the way the animator did before it returned
  :class:`~fomm.animate.FrameOutputs` (``decode(...)["prediction"]``): the prediction-only path, to show the per-frame
  outputs cost nothing.
* ``c_onnx`` / ``c_onnx_b1``: :class:`fomm.realtime.OnnxAnimator` on ONNX Runtime (CPU provider; CUDA/TensorRT with
  ``--device cuda``), fp32, batched / batch 1.
* ``d_torch_bf16`` / ``d_torch_bf16_b1`` (CPU with bf16 kernels; ``fp16`` on GPU): as ``b_torch`` with the
  generator's bottleneck, up blocks, centred final conv and both hourglass trunks in bf16; the keypoint and mask
  heads and the warp stay fp32 (:mod:`fomm.models.fomm.precision`).

Timing: only model work is timed (frames are decoded and resized beforehand, identical for all variants). The
variants are interleaved within each round (a, b, c, ... then again), so load from other processes on a shared
machine hits them alike; the table reports medians over rounds. ``latency`` is the median wall time of one call
(one batch), i.e. how long a frame takes once its batch is complete; at batch 1 it is the per-frame latency.

Threads: ``--threads`` sets torch's and ONNX Runtime's intra-op threads. On a CPU shared with other busy processes,
every parallel op waits for a descheduled worker thread, which costs eager torch several ms per op and hurts the
batch-1 variants most; ONNX Runtime (fused graph, fewer ops) is far less affected. The committed results were taken
with nothing else running (``loadavg_1min_before_after`` in the JSON records it). ``realtime.json`` is the 2-thread
run, ``realtime_1thread.json`` the same with 1 thread.

Quality (PSNR against ``a_original`` on the same frames, real inputs: the bundled example ``source.png`` and the first
frames of ``driving.mp4``). The weights are random, and a random generator's output is nearly constant grey (its
pre-sigmoid output has a std of ~0.004), where a PSNR with peak 1 would be flattering and meaningless. So:

1. before anything is timed, the final 7x7 conv is re-scaled per channel (weights and bias, an affine change of that
   layer only) so that its pre-sigmoid output on the fp32 reference has mean 0 and std 1.5: the predictions then
   span most of ``[0, 1]`` and ``psnr_prediction`` (peak 1, what a viewer sees) is meaningful;
2. ``psnr_logits`` is the PSNR of that pre-sigmoid output with the peak set to the reference's peak-to-peak range,
   i.e. independent of the output's scale (for the ONNX graphs, which are not hooked, it compares the inverted
   sigmoids of both predictions, so fp32 rounding of outputs near 0/1 caps it at ~70 dB);
3. ``psnr_deformed`` compares the source image warped by each variant's deformation field (peak 1).

The acceptance rule for a reduced-precision variant is PSNR >= 40 dB on both 1 and 2.

    python benchmarks/realtime.py                       # writes benchmarks/results/realtime.json
    python benchmarks/realtime.py --frames 8 --rounds 3 --threads 2 --json /tmp/r.json
    python benchmarks/realtime.py --device cuda         # GPU: fp16 instead of bf16, CUDA/TensorRT providers
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def load_frames(n: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    from fomm.assets import example_path
    from fomm.io.image import image_to_tensor, read_image
    from fomm.io.reading import iter_frames

    source = image_to_tensor(read_image(example_path("source.png")), size)
    driving = iter_frames(example_path("driving.mp4"))
    frames = [image_to_tensor(f, size) for _, f in zip(range(n), driving, strict=False)]
    return source, torch.cat(frames)


def calibrate_final_conv(model, source: torch.Tensor, driving: torch.Tensor) -> tuple[float, float]:
    """Affine re-scaling of ``generator.final`` so its output has per-channel mean 0, std 1.5 on these frames.
    Returns the pre-sigmoid std before and after."""
    from fomm.animate import normalize_kp

    gen, kp = model.generator, model.kp_detector
    captured: dict[str, torch.Tensor] = {}
    hook = gen.final.register_forward_hook(lambda m, i, o: captured.__setitem__("x", o.detach().float()))
    try:
        with torch.inference_mode():
            kp_s, kp_d = kp(source), kp(driving)
            kp_n = normalize_kp(kp_s, kp_d, {k: v[:1] for k, v in kp_d.items()}, True, True, True)
            gen(source, kp_driving=kp_n, kp_source=kp_s)
            x = captured["x"]
            before = float(x.std())
            mean = x.mean(dim=(0, 2, 3))
            std = x.std(dim=(0, 2, 3)).clamp_min(1e-12)
            scale = 1.5 / std
            gen.final.weight.mul_(scale.view(-1, 1, 1, 1))
            gen.final.bias.copy_((gen.final.bias - mean) * scale)
            gen(source, kp_driving=kp_n, kp_source=kp_s)
            after = float(captured["x"].std())
    finally:
        hook.remove()
    return before, after


class Variant:
    """One way of running the model: ``run(frames [b, 3, H, W]) -> {"prediction", "deformed" or "deformation"}``
    per batch."""

    def __init__(self, name: str, label: str, batch: int, run: Callable[[torch.Tensor], dict],
                 precision: str = "fp32") -> None:
        self.name, self.label, self.batch, self.precision, self.run = name, label, batch, precision, run
        self.fps: list[float] = []
        self.latency: list[float] = []
        self.outputs: dict[str, torch.Tensor] = {}


class LogitRecorder:
    """Collects the generator's pre-sigmoid output (``final`` conv) while ``on``."""

    def __init__(self, *generators) -> None:
        self.on = False
        self.parts: list[torch.Tensor] = []
        for gen in generators:
            self.watch(gen.final)

    def watch(self, module) -> None:
        module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        if self.on:
            self.parts.append(output.detach().float().cpu())

    def take(self) -> torch.Tensor:
        out, self.parts = torch.cat(self.parts), []
        return out


def original_style(model, source: torch.Tensor) -> Callable[[torch.Tensor], dict]:
    """The original demo loop: source keypoints once, then per frame its keypoints and the whole generator
    (which re-encodes the source), batch 1."""
    from fomm.animate import normalize_kp

    gen, kp = model.generator, model.kp_detector
    with torch.inference_mode():
        kp_s = kp(source)
    state: dict[str, dict] = {}

    @torch.inference_mode()
    def run(frames: torch.Tensor) -> dict:
        outs = []
        for i in range(frames.shape[0]):
            kp_d = kp(frames[i:i + 1])
            initial = state.setdefault("initial", kp_d)
            kp_n = normalize_kp(kp_s, kp_d, initial, True, True, True)
            outs.append(gen(source, kp_driving=kp_n, kp_source=kp_s))
        return {k: torch.cat([o[k] for o in outs]) for k in ("prediction", "deformed")}
    return run


def torch_animator(model, source: torch.Tensor, first: torch.Tensor, batch: int, precision: str,
                   recorder: LogitRecorder, direct: bool = False) -> Callable[[torch.Tensor], dict]:
    """``anim.animate_outputs`` (the engine's per-frame outputs: prediction, deformation, occlusion, keypoints), or
    with ``direct`` the call the animator made before it returned outputs: ``decode(...)["prediction"]`` straight
    from the generator, which shows what building :class:`FrameOutputs` costs (nothing measurable)."""
    from fomm.animate import Animator

    anim = Animator(model, batch_size=batch, precision=precision, channels_last=model.device.type == "cpu")
    # The generator instance decode() runs on (reduced precision uses a view with low-dtype conv weights and its own
    # final layer, whose output the recorder must see too).
    gen = anim._generator
    if gen.final is not model.generator.final:
        recorder.watch(gen.final)
    anim.set_source(source)
    anim.set_initial_driving(first)

    @torch.inference_mode()
    def run_direct(frames: torch.Tensor) -> dict:
        out = gen.decode(anim._encoding, kp_source=anim.transfer.kp_source, kp_driving=anim.driving_keypoints(frames),
                         with_deformed=False)
        return {"prediction": out["prediction"], "deformation": out["deformation"].float()}

    def run(frames: torch.Tensor) -> dict:
        # The quality pass warps the source with the deformation, outside the timed calls.
        out = anim.animate_outputs(frames)
        return {"prediction": out.prediction, "deformation": out.deformation.float()}
    return run_direct if direct else run


def onnx_animator(onnx_dir: Path, source: torch.Tensor, first: torch.Tensor, batch: int, device: str,
                  threads: int) -> Callable[[torch.Tensor], dict]:
    from fomm.realtime import OnnxAnimator, OnnxModel

    om = OnnxModel(onnx_dir, device=device, threads=threads if device == "cpu" else None)
    anim = OnnxAnimator(om, batch_size=batch)
    anim.set_source(source.cpu())
    anim.set_initial_driving(first.cpu())
    captured: dict[str, np.ndarray] = {}
    decode = om.decode

    def spy(enc, kp):
        out = decode(enc, kp)
        captured["deformed"] = out["deformed"]
        return out
    om.decode = spy

    def run(frames: torch.Tensor) -> dict:
        pred = anim.animate_batch(frames.cpu())
        return {"prediction": pred, "deformed": torch.from_numpy(captured["deformed"])}
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="vox-256")
    ap.add_argument("--frames", type=int, default=8, help="driving frames per variant per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4, help="batch of the batched variants")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime variants")
    ap.add_argument("--json", default=str(HERE / "results" / "realtime.json"))
    args = ap.parse_args()
    import fomm
    from benchmarks.machine import device_name
    from fomm.models.fomm import deform_input
    from fomm.realtime import cpu_supports_bf16, export_onnx, psnr

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    device = torch.device(args.device)
    model = fomm.load_model(args.config, device="cpu")
    source, driving = load_frames(args.frames, model.image_size)
    before, after = calibrate_final_conv(model, source, driving)
    print(f"final conv calibrated: pre-sigmoid std {before:.4f} -> {after:.3f}", file=sys.stderr)
    original = copy.deepcopy(model)  # (a) keeps the default memory format; our Animator converts `model` in place
    for m in (model, original):
        m.kp_detector.to(device)
        m.generator.to(device)
        m.device = device
    source, driving = source.to(device), driving.to(device)
    first = driving[:1]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    recorder = LogitRecorder(model.generator, original.generator)
    low = "fp16" if device.type == "cuda" else ("bf16" if cpu_supports_bf16() else None)
    b = args.batch_size

    with tempfile.TemporaryDirectory() as tmp:
        variants = [Variant("a_original", "(a) original-style eager, source re-encoded per frame, fp32", 1,
                            original_style(original, source)),
                    Variant("b_torch", f"(b) ours, torch fp32, channels-last, batch {b}", b,
                            torch_animator(model, source, first, b, "fp32", recorder)),
                    Variant("b_torch_direct", f"(b) same, decode() called directly (the pre-engine path), batch {b}",
                            b, torch_animator(model, source, first, b, "fp32", recorder, direct=True))]
        if not args.no_onnx and device.type == "cuda":
            from fomm.realtime import select_providers

            try:
                select_providers("cuda")
            except fomm.FommError as exc:
                print(f"skipping the ONNX variants: {exc}", file=sys.stderr)
                args.no_onnx = True
        if not args.no_onnx:
            t0 = time.perf_counter()
            export_onnx(model, tmp)
            print(f"exported ONNX in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            variants += [Variant("c_onnx", f"(c) ONNX Runtime fp32, batch {b}", b,
                                 onnx_animator(Path(tmp), source, first, b, device.type, args.threads)),
                         Variant("c_onnx_b1", "(c) ONNX Runtime fp32, batch 1", 1,
                                 onnx_animator(Path(tmp), source, first, 1, device.type, args.threads))]
        if low is not None:
            variants += [Variant(f"d_torch_{low}", f"(d) ours, torch {low} decoder, batch {b}", b,
                                 torch_animator(model, source, first, b, low, recorder), precision=low),
                         Variant(f"d_torch_{low}_b1", f"(d) ours, torch {low} decoder, batch 1", 1,
                                 torch_animator(model, source, first, 1, low, recorder), precision=low)]

        logits: dict[str, torch.Tensor] = {}
        for v in variants:  # warm-up (oneDNN primitive caches, ORT arenas) doubling as the quality pass
            recorder.on = True
            v.outputs = _run_all(v, driving, sync)
            if "deformed" not in v.outputs:
                v.outputs["deformed"] = deform_input(source, v.outputs.pop("deformation"))
            recorder.on = False
            if recorder.parts:
                logits[v.name] = recorder.take()
        for r in range(args.rounds):
            for v in variants:
                lat = []
                t0 = time.perf_counter()
                for i in range(0, driving.shape[0], v.batch):
                    t1 = time.perf_counter()
                    v.run(driving[i:i + v.batch])
                    sync()
                    lat.append(time.perf_counter() - t1)
                v.fps.append(driving.shape[0] / (time.perf_counter() - t0))
                v.latency.append(statistics.median(lat))
            print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{v.name} {v.fps[-1]:.2f}" for v in variants)
                  + " frames/s", file=sys.stderr)

    load_after = os.getloadavg()
    ref = variants[0].outputs
    base_fps = statistics.median(variants[0].fps)
    rows = []
    for v in variants:
        fps = statistics.median(v.fps)
        lg, lg_ref = logits.get(v.name), logits["a_original"]
        if lg is None:  # ONNX graphs are not hooked: compare inverted sigmoids of both (fp32 outputs bound this)
            lg, lg_ref = _logit(v.outputs["prediction"]), _logit(ref["prediction"])
        rows.append({"variant": v.name, "label": v.label, "batch": v.batch, "precision": v.precision,
                     "fps": fps, "latency_ms": 1000 * statistics.median(v.latency), "speedup_vs_a": fps / base_fps,
                     "fps_rounds": v.fps,
                     "psnr_prediction": psnr(v.outputs["prediction"].cpu(), ref["prediction"].cpu(), peak=1.0),
                     "psnr_logits": psnr(lg, lg_ref),
                     "psnr_deformed": psnr(v.outputs["deformed"].cpu(), ref["deformed"].cpu(), peak=1.0)})

    result = {
        "benchmark": "realtime", "config": args.config, "image_size": list(source.shape[-2:]),
        "weights": "random, final conv calibrated (see docstring)", "pre_sigmoid_std": [before, after],
        "frames": args.frames, "rounds": args.rounds, "batch_size": b, "threads": args.threads,
        "device": str(device), "inputs": "fomm/assets/examples source.png + driving.mp4",
        "torch": torch.__version__, "onnxruntime": _ort_version(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": device_name("cpu"),
                    "python": platform.python_version(),
                    # Other processes' load: per-call thread wake-ups get slow when the cores are oversubscribed,
                    # which hurts the many-small-ops batch-1 variants most.
                    "loadavg_1min_before_after": [load_before[0], load_after[0]]},
        "rows": rows,
    }
    print(table(result))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.detach().cpu().double().clamp(1e-7, 1 - 1e-7)
    return torch.log(p / (1 - p))


def _run_all(v: Variant, driving: torch.Tensor, sync) -> dict[str, torch.Tensor]:
    outs = [v.run(driving[i:i + v.batch]) for i in range(0, driving.shape[0], v.batch)]
    sync()
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def _ort_version() -> str | None:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return None


def _db(x: float) -> str:
    return "exact" if x == float("inf") else f"{x:.1f}"


def table(result: dict) -> str:
    lines = [f"{result['config']} ({result['image_size'][0]}x{result['image_size'][1]}), {result['device']}, "
             f"{result['threads']} threads, median of {result['rounds']} interleaved rounds x {result['frames']} "
             f"frames (1-min load average {result['machine']['loadavg_1min_before_after'][0]:.1f} -> "
             f"{result['machine']['loadavg_1min_before_after'][1]:.1f} on {result['machine']['cpu_count']} cores)", "",
             "| variant | batch | frames/s | latency (ms) | vs (a) | PSNR pred (dB) | PSNR logits (dB) | "
             "PSNR deformed (dB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['label']} | {r['batch']} | {r['fps']:.2f} | {r['latency_ms']:.0f} | "
                     f"{r['speedup_vs_a']:.2f}x | {_db(r['psnr_prediction'])} | {_db(r['psnr_logits'])} | "
                     f"{_db(r['psnr_deformed'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
