"""The demo's work, independent of Gradio: check the uploads, animate, draw the side-by-side preview.

Everything the user sends is checked here before any heavy work: the path must lie inside an allowed folder (the
upload folder or the bundled examples), the file type must be one we accept (by name and by content), and the size
and video length must be within :class:`DemoLimits`. Every failure is a :class:`~fomm.errors.InputError` whose
message the UI shows as is.

Limits that protect the server (measured before they existed: a 6000x6000 photo with auto-crop took 130 s for 25
frames and wrote a 6000x6000 video, and a 20000x20000 PNG failed with "not an image we can read"):

* a photo's pixel count is read from its header before it is decoded: above ``max_decode_pixels`` (decompression
  bomb size) it is refused with its size and what to do; above ``max_source_pixels`` it is decoded and scaled down,
  and the job's summary says so;
* the output is the model's working size (64 or 256), except with auto-crop, whose paste-back writes the photo's
  size: that is capped at ``max_output_pixels`` (and kept even, since H.264 pads odd sides; the summary once said
  1145x1145 for the 1146x1146 video);
* progress is one bar over the job's stages (checking, animating, preview) with the stage's name: before, the bar
  showed nothing for the minute the face search took and restarted at 0% for the preview;
* the result is ready as soon as its video is written (:func:`job_steps` yields it), and the side-by-side preview
  follows. The preview draws the keypoints the animator itself used for each frame (``FrameOutputs.kp_driving``),
  on the result they drove, so no detector is called a second time and every family works (Monkey-Net's detector
  wants 5-D clips, which the old overlay passed 4-D batches to; X2Face has no keypoints and gets no overlay).
"""

from __future__ import annotations

import colorsys
import dataclasses
import inspect
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fomm.animate import AnimationOptions, FrameOutputs, StageContext, animate_video
from fomm.errors import InputError
from fomm.io.image import IMAGE_EXTENSIONS, read_image, resize_uint8
from fomm.io.reading import VideoInfo, iter_frames, probe_video
from fomm.io.writing import VideoWriter

#: ``report(fraction in [0, 1], stage name)``: how a job tells the page where it is
Report = Callable[[float, str], None]
#: the share of the progress bar the animation takes; the preview takes the rest
ANIMATE_SHARE = 0.8

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
    webcam_streams: int = 4  # browsers streaming their webcam at once (each has its own animator)
    max_source_pixels: int = 2048 * 2048  # larger photos are scaled down to this (with a note)
    max_decode_pixels: int = 64 * 2 ** 20  # larger photos are refused before they are decoded
    max_output_pixels: int = 1024 * 1024  # the auto-crop paste-back's photo-sized output is capped to this

    def __post_init__(self) -> None:
        checks = (("max_upload_mb", self.max_upload_mb, 0.001, 100_000), ("max_video_seconds", self.max_video_seconds,
                  0.1, 86_400), ("queue_size", self.queue_size, 1, 10_000), ("concurrency", self.concurrency, 1, 256),
                  ("webcam_time_limit_s", self.webcam_time_limit_s, 1, 86_400),
                  ("webcam_streams", self.webcam_streams, 1, 256),
                  ("max_source_pixels", self.max_source_pixels, 64 * 64, 2 ** 28),
                  ("max_decode_pixels", self.max_decode_pixels, 64 * 64, 2 ** 30),
                  ("max_output_pixels", self.max_output_pixels, 64 * 64, 2 ** 28))
        for name, value, lo, hi in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise InputError(f"demo limit {name} must be between {lo:g} and {hi:g}, got {value!r}")
        if self.max_video_frames is not None and not 1 <= self.max_video_frames <= 10_000_000:
            raise InputError(f"demo limit max_video_frames must be between 1 and 10000000, got {self.max_video_frames}")
        if self.max_decode_pixels < self.max_source_pixels:
            raise InputError("demo limit max_decode_pixels must be at least max_source_pixels")

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
    preview: Path | None  # source | driving | result with the keypoints that drove it; None until it is written
    summary: str
    has_audio: bool = False


