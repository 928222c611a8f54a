"""The papers' reconstruction protocol, for any model.

For every test video: frame 0 is the source, every frame (frame 0 included) drives, and the model must give back
one generated frame per driving frame; generated frames are compared with the real ones. The model is any
:data:`Reconstructor` callable, so this module knows nothing about FOMM, Monkey-Net or X2Face.

Output folder layout (everything needed to recompute metrics without regenerating)::

    OUT/run.json                  model name, dataset, settings
    OUT/generated/<video>/00000.png ...   generated frames, lossless
    OUT/status/<video>.json       per-video generation outcome (ok, or the error)
    OUT/scores/<video>.json       per-frame metric values and detection counts
    OUT/metrics.json metrics.csv per_video.csv metrics.md plots/ qualitative.png   (see fomm.eval.report)

Runs are resumable: a video whose generated folder exists is not regenerated, and its scores are reused when they
were made with the same backends. Per-video problems (unreadable file, wrong frame count, a model error, no face
found) are recorded and the run goes on.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fomm.errors import FommError, InputError
from fomm.eval import metrics as M
from fomm.eval.records import METRICS, clean_json, read_json, write_json
from fomm.eval.report import write_reports
from fomm.io.clips import list_videos, read_clip, resize_frames, to_float, to_uint8, video_id, write_frame_folder
from fomm.perception.backends import EmbeddingBackend, LandmarkBackend, PoseBackend

#: ``reconstruct(source [H,W,3] float32 in [0,1], driving frames) -> generated frames``, one per driving frame.
Reconstructor = Callable[[np.ndarray, Iterable[np.ndarray]], Iterator[np.ndarray]]

METRIC_KINDS = ("pixels", "faces", "bodies")


def copy_source_reconstructor(source: np.ndarray, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The "no motion" baseline: every generated frame is the source frame. Shapes as :data:`Reconstructor`."""
    for _ in driving:
        yield source.copy()


@dataclass
class MetricSuite:
    """Which detectors score a run. L1 is always computed; AKD uses ``landmarks`` (faces) or ``pose`` (bodies);
    MKR needs ``pose``; AED needs ``embedding``."""

    landmarks: LandmarkBackend | None = None
    embedding: EmbeddingBackend | None = None
    pose: PoseBackend | None = None

    def info(self) -> dict:
        out: dict = {"pixels": {"name": "pixels", "version": "-"}}
        for role in ("landmarks", "embedding", "pose"):
            backend = getattr(self, role)
            if backend is not None:
                out[role] = dict(backend.info)
        return out


def make_suite(kind: str, landmark_backend: str = "dlib") -> MetricSuite:
    """The papers' metric set for a dataset kind.

    ``"pixels"``: L1 only (Shapes, BAIR). ``"faces"``: L1, AKD, AED (VoxCeleb, Nemo).
    ``"bodies"``: L1, AKD, MKR (TaiChi, Actions); body AED needs a re-identification network fomm does not ship.
    """
    from fomm.perception import backends as B

    if kind == "pixels":
        return MetricSuite()
    if kind == "faces":
        faces = B.DlibFaces()
        landmarks = faces if landmark_backend == "dlib" else B.make_landmark_backend(landmark_backend)
        return MetricSuite(landmarks=landmarks, embedding=faces)
    if kind == "bodies":
        return MetricSuite(pose=B.MediaPipePose())
    raise FommError(f"unknown metric kind {kind!r}; choose one of {', '.join(METRIC_KINDS)}")


# ------------------------------------------------------------------------------------------------------ helpers


def _load_real(path: Path, size: int | None) -> np.ndarray:
    frames = read_clip(path)
    return resize_frames(frames, size) if size else frames


# ----------------------------------------------------------------------------------------------------- generate


