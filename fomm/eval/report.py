"""Reports of an evaluation run, and a paper-style comparison of several runs.

Files written by :func:`write_reports` into the run folder:

* ``metrics.json`` - the summary (model, dataset, per-metric value, counts of unscored frames, backend versions).
* ``metrics.csv`` - one row per metric with its backend name/version.
* ``per_video.csv`` - one row per video: status, error, frames, each metric and its unscored-frame counts.
* ``metrics.md`` - the same numbers as a Markdown table.
* ``plots/metric_distribution.png`` - per-metric histogram over videos; ``plots/l1_over_time.png`` - L1 per frame.
* ``qualitative.png`` - for a few videos, rows of source / driving (real) / generated frames.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from fomm.errors import InputError, OutputError
from fomm.eval.records import LABELS, METRICS, write_json
from fomm.io.atomic import atomic_file, write_text_atomic


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def _csv_text(rows: list[dict], fields: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    return buf.getvalue()


def metrics_rows(summary: dict) -> list[dict]:
    """One dict per metric: ``metric, value, videos_scored, frames_scored, frames_missing_real,
    frames_missing_generated, backend, backend_version``."""
    return [{"metric": LABELS[k], **summary["metrics"][k]} for k in METRICS if k in summary["metrics"]]


def per_video_rows(records: list[dict]) -> tuple[list[dict], list[str]]:
    present = [m for m in METRICS if any(m in r for r in records)]
    fields = ["video", "status", "frames"]
    for m in present:
        fields += [m, f"{m}_frames_scored", f"{m}_missing_real", f"{m}_missing_generated"]
    fields.append("error")
    rows = []
    for r in records:
        row = {"video": r["video"], "status": r["status"], "frames": r.get("frames"), "error": r.get("error")}
        for m in present:
            if m in r:
                row[m] = r[m]["mean"]
                row[f"{m}_frames_scored"] = r[m]["frames_scored"]
                row[f"{m}_missing_real"] = r[m]["missing_real"]
                row[f"{m}_missing_generated"] = r[m]["missing_generated"]
        rows.append(row)
    return rows, fields


def markdown(summary: dict) -> str:
    """The summary as a Markdown table with counts of unscored frames and the backend of each number."""
    lines = [
        f"# {summary.get('model')} on {summary.get('dataset')}",
        "",
        f"Videos scored: {summary['videos']['scored']} of {summary['videos']['total']}.",
        "",
        "| metric | value | videos | frames scored | no detection (real) | no detection (generated) | backend |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in metrics_rows(summary):
        backend = f"{row.get('backend')} ({row.get('backend_version')})"
        lines.append(
            f"| {row['metric']} | {_fmt(row['value'])} | {row['videos_scored']} | {row['frames_scored']} | "
            f"{row['frames_missing_real']} | {row['frames_missing_generated']} | {backend} |"
        )
    if "akd" in summary["metrics"]:
        lines += ["", f"AKD is in {summary['metrics']['akd'].get('unit')}."]
    failed = summary["videos"]["failed"]
    if failed:
        lines += ["", "Failed videos:", ""] + [f"- `{f['video']}`: {f['error']}" for f in failed]
    return "\n".join(lines) + "\n"


def _save_figure(fig, path: Path) -> None:
    try:
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err}") from err


def plot_distributions(records: list[dict], path: Path) -> None:
    """One histogram per metric of the per-video means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [m for m in METRICS if any(m in r for r in records)] or ["l1"]
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.2), squeeze=False)
    for ax, m in zip(axes[0], present, strict=True):
        vals = [r[m]["mean"] for r in records if m in r and r[m]["mean"] is not None]
        if vals:
            ax.hist(vals, bins=min(20, max(3, len(vals))), color="tab:blue", edgecolor="white")
        ax.set_title(f"{LABELS[m]} per video (n={len(vals)})")
        ax.set_xlabel(LABELS[m])
        ax.set_ylabel("videos")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def plot_l1_over_time(records: list[dict], path: Path) -> None:
    """Per-frame L1 of every video (thin) and their mean over videos at each frame index (thick)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    curves = [np.asarray([np.nan if v is None else v for v in r["l1"]["per_frame"]], float)
              for r in records if "l1" in r]
    for c in curves:
        ax.plot(c, color="tab:gray", alpha=0.35, linewidth=0.8)
    if curves:
        n = max(len(c) for c in curves)
        stack = np.full((len(curves), n), np.nan)
        for i, c in enumerate(curves):
            stack[i, : len(c)] = c
        with np.errstate(all="ignore"):
            ax.plot(np.nanmean(stack, axis=0), color="tab:red", linewidth=2, label="mean over videos")
        ax.legend()
    ax.set_xlabel("frame")
    ax.set_ylabel("L1")
    ax.set_title("L1 over time")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def qualitative_grid(
    videos: Iterable[tuple[str, np.ndarray, np.ndarray]], columns: int = 6, cell: int = 96
) -> np.ndarray:
    """Grid image ``uint8 [rows*cell, columns*cell, 3]``: per video, rows source / driving (real) / generated at
    ``columns`` evenly spaced frames. ``videos``: ``(id, real [T,H,W,3] uint8, generated [T,H,W,3] uint8)``."""
    blocks = []
    for _vid, real, gen in videos:
        idx = np.linspace(0, len(real) - 1, num=min(columns, len(real))).round().astype(int)
        rows = [[real[0]] * len(idx), [real[i] for i in idx], [gen[i] for i in idx]]
        for row in rows:
            tiles = [np.asarray(Image.fromarray(f).resize((cell, cell), Image.BICUBIC)) for f in row]
            tiles += [np.zeros((cell, cell, 3), np.uint8)] * (columns - len(tiles))
            blocks.append(np.concatenate(tiles, axis=1))
        blocks.append(np.full((4, columns * cell, 3), 255, np.uint8))  # white separator between videos
    if not blocks:
        return np.zeros((cell, columns * cell, 3), np.uint8)
    return np.concatenate(blocks[:-1], axis=0)


def write_reports(
    out_dir: str | Path,
    summary: dict,
    records: list[dict],
    load_frames: Callable[[str], tuple[np.ndarray, np.ndarray]] | None = None,
    grid_videos: int = 3,
) -> dict[str, Path]:
    """Write every report file into ``out_dir``; returns their paths by name.

    ``load_frames(video_id) -> (real, generated)`` feeds the qualitative grid (``uint8 [T,H,W,3]`` each); the grid
    shows the first ``grid_videos`` successfully scored videos.
    """
    out_dir = Path(out_dir)
    paths = {
        "metrics.json": out_dir / "metrics.json",
        "metrics.csv": out_dir / "metrics.csv",
        "per_video.csv": out_dir / "per_video.csv",
        "metrics.md": out_dir / "metrics.md",
        "metric_distribution.png": out_dir / "plots" / "metric_distribution.png",
        "l1_over_time.png": out_dir / "plots" / "l1_over_time.png",
        "qualitative.png": out_dir / "qualitative.png",
    }
    write_json(paths["metrics.json"], summary)
    fields = ["metric", "value", "videos_scored", "frames_scored", "frames_missing_real", "frames_missing_generated",
              "backend", "backend_version"]
    write_text_atomic(paths["metrics.csv"], _csv_text(metrics_rows(summary), fields))
    rows, vfields = per_video_rows(records)
    write_text_atomic(paths["per_video.csv"], _csv_text(rows, vfields))
    write_text_atomic(paths["metrics.md"], markdown(summary))
    ok = [r for r in records if r["status"] == "ok"]
    plot_distributions(ok, paths["metric_distribution.png"])
    plot_l1_over_time(ok, paths["l1_over_time.png"])
    shown = []
    if load_frames is not None:
        for r in ok[:grid_videos]:
            real, gen = load_frames(r["video"])
            shown.append((r["video"], real, gen))
    grid = qualitative_grid(shown)
    with atomic_file(paths["qualitative.png"], suffix=".png") as tmp:
        Image.fromarray(grid).save(tmp)
    return paths


def compare(dirs: Iterable[str | Path]) -> str:
    """Merge the ``metrics.json`` of several run folders into one Markdown table laid out like the FOMM paper:
    one row per model, and for each dataset (in first-seen order) the columns L1, AKD, MKR, AED it has numbers for.
    Cells a model lacks are ``-``. A later run of the same model and dataset replaces an earlier one."""
    table: dict[str, dict[str, dict]] = {}
    datasets: list[str] = []
    models: list[str] = []
    for d in dirs:
        f = Path(d) / "metrics.json"
        try:
            summary = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read {f}: {err}; pass folders written by `fomm eval`") from err
        model, ds = str(summary.get("model")), str(summary.get("dataset"))
        if ds not in datasets:
            datasets.append(ds)
        if model not in models:
            models.append(model)
        table.setdefault(model, {})[ds] = summary.get("metrics", {})
    cols = [(ds, m) for ds in datasets for m in METRICS if any(m in table[mod].get(ds, {}) for mod in models)]
    head1 = "| model | " + " | ".join(f"{ds} {LABELS[m]}" for ds, m in cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    lines = [head1, sep]
    for mod in models:
        cells = []
        for ds, m in cols:
            entry = table[mod].get(ds, {}).get(m)
            digits = 2 if m == "akd" else (3 if m in ("mkr", "aed") else 4)
            cells.append(_fmt(entry.get("value") if entry else None, digits))
        lines.append(f"| {mod} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