def _no_report(fraction: float, stage: str) -> None:
    pass


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


def _header_pixels(path: Path) -> tuple[int, str] | None:
    """``(pixels, "WxH pixels")`` from the image header without decoding the pixels; ``None`` when Pillow cannot
    tell (:func:`read_image` then says what is wrong with the file)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            return w * h, f"{w}x{h} pixels ({w * h / 1e6:.0f} MP)"
    except Image.DecompressionBombError as err:  # Pillow refuses > 2x its own limit already at open
        m = re.search(r"\((\d+) pixels\)", str(err))
        pixels = int(m.group(1)) if m else Image.MAX_IMAGE_PIXELS * 2
        return pixels, f"{pixels / 1e6:.0f} MP"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def check_source(path: Path, limits: DemoLimits, notes: list[str] | None = None) -> np.ndarray:
    """The source photo as uint8 ``[H, W, 3]``; InputError if it is not an image we accept. A photo above
    ``limits.max_source_pixels`` is scaled down, and a line saying so is appended to ``notes``."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(f"the source must be an image ({', '.join(IMAGE_EXTENSIONS)}), "
                         f"not '{path.suffix or path.name}'")
    _check_size(path, limits, "source image")
    header = _header_pixels(path)
    if header is not None and header[0] > limits.max_decode_pixels:
        raise InputError(f"the source photo is {header[1]}, too large to open safely; "
                         f"photos up to {limits.max_decode_pixels / 1e6:.0f} MP are accepted: scale it down first")
    try:
        photo = read_image(path)
    except InputError as err:  # empty, corrupt, too small, or read_image's own size limit
        raise InputError(f"source image: {_strip_path(err, path)}") from None
    h, w = photo.shape[:2]
    if h * w > limits.max_source_pixels:
        scale = math.sqrt(limits.max_source_pixels / (h * w))
        nh, nw = max(1, int(h * scale)), max(1, int(w * scale))
        photo = resize_uint8(photo, (nh, nw))
        if notes is not None:
            notes.append(f"the photo ({w}x{h}) was scaled down to {nw}x{nh} "
                         f"(limit {limits.max_source_pixels / 1e6:.1f} MP)")
    return photo


