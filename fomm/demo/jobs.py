"""The demo's work, independent of Gradio: check the uploads, animate, draw the side-by-side preview.

Everything the user sends is checked here before any heavy work: the path must lie inside an allowed folder (the
upload folder or the bundled examples), the file type must be one we accept (by name and by content), and the size
and video length must be within :class:`DemoLimits`. Every failure is a :class:`~fomm.errors.InputError` whose
message the UI shows as is.

Limits that protect the server (measured before they existed: a 6000x6000 photo with auto-crop took 130 s for 25
frames and wrote a 6000x6000 video, and a 20000x20000 PNG failed with "not an image we can read"):

* a photo's pixel count is read from its header before it is decoded (:func:`fomm.io.image.read_image`, the reader
  every fomm command uses): above ``max_decode_pixels``, capped at fomm's own 50 MP limit (decompression
  bomb size) it is refused with its size and what to do; above ``max_source_pixels`` it is decoded and scaled down,
  and the job's summary says so;
* the output is the model's working size (64 or 256), except with auto-crop, whose paste-back writes the photo's
  size: that is capped at ``max_output_pixels`` (and kept even, since H.264 pads odd sides; the summary once said
  1145x1145 for the 1146x1146 video); a stereo layout that doubles the frame (side by side, top-bottom) counts
  double, so each eye shrinks rather than the pair going past the cap (:func:`output_size_for`);
* progress is one bar over the job's stages (checking, animating, preview) with the stage's name: before, the bar
  showed nothing for the minute the face search took and restarted at 0% for the preview;
* the result is ready as soon as its video is written (:func:`job_steps` yields it), and the side-by-side preview
  follows. The preview draws the keypoints the animator itself used for each frame (``FrameOutputs.kp_driving``),
  on the result they drove, so no detector is called a second time and every family works (Monkey-Net's detector
  wants 5-D clips, which the old overlay passed 4-D batches to; X2Face has no keypoints and gets no overlay).
"""

from __future__ import annotations

import colorsys
import contextlib
import dataclasses
import inspect
import math
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from fomm.animate import AnimationOptions, FrameOutputs, StageContext, animate_video
from fomm.compositing.camera import MOVES
from fomm.compositing.stereo import STEREO_FORMATS, packed_size
from fomm.errors import InputError, OutputError
from fomm.io.atomic import atomic_file
from fomm.io.image import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, ImageTooLarge, read_image, resize_uint8, write_image
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
    max_decode_pixels: int = 64 * 2 ** 20  # larger photos are refused from their header (never above fomm's 50 MP)
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
    depth_preview: Path | None = None  # the depth pass as grey video (near = white); only with Depth & 3D
    depth_zip: Path | None = None  # the depth pass: 16-bit PNG frames + depth.json; only with Depth & 3D


#: The "Depth & 3D" choices: "none" first (the default), then the compositing engine's own names.
PARALLAX_CHOICES = ("none", *MOVES)
STEREO_CHOICES = ("none", *STEREO_FORMATS)
_HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")
_RGBA = re.compile(r"^rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*[\d.]+\s*)?\)$")


def parse_colour(text: object, what: str = "fog colour") -> tuple[float, float, float]:
    """``(r, g, b)`` in 0-255 from what a colour picker sends: ``#rrggbb``, ``#rgb`` or ``rgb(a)(r, g, b[, a])``
    (Gradio's picker has sent both forms across versions)."""
    value = str(text or "").strip()
    m = _HEX.match(value)
    if m:
        digits = m.group(1) if len(m.group(1)) == 6 else "".join(c * 2 for c in m.group(1))
        return tuple(float(int(digits[i:i + 2], 16)) for i in (0, 2, 4))
    m = _RGBA.match(value)
    if m and all(0.0 <= float(v) <= 255.0 for v in m.groups()):
        return tuple(float(v) for v in m.groups())
    raise InputError(f"the {what} must be a colour like #c8d2e6, got {value[:40]!r}")


