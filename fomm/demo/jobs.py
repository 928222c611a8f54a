"""The demo's work, independent of Gradio: check the uploads, animate, draw the side-by-side preview.

Everything the user sends is checked here before any heavy work: the path must lie inside an allowed folder (the
upload folder or the bundled examples), the file type must be one we accept (by name and by content), and the size
and video length must be within :class:`DemoLimits`. Every failure is a :class:`~fomm.errors.InputError` whose
message the UI shows as is.
"""

from __future__ import annotations

import colorsys
import dataclasses
import inspect
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fomm.animate import AnimationOptions, animate_video
from fomm.api import LoadedModel
from fomm.errors import InputError
from fomm.io.image import IMAGE_EXTENSIONS, image_to_tensor, read_image, resize_uint8
from fomm.io.reading import VideoInfo, iter_frames, probe_video
from fomm.io.writing import VideoWriter

#: Driving-video containers accepted from the browser (anything else is refused before it is decoded).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".gif")


@dataclass(frozen=True)
class DemoLimits:
    """What one job may ask for. ``queue_size``/``concurrency`` bound Gradio's queue (waiting / running jobs)."""

    max_upload_mb: float = 50.0
    max_video_seconds: float = 60.0
    max_video_frames: int | None = None  # default: max_video_seconds at 60 fps
    queue_size: int = 8
    concurrency: int = 1
    webcam_time_limit_s: int = 120

    @property
    def frame_limit(self) -> int:
        return self.max_video_frames or int(self.max_video_seconds * 60)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


#: a demo job's options are ``fomm animate``'s (one dataclass for the CLI, :func:`animate_video` and the demo)
JobOptions = AnimationOptions


@dataclass(frozen=True)
class JobResult:
    video: Path  # the animated video, driving fps and audio
    preview: Path  # source | driving with keypoints | result
    summary: str


def auto_crop_available() -> bool:
    """Whether :func:`fomm.animate.animate_video` can crop the source to the face itself (``auto_crop=True``).
    The demo shows its auto-crop checkbox only then."""
    params = inspect.signature(animate_video).parameters
    if "auto_crop" in params:
        return True
    return "options" in params and "auto_crop" in {f.name for f in dataclasses.fields(AnimationOptions)}


def _within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def check_input_path(path: str | os.PathLike | None, roots: Sequence[str | os.PathLike], what: str) -> Path:
    """Resolve ``path`` (symlinks too) and refuse anything outside ``roots``: the server opens only files that were
    uploaded to it or that it ships."""
    if path is None or str(path) == "":
        raise InputError(f"no {what} given: upload one or pick an example")
    p = Path(path).resolve()
    resolved = [Path(r).resolve() for r in roots]
    if not _within(p, resolved):
        raise InputError(f"the {what} must be an uploaded file or a bundled example")
    if not p.is_file():
        raise InputError(f"the {what} upload is missing on the server; upload it again")
    return p


def _check_size(p: Path, limits: DemoLimits, what: str) -> None:
    size = p.stat().st_size
    if size == 0:
        raise InputError(f"the {what} is empty (0 bytes)")
    if size > limits.max_upload_bytes:
        raise InputError(f"the {what} is {size / 2**20:.1f} MB; the limit is {limits.max_upload_mb:g} MB")


