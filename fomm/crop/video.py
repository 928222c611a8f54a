"""``fomm crop``: find the face in a video and write stable square face crops.

Two streaming passes over the video (memory stays at one frame):

1. every frame is SAR-corrected (:func:`fomm.io.reading.iter_frames`), a 32x32 grey thumbnail is compared
   with the previous one to find scene cuts, and the face detector runs on it;
2. the frames are split into *segments*: a new segment starts at a scene cut, or when no detection has
   overlapped the tracked face by ``min_iou`` for more than ``max_lost`` frames (face lost, or jumped to
   another place or person); shorter gaps inside a segment, and single-frame false detections, are
   bridged. Each segment's per-frame boxes are smoothed with a running median, and the segment gets ONE
   square crop box: the union of its smoothed face boxes, grown by ``increase`` on each side and moved
   inside the frame. One box per scene (the "stable" crop) keeps the background still, which is what the
   keypoint models expect.

Segments shorter than ``min_frames`` are dropped. Every kept segment is written as its own clip, with the part of
the input's audio that plays under it (from the segment's first frame time on, cut at its end). The times are the
input's own (:func:`fomm.io.reading.frame_times`): with a variable frame rate, ``start / fps`` can be whole frames off
the real start, and a segment's frames keep their irregular times.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fomm.crop.boxes import DEFAULT_INCREASE, Box, crop_and_resize, fit_box, square_box
from fomm.crop.detect import Backend, FaceDetector
from fomm.errors import InputError
from fomm.io.reading import frame_times, iter_frames, probe_video
from fomm.io.writing import check_output_path, open_writer


@dataclass
class CropResult:
    """One written clip.

    ``start``/``end``: frame range ``[start, end)`` of the input; ``box``: the crop box ``(l, t, r, b)`` in
    display pixels of the (SAR-corrected) input frames of size ``frame_size`` ``(w, h)``; ``face_boxes``:
    the smoothed per-frame face boxes of the segment (``end - start`` entries); ``has_audio``: whether the
    clip carries the input's audio (its ``[start_time, end_time)`` part, so it stays in sync). ``times``: the
    segment's ``(start_time, end_time)`` in seconds of the input when its frame rate is variable (``None``: the rate
    is constant and the times are ``start / fps``, ``end / fps``).
    """

    path: Path
    start: int
    end: int
    box: Box
    frame_size: tuple[int, int]
    fps: float
    has_audio: bool
    face_boxes: list[Box] = field(default_factory=list)
    times: tuple[float, float] | None = None

    @property
    def start_time(self) -> float:
        return self.times[0] if self.times is not None else self.start / self.fps

    @property
    def end_time(self) -> float:
        return self.times[1] if self.times is not None else self.end / self.fps


def _iou(a: Box, b: Box) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _thumb(frame: np.ndarray) -> np.ndarray:
    small = Image.fromarray(frame).convert("L").resize((32, 32), Image.BILINEAR)
    return np.asarray(small, dtype=np.float32)


def _smooth(boxes: list[Box], window: int) -> list[Box]:
    """Smooth a face track: a running median over 5 frames drops single-frame detector jumps, then a running
    mean over ``window`` frames spreads the detector's coarse steps (HOG cells are 8 px on the downscaled
    copy, i.e. ~25 px at full resolution) over several frames."""
    arr = np.array([[(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0] for x0, y0, x1, y1 in boxes], dtype=np.float64)

    def running(a: np.ndarray, win: int, fn) -> np.ndarray:
        half = max(0, win // 2)
        return np.stack([fn(a[max(0, i - half):i + half + 1], axis=0) for i in range(len(a))])

    arr = running(running(arr, 5, np.median), window, np.mean)
    return [(int(round(cx - w / 2)), int(round(cy - h / 2)), int(round(cx + w / 2)), int(round(cy + h / 2)))
            for cx, cy, w, h in arr]


def track_faces(frames, detector: FaceDetector, *, scene_threshold: float = 30.0, min_iou: float = 0.3,
                max_lost: int = 5, progress: bool = False, total: int | None = None
                ) -> tuple[list[tuple[int, int, list[Box]]], tuple[int, int]]:
    """Split a frame stream into face segments.

    ``frames``: iterable of RGB uint8 ``[H, W, 3]``. Returns ``(segments, (W, H))`` where each segment is
    ``(start, end, boxes)`` with one raw (unsmoothed, gap-filled) face box per frame of ``[start, end)``.

    A frame *misses* when no detection overlaps the tracked face by ``min_iou``. Up to ``max_lost`` misses in
    a row are bridged (the detector blinks, or fires once on something else); one more ends the segment at its
    last matched frame. If the misses were a different face that stayed (the face jumped: another shot or
    person), the new segment starts where that face's run of overlapping detections began.
    """
    segments: list[tuple[int, int, list[Box]]] = []
    cur: list[Box | None] = []
    cur_start = 0
    last_box: Box | None = None
    missed: list[tuple[int, Box | None]] = []  # (frame, its largest unmatched face or None) since the last match
    prev_thumb = None
    size = (0, 0)

    def close() -> None:
        nonlocal cur, last_box, missed
        if cur:
            filled: list[Box] = []
            for b in cur:  # bridged gaps take the previous box
                filled.append(b if b is not None else filled[-1])
            segments.append((cur_start, cur_start + len(filled), filled))
        cur, last_box, missed = [], None, []

    for i, frame in enumerate(tqdm(frames, total=total, desc="finding faces", unit="frame", disable=not progress)):
        size = (frame.shape[1], frame.shape[0])
        thumb = _thumb(frame)
        cut = prev_thumb is not None and float(np.abs(thumb - prev_thumb).mean()) > scene_threshold
        prev_thumb = thumb
        boxes = detector.detect(frame)
        if cut:
            close()
        if last_box is None:
            if boxes:
                cur_start, cur, last_box = i, [boxes[0]], boxes[0]
            continue
        best = max(boxes, key=lambda b: _iou(b, last_box)) if boxes else None
        if best is not None and _iou(best, last_box) >= min_iou:
            cur.extend([None] * len(missed))
            cur.append(best)
            last_box, missed = best, []
            continue
        missed.append((i, boxes[0] if boxes else None))
        if len(missed) > max_lost:
            pending = missed
            close()
            # the latest run of mutually overlapping detections among the misses is a face that stayed
            run: list[tuple[int, Box]] = []
            for j, b in reversed(pending):
                if b is None or (run and _iou(b, run[-1][1]) < min_iou):
                    break
                run.append((j, b))
            if run:
                run.reverse()
                cur_start, cur, last_box = run[0][0], [b for _, b in run], run[-1][1]
    close()
    return segments, size


def _segment_path(out: str, k: int, n: int) -> str:
    if n == 1:
        return out
    if out.endswith("/") or out.endswith(os.sep) or Path(out).is_dir():
        return os.path.join(out, f"{k:02d}") + "/"
    p = Path(out)
    return str(p.with_name(f"{p.stem}_{k:02d}{p.suffix}"))


def crop_video(path: str | os.PathLike, out: str | os.PathLike, size: int = 256,
               increase: float = DEFAULT_INCREASE, *,
               min_frames: int = 8, max_frames: int | None = None, scene_threshold: float = 30.0,
               min_iou: float = 0.3, max_lost: int = 5, smooth: int = 9, backend: Backend = "auto",
               detect_size: int = 400, audio: bool = True, progress: bool = True) -> list[CropResult]:
    """Find and track the face in ``path`` and write one square ``size`` x ``size`` clip per face segment.

    ``out``: an ``.mp4`` path (several segments become ``<stem>_00.mp4``, ``<stem>_01.mp4``, ...) or a
    folder ending in ``/`` for PNG frames. ``increase``: margin around the face on each side, as a fraction
    of the face box side (default :data:`~fomm.crop.boxes.DEFAULT_INCREASE` = 0.5, VoxCeleb-like framing: the
    whole head with some margin; see there why). ``max_frames``: only look at the first frames. Every segment gets the
    matching part of the input's audio (from ``start / fps``). ``detect_size``: longer
    side of the copy the detector runs on.

    Raises :class:`InputError` if the video is unreadable or no face segment of ``min_frames`` frames is
    found, :class:`OutputError` if ``out`` cannot be written.
    """
    if size < 1:
        raise InputError(f"crop size must be positive, got {size}")
    if increase < 0:
        raise InputError(f"--increase must be >= 0, got {increase}")
    out = os.fspath(out)
    check_output_path(out, kind="video")
    info = probe_video(path)
    # video faces worth cropping are large; a 400 px detection copy keeps dlib near 50 ms a frame
    detector = FaceDetector(backend, max_side=detect_size)
    total = info.num_frames if max_frames is None else min(info.num_frames, max_frames)
    raw, (w, h) = track_faces(iter_frames(path, max_frames=max_frames), detector, scene_threshold=scene_threshold,
                              min_iou=min_iou, max_lost=max_lost, progress=progress, total=total)
    kept = [s for s in raw if s[1] - s[0] >= min_frames]
    if not kept:
        what = "no face found" if not raw else f"no face stays in view for {min_frames} frames"
        raise InputError(f"{path}: {what}; use a video showing a frontal face, or crop it yourself")

    timing = frame_times(path, max_frames=max_frames)
    vfr = timing.vfr and len(timing.times) >= kept[-1][1]

    def seconds(i: int) -> float:
        return timing.times[i] if i < len(timing.times) else timing.end

    plans = []
    for k, (start, end, boxes) in enumerate(kept):
        smoothed = _smooth(boxes, smooth)
        union = (min(b[0] for b in smoothed), min(b[1] for b in smoothed),
                 max(b[2] for b in smoothed), max(b[3] for b in smoothed))
        box = fit_box(square_box(union, increase), w, h)
        with_audio = audio and info.has_audio
        plans.append(CropResult(Path(_segment_path(out, k, len(kept)).rstrip("/")), start, end, box, (w, h),
                                float(info.fps), with_audio, smoothed, (seconds(start), seconds(end)) if vfr else None))

    # second pass: write each segment's crop; writers are atomic, so a failure leaves nothing behind
    writers = {}
    try:
        for i, frame in enumerate(tqdm(iter_frames(path, max_frames=plans[-1].end), total=plans[-1].end,
                                       desc="writing crops", unit="frame", disable=not progress)):
            for k, plan in enumerate(plans):
                if plan.start <= i < plan.end:
                    if k not in writers:
                        target = _segment_path(out, k, len(plans))
                        # the segment's audio starts under its first frame (its own time with a variable rate)
                        start = plan.start_time if vfr else plan.start / info.fps_fraction
                        writers[k] = open_writer(target, info.fps_fraction, path if plan.has_audio else None,
                                                 audio_start=start, vfr=vfr)
                        writers[k].__enter__()
                    face = crop_and_resize(frame, plan.box, size, mode="pad")
                    if vfr:
                        writers[k].write(face, pts=timing.times[i] - plan.start_time)
                    else:
                        writers[k].write(face)
                elif i == plan.end and k in writers:
                    writers.pop(k).__exit__(None, None, None)
        for k in list(writers):
            writers.pop(k).__exit__(None, None, None)
    except BaseException as exc:
        for wr in writers.values():
            wr.__exit__(type(exc), exc, None)
        raise
    return plans