def output_size_for(photo: np.ndarray, options: AnimationOptions, limits: DemoLimits,
                    notes: list[str] | None = None) -> tuple[int, int] | None:
    """The output size a job may write: ``None`` (the model's working size) unless auto-crop pastes back into the
    photo, whose size is then capped at ``limits.max_output_pixels`` and rounded down to even sides."""
    if not options.auto_crop:
        return options.output_size
    h, w = options.output_size or photo.shape[:2]
    scale = min(1.0, math.sqrt(limits.max_output_pixels / (h * w)))
    oh, ow = max(16, int(h * scale) // 2 * 2), max(16, int(w * scale) // 2 * 2)
    if scale < 1.0 and notes is not None:
        notes.append(f"output capped at {ow}x{oh} (limit {limits.max_output_pixels / 1e6:.1f} MP)")
    return (oh, ow)


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


def _as_numpy(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


class KeypointRecorder:
    """A stage (see :mod:`fomm.animate.stages`) that keeps each frame's driving keypoints (``[K, 2]``, or ``None``
    for a family without keypoints) and reports the animation's progress as it goes."""

    def __init__(self, report: Report = _no_report, share: float = ANIMATE_SHARE) -> None:
        self.keypoints: list[np.ndarray | None] = []
        self.report = report
        self.share = share
        self.total = 1

    def begin(self, context: StageContext) -> None:
        self.total = max(int(context.num_frames), 1)
        self.report(0.0, "animating")

    def __call__(self, frame: np.ndarray, outputs: FrameOutputs) -> np.ndarray:
        kp = outputs.kp_driving
        self.keypoints.append(None if kp is None else _as_numpy(kp["value"])[0])
        n = len(self.keypoints)
        if n == 1 or n % 5 == 0 or n >= self.total:  # a few updates a second are plenty for the page
            self.report(self.share * min(n / self.total, 1.0), f"animating: frame {n} of {self.total}")
        return frame


def write_preview(source: np.ndarray, driving: Path, result: Path, output: Path, info: VideoInfo,
                  keypoints: Sequence[np.ndarray | None] = (), panel: int = 256, report: Report = _no_report,
                  start: float = ANIMATE_SHARE) -> int:
    """Write ``output`` (MP4, driving fps, driving audio): source | driving | result with the keypoints that drove
    it (``keypoints[i]``: frame i's ``[K, 2]`` in ``[-1, 1]``, from the animator), each ``panel`` x ``panel``.
    Returns the number of frames written."""
    src_panel = resize_uint8(source, (panel, panel))
    total = max(len(keypoints) or info.num_frames, 1)
    count = 0
    with VideoWriter(output, info.fps_fraction, audio_from=driving if info.has_audio else None) as writer:
        pairs = zip(iter_frames(driving, size=(panel, panel)), iter_frames(result, size=(panel, panel)),
                    strict=False)
        for i, (drv, res) in enumerate(pairs):
            kp = keypoints[i] if i < len(keypoints) else None
            writer.write(side_by_side([src_panel, drv, res if kp is None else draw_keypoints(res, kp)], panel))
            count += 1
            if count % 10 == 0 or count == total:
                report(start + (1 - start) * min(count / total, 1.0), f"preview: frame {count} of {total}")
    return count


def job_steps(model: object, source_path: Path, driving_path: Path, job_dir: Path, options: JobOptions,
              limits: DemoLimits = DemoLimits(), report: Report = _no_report) -> Iterator[JobResult]:
    """Check the inputs, animate into ``job_dir/result.mp4`` and yield the result at once (``preview=None``),
    then write ``job_dir/preview.mp4`` and yield the result again with it.

    ``source_path``/``driving_path`` must already have passed :func:`check_input_path`.
    """
    report(0.0, "checking the inputs")
    notes: list[str] = []
    source = check_source(source_path, limits, notes)
    info = check_driving(driving_path, limits)
    options = options.replace(progress=False, auto_crop=options.auto_crop and auto_crop_available())
    options = options.replace(output_size=output_size_for(source, options, limits, notes))
    if options.auto_crop:
        report(0.0, "finding the face in the photo and the video")
    recorder = KeypointRecorder(report)
    try:
        result = animate_video(model, source, driving_path, job_dir / "result.mp4", options, stages=[recorder])
    except InputError as err:
        # A video that probes fine can still end early while it is decoded; the message then names the file by
        # its server-side path, which means nothing to the user and tells a stranger about the server.
        raise InputError(_hide_paths(str(err), {driving_path: "the driving video", source_path: "the source image",
                                                job_dir: "the job folder"})) from None
    written = probe_video(result.output)  # what the file holds (H.264 pads odd sides), not what was asked
    w, h = written.display_size[1], written.display_size[0]
    audio = "with the driving audio" if result.has_audio else "no audio in the driving video"
    best = f", reference frame {result.best_frame}" if options.find_best_frame else ""
    extra = "".join(f"; {n}" for n in notes)
    summary = f"{result.num_frames} frames, {w}x{h}, {result.fps:g} fps, {audio}{best}{extra}"
    done = JobResult(video=result.output, preview=None, summary=summary, has_audio=result.has_audio)
    yield done
    report(ANIMATE_SHARE, "preview")
    preview = job_dir / "preview.mp4"
    write_preview(source, driving_path, result.output, preview, info, recorder.keypoints, report=report)
    report(1.0, "done")
    yield dataclasses.replace(done, preview=preview)


def run_job(model: object, source_path: Path, driving_path: Path, job_dir: Path, options: JobOptions,
            limits: DemoLimits = DemoLimits(), progress: bool = True, report: Report = _no_report) -> JobResult:
    """:func:`job_steps` to the end: the result with its preview."""
    *_, last = job_steps(model, source_path, driving_path, job_dir, options, limits, report)
    return last