def check_source(path: Path, limits: DemoLimits) -> np.ndarray:
    """The source photo as uint8 ``[H, W, 3]``; InputError if it is not an image we accept."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(f"the source must be an image ({', '.join(IMAGE_EXTENSIONS)}), "
                         f"not '{path.suffix or path.name}'")
    _check_size(path, limits, "source image")
    try:
        return read_image(path)
    except InputError as err:
        raise InputError(f"source image: {_strip_path(err, path)}") from None


def check_driving(path: Path, limits: DemoLimits) -> VideoInfo:
    """Probe the driving video; InputError if it is not a readable video within the limits."""
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise InputError(f"the driving input must be a video ({', '.join(VIDEO_EXTENSIONS)}), "
                         f"not '{path.suffix or path.name}'")
    _check_size(path, limits, "driving video")
    try:
        info = probe_video(path)
    except InputError as err:
        raise InputError(f"driving video: {_strip_path(err, path)}") from None
    if info.duration > limits.max_video_seconds:
        raise InputError(f"the driving video lasts {_duration(info.duration)}; the limit is "
                         f"{limits.max_video_seconds:g} s: trim it first")
    if info.num_frames > limits.frame_limit:
        raise InputError(f"the driving video has {info.num_frames} frames; the limit is {limits.frame_limit}")
    return info


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 120:
        return f"{seconds / 60:.1f} minutes"
    return f"{seconds:.1f} s"


def _strip_path(err: Exception, path: Path) -> str:
    """Messages name the server-side upload path, which means nothing to the user; drop it."""
    text = str(err)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _hide_paths(text: str, names: dict[Path, str]) -> str:
    """``text`` with each server-side path replaced by what it is to the user (longest paths first, so a file
    inside the job folder is not half-replaced)."""
    for path, name in sorted(names.items(), key=lambda item: -len(str(item[0]))):
        text = text.replace(str(path), name)
    return text


# ------------------------------------------------------------------------------------------------- keypoints


def keypoint_colors(num_kp: int) -> np.ndarray:
    """``[K, 3]`` uint8 colours evenly spaced in hue, so neighbouring keypoint indices are easy to tell apart."""
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(i / max(num_kp, 1), 0.9, 1.0)]
                     for i in range(num_kp)], dtype=np.uint8).reshape(num_kp, 3)


def draw_keypoints(frame: np.ndarray, kp: np.ndarray, radius: int | None = None) -> np.ndarray:
    """Draw keypoints on a copy of ``frame``.

    Args:
        frame: uint8 ``[H, W, 3]``.
        kp: ``[K, 2]`` (x, y) in ``[-1, 1]``, the detector's convention (-1 is the centre of the first pixel,
            +1 of the last, as in :func:`fomm.ops.make_coordinate_grid`).
    Returns:
        uint8 ``[H, W, 3]`` with a filled disc per keypoint (black rim, so it shows on any background).
    """
    out = frame.copy()
    h, w = out.shape[:2]
    r = radius or max(2, round(min(h, w) / 64))
    colors = keypoint_colors(len(kp))
    yy, xx = np.mgrid[0:h, 0:w]
    for (x, y), color in zip(np.asarray(kp, dtype=np.float64), colors, strict=True):
        cx, cy = (x + 1) / 2 * (w - 1), (y + 1) / 2 * (h - 1)
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2
        out[d2 <= (r + 1) ** 2] = 0
        out[d2 <= r ** 2] = color
    return out


@torch.inference_mode()
def detect_keypoints(model: LoadedModel, frames: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 ``[H, W, 3]`` frames -> ``[B, K, 2]`` keypoints (x, y) in ``[-1, 1]`` at the model's input size."""
    batch = torch.cat([image_to_tensor(f, model.image_size) for f in frames]).to(model.device)
    return model.kp_detector(batch)["value"].float().cpu().numpy()


def side_by_side(panels: Iterable[np.ndarray], size: int) -> np.ndarray:
    """Resize each uint8 ``[H, W, 3]`` panel to ``size`` x ``size`` and put them left to right."""
    return np.concatenate([resize_uint8(p, (size, size)) for p in panels], axis=1)


def _batched(it: Iterable, n: int) -> Iterable[list]:
    batch: list = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def write_preview(model: LoadedModel, source: np.ndarray, driving: Path, result: Path, output: Path, info: VideoInfo,
                  panel: int = 256, progress: bool = True) -> int:
    """Write ``output`` (MP4, driving fps, driving audio): source | driving with its keypoints | result, each
    ``panel`` x ``panel``. Returns the number of frames written."""
    from tqdm.auto import tqdm

    src_panel = resize_uint8(source, (panel, panel))
    count = 0
    bar = tqdm(total=info.num_frames, unit="frame", desc="preview", disable=not progress, leave=False)
    try:
        with VideoWriter(output, info.fps_fraction, audio_from=driving if info.has_audio else None) as writer:
            pairs = zip(iter_frames(driving, size=(panel, panel)), iter_frames(result, size=(panel, panel)),
                        strict=False)
            for batch in _batched(pairs, 8):
                kps = detect_keypoints(model, [d for d, _ in batch])
                for (drv, res), kp in zip(batch, kps, strict=True):
                    writer.write(side_by_side([src_panel, draw_keypoints(drv, kp), res], panel))
                    count += 1
                    bar.update(1)
    finally:
        bar.close()
    return count


def run_job(model: LoadedModel, source_path: Path, driving_path: Path, job_dir: Path, options: JobOptions,
            limits: DemoLimits = DemoLimits(), progress: bool = True) -> JobResult:
    """Check the inputs, animate, and write ``result.mp4`` and ``preview.mp4`` into ``job_dir``.

    ``source_path``/``driving_path`` must already have passed :func:`check_input_path`.
    """
    source = check_source(source_path, limits)
    info = check_driving(driving_path, limits)
    options = options.replace(progress=progress, auto_crop=options.auto_crop and auto_crop_available())
    preview = job_dir / "preview.mp4"
    try:
        result = animate_video(model, source, driving_path, job_dir / "result.mp4", options)
        write_preview(model, source, driving_path, result.output, preview, info, progress=progress)
    except InputError as err:
        # A video that probes fine can still end early while it is decoded; the message then names the file by
        # its server-side path, which means nothing to the user and tells a stranger about the server.
        raise InputError(_hide_paths(str(err), {driving_path: "the driving video", source_path: "the source image",
                                                job_dir: "the job folder"})) from None
    h, w = result.size
    audio = "with the driving audio" if result.has_audio else "no audio in the driving video"
    best = f", reference frame {result.best_frame}" if options.find_best_frame else ""
    summary = f"{result.num_frames} frames, {w}x{h}, {result.fps:g} fps, {audio}{best}"
    return JobResult(video=result.output, preview=preview, summary=summary)