def _setting(value: object, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise InputError(f"{name} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class DepthSettings:
    """The "Depth & 3D" section of the page: what the job composites with the source's depth.

    Checked here with the page's own words (the engine's :class:`~fomm.compositing.stage.CompositeOptions` names
    the command-line flags, which mean nothing to someone using sliders or the HTTP API), then turned into engine
    options by :meth:`composite_options`. Defaults are "nothing": a job with default settings runs exactly as it
    did before the section existed (no depth estimated).

    Attributes:
        parallax: one of :data:`PARALLAX_CHOICES`; ``parallax_amount``: size of the move, fraction of the width.
        stereo: one of :data:`STEREO_CHOICES`; ``divergence``: disparity between the eyes, percent of the width.
        dof: depth of field on/off; ``focus``: the depth in focus (0 far - 1 near); ``aperture``: blur, percent of
            the width per unit of depth.
        fog_density: exponential depth fog, 0 = off; ``fog_colour``: ``#rrggbb``.
        plate: a background image that replaces what is behind the person (already through
            :func:`check_input_path`), or None; ``plate_depth``: its depth in a parallax move (0 = far).
        depth_pass: offer the depth pass even when no effect is asked for.
    """

    parallax: str = "none"
    parallax_amount: float = 0.02
    stereo: str = "none"
    divergence: float = 2.0
    dof: bool = False
    focus: float = 0.8
    aperture: float = 2.0
    fog_density: float = 0.0
    fog_colour: str = "#ffffff"
    plate: Path | None = None
    plate_depth: float = 0.0
    depth_pass: bool = False

    def __post_init__(self) -> None:
        if self.parallax not in PARALLAX_CHOICES:
            raise InputError(f"parallax move must be one of {', '.join(PARALLAX_CHOICES)}, got {self.parallax!r}")
        if self.stereo not in STEREO_CHOICES:
            raise InputError(f"stereo format must be one of {', '.join(STEREO_CHOICES)}, got {self.stereo!r}")
        for name, value, lo, hi in (("parallax amount", self.parallax_amount, 0.0, 0.25),
                                    ("stereo divergence", self.divergence, 0.0, 10.0),
                                    ("focus", self.focus, 0.0, 1.0), ("aperture", self.aperture, 0.0, 10.0),
                                    ("fog density", self.fog_density, 0.0, 50.0),
                                    ("plate depth", self.plate_depth, 0.0, 1.0)):
            _setting(value, name, lo, hi)
        for name, value in (("depth of field", self.dof), ("depth pass", self.depth_pass)):
            if not isinstance(value, bool):
                raise InputError(f"{name} must be true or false, got {value!r}")
        parse_colour(self.fog_colour)

    @property
    def compositing(self) -> bool:
        """Whether any effect is asked for (the composite stage runs)."""
        return (self.parallax != "none" or self.stereo != "none" or self.dof or self.fog_density > 0
                or self.plate is not None)

    @property
    def active(self) -> bool:
        """Whether the job estimates depth at all (an effect, or the depth pass on its own)."""
        return self.compositing or self.depth_pass

    @property
    def moves_pixels(self) -> bool:
        """Whether the written frame is geometrically another view than the model's (parallax or stereo), so the
        keypoints that drove the model no longer sit on what they mark."""
        return self.parallax != "none" or self.stereo != "none"

    def composite_options(self, plate: Path | None = None):
        """The engine's :class:`~fomm.compositing.stage.CompositeOptions`; ``plate``: the checked plate file to read
        (default :attr:`plate`)."""
        from fomm.compositing.camera import ParallaxConfig
        from fomm.compositing.stage import CompositeOptions
        from fomm.compositing.stereo import StereoConfig

        return CompositeOptions(
            parallax=None if self.parallax == "none" else ParallaxConfig(move=self.parallax,
                                                                          amount=float(self.parallax_amount)),
            stereo=None if self.stereo == "none" else StereoConfig(format=self.stereo,
                                                                    divergence=float(self.divergence)),
            dof=(float(self.focus), float(self.aperture)) if self.dof else None,
            fog=(float(self.fog_density), parse_colour(self.fog_colour)) if self.fog_density > 0 else None,
            background=plate if plate is not None else self.plate, plate_depth=float(self.plate_depth))


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


def decode_limit(limits: DemoLimits) -> int:
    """The most pixels the demo decodes from one upload (photo, plate, webcam frame): ``limits.max_decode_pixels``,
    and never more than fomm's own limit (:data:`fomm.io.image.MAX_IMAGE_PIXELS`)."""
    return min(int(limits.max_decode_pixels), MAX_IMAGE_PIXELS)


def _pixels_text(err: ImageTooLarge) -> str:
    if err.size:
        w, h = err.size
        return f"{w}x{h} pixels ({w * h / 1e6:.0f} MP)"
    return f"{err.pixels / 1e6:.0f} MP"


def check_source(path: Path, limits: DemoLimits, notes: list[str] | None = None, what: str = "source") -> np.ndarray:
    """The source photo as uint8 ``[H, W, 3]``; InputError if it is not an image we accept. A photo above
    ``limits.max_source_pixels`` is scaled down, and a line saying so is appended to ``notes``.

    ``what`` names the upload in the messages: ``"source"`` (the photo to animate) or another still the job reads,
    such as ``"background plate"``, which goes through exactly the same checks because it is just as much an
    upload from a stranger."""
    image, photo_name, short = (("source image", "source photo", "photo") if what == "source" else (what,) * 3)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(f"the {what} must be an image ({', '.join(IMAGE_EXTENSIONS)}), "
                         f"not '{path.suffix or path.name}'")
    _check_size(path, limits, image)
    try:
        photo = read_image(path, max_pixels=decode_limit(limits))
    except ImageTooLarge as err:  # from the header, before a pixel is decoded
        raise InputError(f"the {photo_name} is {_pixels_text(err)}, too large to open safely; photos up to "
                         f"{err.limit / 1e6:.0f} MP are accepted: scale it down first") from None
    except InputError as err:  # empty, not an image, corrupt or too small
        raise InputError(f"{image}: {_strip_path(err, path)}") from None
    h, w = photo.shape[:2]
    if h * w > limits.max_source_pixels:
        scale = math.sqrt(limits.max_source_pixels / (h * w))
        nh, nw = max(1, int(h * scale)), max(1, int(w * scale))
        photo = resize_uint8(photo, (nh, nw))
        if notes is not None:
            notes.append(f"the {short} ({w}x{h}) was scaled down to {nw}x{nh} "
                         f"(limit {limits.max_source_pixels / 1e6:.1f} MP)")
    return photo


def output_size_for(photo: np.ndarray, options: AnimationOptions, limits: DemoLimits,
                    notes: list[str] | None = None, *, stereo: str | None = None,
                    model_size: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The size of each animated frame a job may write: ``None`` (the model's working size) unless auto-crop pastes
    back into the photo, or a stereo layout would make the written frame too large.

    The cap (``limits.max_output_pixels``) applies to the frame as written, because that is what the server encodes
    and sends: ``stereo`` ``sbs``/``cross`` put the two eyes side by side (twice the width) and ``tb`` one over the
    other (twice the height), so each eye is scaled down until the packed frame fits; ``hsbs``/``htb`` squeeze the
    eyes into one frame's size and ``anaglyph`` is one frame, so they change nothing. Scaled sizes are rounded down to
    even sides (H.264 pads odd ones, and the half layouts need them even). ``model_size`` is the model's ``(H, W)``,
    needed only to size a stereo layout of the model's frames.
    """
    def packed(size: tuple[int, int]) -> tuple[int, int]:
        return packed_size(stereo, size) if stereo else size

    if options.auto_crop:
        h, w = options.output_size or photo.shape[:2]
    else:
        base = options.output_size or model_size
        if base is None or math.prod(packed(base)) <= limits.max_output_pixels:
            return options.output_size  # the default path: nothing to cap
        h, w = base
    ph, pw = packed((h, w))
    scale = min(1.0, math.sqrt(limits.max_output_pixels / (ph * pw)))
    oh, ow = max(16, int(h * scale) // 2 * 2), max(16, int(w * scale) // 2 * 2)
    if scale < 1.0 and notes is not None:
        ph, pw = packed((oh, ow))
        eyes = f", each eye {ow}x{oh}" if (ph, pw) != (oh, ow) else ""
        notes.append(f"output capped at {pw}x{ph}{eyes} (limit {limits.max_output_pixels / 1e6:.1f} MP)")
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
                  start: float = ANIMATE_SHARE, result_width: int | None = None) -> int:
    """Write ``output`` (MP4, driving fps, driving audio): source | driving | result with the keypoints that drove
    it (``keypoints[i]``: frame i's ``[K, 2]`` in ``[-1, 1]``, from the animator), each ``panel`` x ``panel``;
    ``result_width`` widens the result's panel (a side-by-side stereo result keeps its shape instead of being
    squeezed into a square). Returns the number of frames written."""
    src_panel = resize_uint8(source, (panel, panel))
    total = max(len(keypoints) or info.num_frames, 1)
    count = 0
    res_size = (panel, result_width or panel)
    with VideoWriter(output, info.fps_fraction, audio_from=driving if info.has_audio else None) as writer:
        pairs = zip(iter_frames(driving, size=(panel, panel)), iter_frames(result, size=res_size), strict=False)
        for i, (drv, res) in enumerate(pairs):
            kp = keypoints[i] if i < len(keypoints) else None
            shown = res if kp is None else draw_keypoints(res, kp)
            if result_width:
                writer.write(np.concatenate([side_by_side([src_panel, drv], panel), shown], axis=1))
            else:
                writer.write(side_by_side([src_panel, drv, shown], panel))
            count += 1
            if count % 10 == 0 or count == total:
                report(start + (1 - start) * min(count / total, 1.0), f"preview: frame {count} of {total}")
    return count


# ------------------------------------------------------------------------------------------------- depth & 3D


class DepthOutputs:
    """The view sink of a job's depth: the depth pass (``DIR/000000.png``... 16-bit, and ``depth.json``, through
    :class:`~fomm.compositing.depth.DepthFolderWriter`, so the folder appears whole or not at all) and a grey
    preview video of the same frames (near = white), both written as the frames come, so the depth is ready with
    the result rather than after a second pass over the video."""

    def __init__(self, folder: Path, preview: Path, fps: Fraction, meta: dict) -> None:
        from fomm.compositing.depth import DepthFolderWriter

        self.folder = DepthFolderWriter(folder, fps, "png", meta)
        self.preview = VideoWriter(preview, fps)
        self._stack = contextlib.ExitStack()

    def write(self, depth: np.ndarray) -> None:
        self.folder.write(depth)
        grey = np.round(np.clip(np.asarray(depth, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
        self.preview.write(np.repeat(grey[:, :, None], 3, axis=2))

    def __enter__(self) -> DepthOutputs:
        self._stack.enter_context(self.folder)
        self._stack.enter_context(self.preview)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        return bool(self._stack.__exit__(exc_type, exc, tb))


def zip_depth_pass(folder: Path, target: Path) -> Path:
    """``target``: a zip of the depth pass ``folder`` under ``depth/`` (ready for ``fomm composite --depth
    depth/`` once unpacked), written atomically. PNGs are stored as they are (already compressed; deflating them
    again costs time for nothing), the sidecar is deflated."""
    try:
        with atomic_file(target, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w") as zf:
            for f in sorted(folder.iterdir()):
                zf.write(f, f"depth/{f.name}",
                         compress_type=zipfile.ZIP_STORED if f.suffix == ".png" else zipfile.ZIP_DEFLATED)
    except OSError as err:  # the job folder is the server's: say what failed, not where
        raise OutputError(f"could not pack the depth pass ({err.strerror or type(err).__name__})") from None
    return target


def _check_depth_job(model: object) -> None:
    """Refuse, before any work, what the depth stage cannot follow: families without a dense motion field to move
    the source's depth with. Auto-crop is no reason: the depth pass pastes the moved face crop's depth back into
    the photo's with the colour's box and mask (:class:`~fomm.compositing.depth.DepthPassStage`)."""
    family = getattr(model, "model", "fomm")
    if family != "fomm":
        raise InputError(f"Depth & 3D needs a First Order Motion model (its motion field moves the photo's depth); "
                         f"this one is {family}: pick another model or leave the Depth & 3D section unset")


def _depth_meta(meta: dict, source_path: Path, driving_path: Path) -> dict:
    """The depth pass sidecar's metadata with the inputs named as the user knows them (their file names), and any
    estimator path reduced to its name: the zip leaves the server."""
    out = {k: (Path(v).name if isinstance(v, str) and os.path.isabs(v) else v) for k, v in meta.items()}
    out.update(source=source_path.name, driving=driving_path.name)
    return out


def _effects(depth: DepthSettings) -> str:
    parts = [f"{depth.parallax} parallax" if depth.parallax != "none" else "",
             f"{depth.stereo} stereo" if depth.stereo != "none" else "", "depth of field" if depth.dof else "",
             "fog" if depth.fog_density > 0 else "", "background plate" if depth.plate is not None else ""]
    return ", ".join(p for p in parts if p) or "depth pass only"


def job_steps(model: object, source_path: Path, driving_path: Path, job_dir: Path, options: JobOptions,
              limits: DemoLimits = DemoLimits(), report: Report = _no_report,
              depth: DepthSettings | None = None) -> Iterator[JobResult]:
    """Check the inputs, animate into ``job_dir/result.mp4`` and yield the result at once (``preview=None``),
    then write ``job_dir/preview.mp4`` and yield the result again with it.

    With ``depth`` settings that ask for something (:attr:`DepthSettings.active`), the source's depth is estimated
    once (estimator ``auto``: Depth-Anything when its weights are on disk, else the offline portrait estimator) and
    two stages follow the keypoint recorder, as in ``fomm animate --export-depth``: the depth pass stage (the
    depth moved with each frame, view ``"depth"``) and, when an effect is set, the composite stage that reads that
    view. The view goes to ``job_dir/depth/`` and ``job_dir/depth-preview.mp4`` while the video is written, and
    ``job_dir/depth-pass.zip`` is packed before the result is yielded. With default settings none of this runs.

    With auto-crop, as ``fomm animate --auto-crop --export-depth``: the depth is estimated on the photo the colour
    is cut from, which is the checked photo (scaled down past ``limits.max_source_pixels``), never the upload, so the
    face box, the paste-back and the depth share one geometry; the depth pass pastes each moved face-crop depth back
    into the photo's depth with the colour's box and mask (the run's ``StageContext.paste``) and resizes it to the
    capped output size like the frame, so the compositing stage, the depth preview and the zip get one full-frame
    map per written frame (one eye's size for a stereo layout).

    ``source_path``/``driving_path`` must already have passed :func:`check_input_path` (and ``depth.plate`` too).
    """
    report(0.0, "checking the inputs")
    notes: list[str] = []
    source = check_source(source_path, limits, notes)
    info = check_driving(driving_path, limits)
    depth = depth if depth is not None and depth.active else None
    options = options.replace(progress=False, auto_crop=options.auto_crop and auto_crop_available())
    plate = None
    if depth is not None:
        _check_depth_job(model)
        if depth.plate is not None:
            plate_pixels = check_source(depth.plate, limits, notes, what="background plate")
    stereo = depth.stereo if depth is not None and depth.stereo != "none" else None
    options = options.replace(output_size=output_size_for(source, options, limits, notes, stereo=stereo,
                                                          model_size=getattr(model, "image_size", None)))
    recorder = KeypointRecorder(report)
    stages: list = [recorder]
    sinks: dict = {}
    names = {driving_path: "the driving video", source_path: "the source image", job_dir: "the job folder"}
    try:
        if depth is not None:
            from fomm.compositing.depth import DepthOptions, source_depth_stage

            if depth.plate is not None:
                # The engine reads the plate from a file: give it the checked (and, if need be, scaled-down) pixels,
                # not the upload, so what was checked is what is read.
                plate = job_dir / "plate.png"
                write_image(plate, plate_pixels)

            report(0.0, "estimating the depth of the photo")
            depth_stage, meta = source_depth_stage(source, DepthOptions(estimator="auto"))
            stages.append(depth_stage)
            sinks[depth_stage.view] = DepthOutputs(job_dir / "depth", job_dir / "depth-preview.mp4",
                                                   info.fps_fraction, _depth_meta(meta, source_path, driving_path))
            if depth.compositing:
                from fomm.compositing.stage import CompositeStage

                stages.append(CompositeStage(depth.composite_options(plate),
                                             device=getattr(model, "device", "cpu"), depth_view=depth_stage.view))
        if options.auto_crop:  # after the depth estimate: the face search runs inside animate_video
            report(0.0, "finding the face in the photo and the video")
        result = animate_video(model, source, driving_path, job_dir / "result.mp4", options, stages=stages,
                               view_sinks=sinks)
    except (InputError, OutputError) as err:
        # A video that probes fine can still end early while it is decoded; the message then names the file by
        # its server-side path, which means nothing to the user and tells a stranger about the server.
        raise type(err)(_hide_paths(str(err), names)) from None
    written = probe_video(result.output)  # what the file holds (H.264 pads odd sides), not what was asked
    w, h = written.display_size[1], written.display_size[0]
    audio = "with the driving audio" if result.has_audio else "no audio in the driving video"
    best = f", reference frame {result.best_frame}" if options.find_best_frame else ""
    three_d = ""
    depth_preview = depth_zip = None
    if depth is not None:
        three_d = f"; Depth & 3D: {_effects(depth)}, depth from the {meta['estimator']} estimator"
        depth_preview = job_dir / "depth-preview.mp4"
        depth_zip = zip_depth_pass(job_dir / "depth", job_dir / "depth-pass.zip")
    extra = "".join(f"; {n}" for n in notes)
    summary = f"{result.num_frames} frames, {w}x{h}, {result.fps:g} fps, {audio}{best}{three_d}{extra}"
    done = JobResult(video=result.output, preview=None, summary=summary, has_audio=result.has_audio,
                     depth_preview=depth_preview, depth_zip=depth_zip)
    yield done
    report(ANIMATE_SHARE, "preview")
    preview = job_dir / "preview.mp4"
    if depth is not None and depth.moves_pixels:
        # The written frame is another camera's view: the keypoints would mark the wrong spots, and a side-by-side
        # or top-bottom pair keeps its shape rather than being squeezed into a square panel.
        wide = max(2, round(256 * w / h) // 2 * 2)
        write_preview(source, driving_path, result.output, preview, info, (), report=report,
                      result_width=wide if wide != 256 else None)
    else:
        write_preview(source, driving_path, result.output, preview, info, recorder.keypoints, report=report)
    report(1.0, "done")
    yield dataclasses.replace(done, preview=preview)


def run_job(model: object, source_path: Path, driving_path: Path, job_dir: Path, options: JobOptions,
            limits: DemoLimits = DemoLimits(), progress: bool = True, report: Report = _no_report,
            depth: DepthSettings | None = None) -> JobResult:
    """:func:`job_steps` to the end: the result with its preview."""
    *_, last = job_steps(model, source_path, driving_path, job_dir, options, limits, report, depth)
    return last
