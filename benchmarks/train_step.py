"""Training speed and peak memory: iterations/s of the full FOMM training step (generator + keypoint detector
forward, equivariance transform, backward, Adam updates) at 64x64 (the shipped ``actions-64`` config) and
256x256 (``vox-256`` widths).

Each case runs in a fresh subprocess so its peak RSS (``ru_maxrss``) is its own; on CUDA the peak allocated GPU
memory is reported too. Random data and weights (speed does not depend on them); the weight-free pyramid loss
is used at both sizes so no VGG file is needed (the VGG19 perceptual loss adds its own cost). The first
``--warmup`` iterations are not timed. Prints a Markdown table and writes JSON.

    python benchmarks/train_step.py                     # CPU, writes benchmarks/results/train_step.json
    python benchmarks/train_step.py --device cuda --json /tmp/t.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = {"64x64 (actions-64)": ("actions-64", 16), "256x256 (vox-256)": ("vox-256", 4)}


def child(args: argparse.Namespace) -> None:
    import torch

    from fomm.config import load_config
    from fomm.train.objectives import build_fomm_objective

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(args.config)
    cfg.train_params["perceptual_backend"] = "pyramid_l1"
    dev = torch.device(args.device)
    obj = build_fomm_objective(cfg, dev).train()
    nets = obj.generator_networks()
    opts = [torch.optim.Adam(n.parameters(), lr=2e-4, betas=(0.5, 0.999)) for n in nets.values()]
    h, w = cfg.image_size
    batch = {"source": torch.rand(args.batch, 3, h, w, device=dev),
             "driving": torch.rand(args.batch, 3, h, w, device=dev)}
    times = []
    for i in range(args.warmup + args.iters):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        losses, _ = obj(batch)
        sum(losses.values()).backward()
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    out = {"iter_s": med, "it_per_s": 1.0 / med, "samples_per_s": args.batch / med,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if dev.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", default=str(HERE / "results" / "train_step.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    for name, (config, batch) in CASES.items():
        cmd = [sys.executable, __file__, "--child", "--config", config, "--batch", str(batch), "--device",
               args.device, "--threads", str(args.threads), "--iters", str(args.iters), "--warmup",
               str(args.warmup)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
        res = json.loads(line[0][7:])
        rows.append({"case": name, "config": config, "batch": batch, **res})
    print(f"\nFOMM training step on {args.device} ({args.threads} threads), median of {args.iters} iterations\n")
    print("| case | batch | s/iteration | iterations/s | samples/s | peak RSS (MiB) |" +
          (" peak CUDA (MiB) |" if args.device.startswith("cuda") else ""))
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if args.device.startswith("cuda") else ""))
    for r in rows:
        extra = f" {r['peak_cuda_mib']:.0f} |" if "peak_cuda_mib" in r else ""
        print(f"| {r['case']} | {r['batch']} | {r['iter_s']:.2f} | {r['it_per_s']:.3f} | {r['samples_per_s']:.1f} "
              f"| {r['peak_rss_mib']:.0f} |{extra}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"device": args.device, "threads": args.threads, "iters": args.iters,
                                           "machine": platform.machine(), "cpu_count": os.cpu_count(),
                                           "load_avg_1min": os.getloadavg()[0], "rows": rows}, indent=1) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