def non_finite_message(index: int) -> str:
    """Why a reconstruction holding NaN or inf at frame ``index`` is refused (one line, without the video's name:
    the run records it per video)."""
    return (f"the model produced non-finite values (NaN or inf) at frame {index}; its weights are broken (a diverged "
            "checkpoint?) or overflow: no frames were kept and the video is not scored")


def require_finite_frame(frame: np.ndarray, index: int) -> np.ndarray:
    """``frame`` if every value is finite, else a :class:`FommError` (:func:`non_finite_message`).

    Converting to uint8 turns NaN into 0, so a broken model would otherwise be scored on black frames and its
    numbers reported as if it had produced them."""
    frame = np.asarray(frame)
    if frame.dtype.kind in "fc" and not np.isfinite(frame).all():
        raise FommError(non_finite_message(index))
    return frame


def generate(
    dataset: str | Path,
    out_dir: str | Path,
    reconstruct: Reconstructor,
    *,
    max_videos: int | None = None,
    size: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Reconstruct every test video of ``dataset`` into ``out_dir/generated``; returns one status dict per video.

    ``size``: resize real frames to ``size x size`` first (None: native size). Status dicts hold ``video``,
    ``status`` (``"ok"``, ``"skipped"`` when already generated, ``"failed"``), ``frames`` and ``error``.
    """
    out_dir = Path(out_dir)
    videos = list_videos(dataset)[:max_videos] if max_videos else list_videos(dataset)
    results = []
    for path in tqdm(videos, desc="reconstruct", unit="video", disable=not progress):
        vid = video_id(path)
        target = out_dir / "generated" / vid
        status_file = out_dir / "status" / f"{vid}.json"
        if target.is_dir():
            prev = read_json(status_file) or {}
            results.append({"video": vid, "status": "skipped", "frames": prev.get("frames"), "error": None})
            continue
        record = {"video": vid, "status": "failed", "frames": None, "error": None}
        try:
            real = _load_real(path, size)
            record["frames"] = int(len(real))
            source = to_float(real[0])
            generated = [to_uint8(require_finite_frame(f, i))
                         for i, f in enumerate(reconstruct(source, (to_float(f) for f in real)))]
            if len(generated) != len(real):
                raise InputError(f"the model returned {len(generated)} frames for {len(real)} driving frames")
            shapes = {g.shape for g in generated}
            if shapes != {real.shape[1:]}:
                raise InputError(f"the model returned frames of shape {sorted(shapes)}, expected {real.shape[1:]}")
            write_frame_folder(np.stack(generated), target)
            (out_dir / "scores" / f"{vid}.json").unlink(missing_ok=True)  # stale scores of an older generation
            record["status"] = "ok"
        except KeyboardInterrupt:
            raise
        except FommError as err:
            record["error"] = str(err)
        except Exception as err:  # a model bug on one video must not lose the videos already finished
            record["error"] = f"{type(err).__name__}: {err}"
        write_json(status_file, record)
        results.append(record)
    return results


# -------------------------------------------------------------------------------------------------------- score


def _scores_to_dict(s: M.FrameScores) -> dict:
    return {
        "mean": s.mean,
        "frames_scored": s.frames_scored,
        "missing_real": s.missing_real,
        "missing_generated": s.missing_generated,
        "per_frame": s.per_frame,
    }


def score_video(real: np.ndarray, generated: np.ndarray, suite: MetricSuite) -> dict:
    """All metrics of one video. ``real``, ``generated``: ``uint8 [T, H, W, 3]`` of equal shape."""
    out = {"l1": _scores_to_dict(M.l1_per_frame(generated, real))}
    hw = real.shape[1:3]
    if suite.landmarks is not None:
        kr = [suite.landmarks.detect(f) for f in real]
        kg = [suite.landmarks.detect(f) for f in generated]
        out["akd"] = _scores_to_dict(M.akd_per_frame(kg, kr, hw))
    if suite.pose is not None:
        pr = [suite.pose.detect(f) for f in real]
        pg = [suite.pose.detect(f) for f in generated]
        out["akd"] = _scores_to_dict(M.akd_per_frame(pg, pr, hw))
        out["mkr"] = _scores_to_dict(M.mkr_per_frame(pg, pr))
    if suite.embedding is not None:
        er = [suite.embedding.embed(f) for f in real]
        eg = [suite.embedding.embed(f) for f in generated]
        out["aed"] = _scores_to_dict(M.aed_per_frame(eg, er))
    return out


def read_generated(out_dir: str | Path, vid: str) -> np.ndarray:
    """The saved generated frames of one video, ``uint8 [T, H, W, 3]``."""
    return read_clip(Path(out_dir) / "generated" / vid)


def score(
    dataset: str | Path,
    out_dir: str | Path,
    suite: MetricSuite,
    *,
    max_videos: int | None = None,
    size: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Score the generated videos in ``out_dir`` against ``dataset``; returns one record per dataset video.

    Records hold ``video``, ``status`` (``"ok"`` or ``"failed"``), ``error``, ``frames`` and one dict per metric
    (``mean``, ``frames_scored``, ``missing_real``, ``missing_generated``, ``per_frame``). Scores are cached in
    ``out_dir/scores`` and reused when the backends are unchanged.
    """
    out_dir = Path(out_dir)
    info = suite.info()
    videos = list_videos(dataset)[:max_videos] if max_videos else list_videos(dataset)
    records = []
    for path in tqdm(videos, desc="score", unit="video", disable=not progress):
        vid = video_id(path)
        cache_file = out_dir / "scores" / f"{vid}.json"
        cached = read_json(cache_file)
        if cached and cached.get("status") == "ok" and cached.get("backends") == clean_json(info):
            records.append(cached)
            continue
        record: dict = {"video": vid, "status": "failed", "error": None, "frames": None, "backends": info}
        gen_dir = out_dir / "generated" / vid
        if not gen_dir.is_dir():
            status = read_json(out_dir / "status" / f"{vid}.json") or {}
            record["error"] = status.get("error") or "no generated frames (the video was not reconstructed)"
            records.append(clean_json(record))
            continue
        try:
            real = _load_real(path, size)
            generated = read_generated(out_dir, vid)
            record["frames"] = int(len(real))
            if generated.shape != real.shape:
                raise InputError(f"generated video is {generated.shape} but the real video is {real.shape}")
            record.update(score_video(real, generated, suite))
            record["status"] = "ok"
            write_json(cache_file, record)
        except FommError as err:
            record["error"] = str(err)
        records.append(clean_json(record))
    return records


# ----------------------------------------------------------------------------------------------------- evaluate


def evaluate_reconstruction(
    dataset: str | Path,
    out_dir: str | Path,
    reconstruct: Reconstructor | None,
    *,
    suite: MetricSuite | None = None,
    kind: str = "pixels",
    model_name: str = "model",
    dataset_name: str | None = None,
    max_videos: int | None = None,
    size: int | None = None,
    progress: bool = True,
) -> dict:
    """Run the whole protocol: reconstruct (skipped when ``reconstruct`` is None: rescore saved frames), score,
    write every report (:func:`fomm.eval.report.write_reports`). Returns the ``metrics.json`` summary.

    ``suite`` overrides ``kind`` (``"pixels"``, ``"faces"``, ``"bodies"``; see :func:`make_suite`).
    """
    dataset = Path(dataset)
    out_dir = Path(out_dir)
    list_videos(dataset)  # fail early, before anything is written, on a missing or empty dataset
    if suite is None:
        suite = make_suite(kind)
    run_file = out_dir / "run.json"
    run = read_json(run_file) or {}
    if reconstruct is None and not run:
        raise InputError(f"{out_dir} holds no earlier run to rescore; run with a model first")
    if reconstruct is not None:
        run = {
            "model": model_name,
            "dataset": dataset_name or (dataset.name if dataset.name != "test" else dataset.parent.name),
            "dataset_path": str(dataset),
            "size": size,
            "max_videos": max_videos,
        }
        write_json(run_file, run)
        gen = generate(dataset, out_dir, reconstruct, max_videos=max_videos, size=size, progress=progress)
    else:
        # Rescoring reuses the settings the frames were generated with, unless the caller overrides them.
        size = size if size is not None else run.get("size")
        max_videos = max_videos if max_videos is not None else run.get("max_videos")
        gen = []
    records = score(dataset, out_dir, suite, max_videos=max_videos, size=size, progress=progress)
    summary = summarize(records, suite.info(), run)
    summary["generation"] = {s: sum(1 for g in gen if g["status"] == s) for s in ("ok", "skipped", "failed")}
    write_reports(out_dir, summary, records, lambda vid: _grid_frames(dataset, out_dir, vid, size))
    return summary


def require_scored(summary: dict, out_dir: str | Path, allow_failures: bool = False) -> None:
    """Raise :class:`InputError` unless every video of the run was scored (or some were and ``allow_failures``).

    A run where videos failed still writes its reports, but a mean over the videos that happened to work is not
    the dataset's number: exiting 0 let scripts and tables take it for one. Partial results are accepted only when
    asked for; a run that scored nothing is always an error. The message says how many failed and the first
    reason (each video's reason is in ``metrics.json``).
    """
    videos = summary.get("videos") or {}
    failed = list(videos.get("failed") or [])
    total, scored = int(videos.get("total") or 0), int(videos.get("scored") or 0)
    if not failed or (scored and allow_failures):
        return
    first = failed[0]
    reason = str(first.get("error") or "unknown error").strip().splitlines()
    why = f"first: {first.get('video')}: {reason[0] if reason else 'unknown error'}"
    where = Path(out_dir) / "metrics.json"
    if scored == 0:
        raise InputError(f"no video could be scored ({len(failed)} of {total} failed; {why}); every reason is in "
                         f"{where}")
    raise InputError(f"{len(failed)} of {total} videos could not be scored ({why}); the {scored} scored are "
                     f"reported in {where}: pass --allow-failures to accept partial results")


def _grid_frames(dataset: Path, out_dir: Path, vid: str, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    path = next(p for p in list_videos(dataset) if video_id(p) == vid)
    return _load_real(path, size), read_generated(out_dir, vid)



def summarize(records: list[dict], backends: dict, run: dict) -> dict:
    """Dataset-level numbers from per-video records: each metric is the mean over videos of per-video means."""
    ok = [r for r in records if r["status"] == "ok"]
    metrics = {}
    roles = {"l1": "pixels", "akd": "landmarks" if "landmarks" in backends else "pose", "mkr": "pose",
             "aed": "embedding"}
    for name in METRICS:
        have = [r[name] for r in ok if name in r]
        if not have:
            continue
        value, n = M.dataset_mean([h["mean"] if h["mean"] is not None else float("nan") for h in have])
        backend = backends.get(roles[name], {})
        metrics[name] = {
            "value": value,
            "videos_scored": n,
            "frames_scored": sum(h["frames_scored"] for h in have),
            "frames_missing_real": sum(h["missing_real"] for h in have),
            "frames_missing_generated": sum(h["missing_generated"] for h in have),
            "backend": backend.get("name"),
            "backend_version": backend.get("version"),
        }
    if "akd" in metrics:
        metrics["akd"]["unit"] = f"pixels at {M.AKD_REFERENCE_SIZE}x{M.AKD_REFERENCE_SIZE}"
    return clean_json(
        {
            "model": run.get("model"),
            "dataset": run.get("dataset"),
            "dataset_path": run.get("dataset_path"),
            "size": run.get("size"),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "videos": {
                "total": len(records),
                "scored": len(ok),
                "failed": [{"video": r["video"], "error": r["error"]} for r in records if r["status"] != "ok"],
            },
            "metrics": metrics,
            "backends": backends,
        }
    )
