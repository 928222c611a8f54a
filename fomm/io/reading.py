"""Streaming video reading (PyAV): what every fomm command sees of a video.

:func:`probe_video`, :func:`iter_frames` and :class:`FrameReader` accept a video file (anything FFmpeg demuxes,
GIFs included), a still image (one frame) or a folder of PNG/JPG frames (natural sort order). Frames are decoded
one at a time, so memory does not grow with the video length. Frames come out as the viewer sees them:
non-square pixels (sample aspect ratio) are resampled to square ones and a rotation tag is applied. Every
reader in fomm goes through here, so a phone clip tagged "rotate 90" or an anamorphic DV file looks the same
to animation, cropping, dataset preparation and evaluation.

Timing: :func:`iter_frames` yields frames by index, as if the rate were constant. Phone and screen recordings often
have a variable frame rate (VFR: frames are stamped at irregular times, e.g. 30 fps that drops to 15 fps in the dark),
and writing such frames at ``i / fps`` drifts away from the driving audio (a clip alternating 1/30 s and 1/15 s gaps is
written 1/60 s early or late on every other frame, and a clip with one dropped frame is one frame late from then
on). :func:`frame_times` reads each frame's presentation time from the container (packet timestamps only, no decoding:
about 12 ms for a 350-frame 720p MP4) and says whether the stream is VFR, so writers can stamp frame ``i`` at its
source time (:meth:`fomm.io.writing.VideoWriter.write` ``pts``). A frame folder carries its times in
:data:`TIMESTAMPS_FILE` when it was written from VFR frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from fomm.errors import InputError
from fomm.io.image import IMAGE_EXTENSIONS, ImageTooLarge, check_pixels, read_image, resize_uint8

#: Frame rate assumed for a still image or a frame folder that does not record its own rate.
DEFAULT_FPS = Fraction(25)
#: Name of the frame-rate file a :class:`~fomm.io.writing.FrameFolderWriter` leaves beside its frames.
FPS_FILE = "fps.txt"
#: Name of the audio track a :class:`~fomm.io.writing.FrameFolderWriter` leaves beside its frames.
AUDIO_FILE = "audio.m4a"
#: Name of the per-frame times file (seconds from the first frame, one line per frame) a
#: :class:`~fomm.io.writing.FrameFolderWriter` leaves beside VFR frames; a PNG folder has no other timing.
TIMESTAMPS_FILE = "timestamps.txt"
#: A stream is VFR when some frame's time is further than this fraction of a frame interval from ``i / fps``.
#: 0.1 keeps millisecond-rounded timestamps (MKV/WebM store 1/1000 s, i.e. up to 0.5 ms = 1.5 % of a 30 fps
#: interval off) constant-rate, while any dropped or irregular frame (a whole or half interval off) counts as VFR.
VFR_TOLERANCE = 0.1

_FrameSize = tuple[int, int]


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns about a frame source.

    ``width``/``height`` are the stored (coded) size; ``display_width``/``display_height`` the size after the
    sample aspect ratio and rotation are applied, which is the size :func:`iter_frames` yields by default.
    ``fps_fraction`` is exact (e.g. ``Fraction(30000, 1001)``); ``fps`` is its float value. ``num_frames`` is
    exact when ``num_frames_exact`` (container index, frame folder, still image), else estimated from the
    duration. ``kind`` is ``"video"``, ``"image"`` or ``"folder"``. ``fps_known`` is False when the source
    has no rate of its own and :data:`DEFAULT_FPS` was assumed.
    """

    path: Path
    kind: Literal["video", "image", "folder"]
    width: int
    height: int
    display_width: int
    display_height: int
    fps: float
    fps_fraction: Fraction
    num_frames: int
    num_frames_exact: bool
    has_audio: bool
    duration: float
    sample_aspect_ratio: Fraction = Fraction(1)
    rotation: int = 0
    codec: str = ""
    fps_known: bool = True

    @property
    def display_size(self) -> _FrameSize:
        """``(h, w)`` of the frames :func:`iter_frames` yields without ``size``."""
        return self.display_height, self.display_width


def _natural_key(name: str) -> list:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def _folder_frames(p: Path) -> list[Path]:
    files = [f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
             and f.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if not files:
        raise InputError(f"{p}: folder has no PNG/JPG frames")
    return sorted(files, key=lambda f: _natural_key(f.name))


def _read_fps_file(p: Path) -> Fraction | None:
    f = p / FPS_FILE
    if not f.is_file():
        return None
    try:
        fps = Fraction(f.read_text().strip())
    except (ValueError, ZeroDivisionError, OSError):
        return None
    return fps if fps > 0 else None


def _check_exists(p: Path) -> None:
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty (0 bytes)")


def _is_image_path(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def _err_text(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def _open_input(p: Path) -> av.container.InputContainer:
    try:
        return av.open(str(p), mode="r", metadata_errors="replace")
    except av.error.FFmpegError as err:
        raise InputError(f"{p}: not a video, or the file is corrupt ({_err_text(err)})") from None


def _pick_video_stream(p: Path, container: av.container.InputContainer) -> av.video.stream.VideoStream:
    streams = [s for s in container.streams.video
               if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not streams:
        raise InputError(f"{p}: has no video stream")
    return streams[0]


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    return None


def _display_dims(width: int, height: int, sar: Fraction, rotation: int) -> _FrameSize:
    """``(display_w, display_h)``: the stored width is scaled by the SAR (height kept), then rotated."""
    dw = max(1, round(width * sar)) if sar > 0 else width
    dh = height
    if rotation % 180 != 0:
        dw, dh = dh, dw
    return dw, dh


def _frame_rotation(frame: av.VideoFrame) -> int:
    """Display rotation as a multiple of 90 degrees counter-clockwise (FFmpeg's display-matrix convention)."""
    try:
        rot = int(round(frame.rotation or 0))
    except (AttributeError, ValueError, TypeError):
        return 0
    return (round(rot / 90) * 90) % 360


def check_video_pixels(p: Path, width: int, height: int, what: str = "video frames are") -> None:
    """Refuse frames above fomm's image pixel limit (:data:`fomm.io.image.MAX_IMAGE_PIXELS`) before any is converted.

    FFmpeg itself accepts frames up to about 268 MP, and each is then converted to RGB (3 bytes a pixel) and
    resized: a 16384x16384 clip costs 800 MB per frame before fomm sees it. Videos get the same limit as images."""
    try:
        check_pixels(str(p), width, height)
    except ImageTooLarge as err:
        raise InputError(f"{p}: {what} {err.dimensions}, above fomm's limit of {err.limit / 1e6:.3g} MP; "
                         f"downscale it first (e.g. ffmpeg -i IN -vf scale=-2:1080 OUT)") from None


def _decoded_frames(p: Path, container: av.container.InputContainer,
                    stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
    """Decode ``stream`` frame by frame; FFmpeg errors become InputError naming the frame index, and a frame above
    the pixel limit (a stream may change size midway) is refused before it is converted."""
    index = 0
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                check_video_pixels(p, frame.width, frame.height, f"frame {index} is")
                yield frame
                index += 1
    except av.error.FFmpegError as err:
        raise InputError(f"{p}: video is corrupt at frame {index} ({_err_text(err)})") from None


@dataclass(frozen=True)
class FrameTimes:
    """When each frame of a source is shown, from :func:`frame_times`.

    ``times``: one entry per frame in presentation order, seconds from the first frame (``times[0] == 0``).
    ``fps``: the nominal (average) rate, as :attr:`VideoInfo.fps_fraction`. ``vfr``: some frame is more than
    :data:`VFR_TOLERANCE` of an interval away from ``i / fps``, so writing at a constant rate would move it. This is
    judged against the rate a writer would use, so a regular clip whose last frame is held longer counts as VFR too
    (its average rate is then below the true one: 20 frames at 25 fps with a 1/15 s last frame average 24.2 fps,
    and frame 19 written at ``19 / 24.2`` would be 25 ms late).
    ``end``: when the last frame stops showing (its time plus its duration), seconds from the first frame.
    """

    times: tuple[float, ...]
    fps: Fraction
    vfr: bool
    end: float


def _constant_times(n: int, fps: Fraction) -> FrameTimes:
    return FrameTimes(tuple(float(i / fps) for i in range(n)), fps, False, float(n / fps))


def _times_from(values: list[float], fps: Fraction, end: float | None = None) -> FrameTimes:
    """``values`` (seconds, any origin, presentation order) -> :class:`FrameTimes`; not increasing: constant rate."""
    if not values:
        return _constant_times(0, fps)
    t0 = values[0]
    times = tuple(v - t0 for v in values)
    if any(b <= a for a, b in zip(times, times[1:], strict=False)):
        # Repeated or unordered stamps cannot be written as they are; fall back to the index timeline.
        return _constant_times(len(times), fps)
    step = float(1 / fps)
    vfr = any(abs(t - i * step) > VFR_TOLERANCE * step for i, t in enumerate(times))
    last = times[-1] + step if end is None else max(end - t0, times[-1] + 1e-6)
    return FrameTimes(times, fps, vfr, last)


def _read_timestamps_file(p: Path, n: int) -> list[float] | None:
    f = p / TIMESTAMPS_FILE
    if not f.is_file():
        return None
    try:
        values = [float(line) for line in f.read_text().split()]
    except (ValueError, OSError):
        raise InputError(f"{f}: not a list of frame times in seconds (one number per line)") from None
    if len(values) != n or not all(np.isfinite(values)):
        raise InputError(f"{f}: has {len(values)} frame times for {n} frames (or a non-finite one); "
                         f"fix or delete it")
    return values


def frame_times(path: str | os.PathLike, max_frames: int | None = None) -> FrameTimes:
    """The presentation time of every frame of a video / still image / frame folder, and whether it is VFR.

    For a container video only the packets are read (no decoding). Packets marked discard (cut by an edit list)
    are skipped; a stream without timestamps (raw H.264, some AVI) or with repeated ones is reported as constant
    rate at :attr:`VideoInfo.fps_fraction`. A frame folder uses its :data:`TIMESTAMPS_FILE` when present.
    ``max_frames``: only the first frames (VFR is then judged on those).

    Raises:
        InputError: the source is unreadable, or a folder's timestamps file does not fit its frames.
    """
    info = probe_video(path)
    p, fps = info.path, info.fps_fraction
    limit = None if max_frames is None else max(0, int(max_frames))
    if info.kind == "image":
        return _constant_times(1 if limit is None else min(1, limit), fps)
    if info.kind == "folder":
        values = _read_timestamps_file(p, info.num_frames)
        if values is None:
            return _constant_times(info.num_frames if limit is None else min(info.num_frames, limit), fps)
        return _times_from(values[:limit], fps)
    stamps: list[tuple[int, int]] = []
    with _open_input(p) as container:
        stream = _pick_video_stream(p, container)
        tb = Fraction(stream.time_base)
        # The stream's duration is its presentation length (MP4: the edit list); a packet's duration is only a
        # decode-time step, which with B-frames ends the last frame shown up to a frame early.
        stream_end = None
        if stream.duration and stream.start_time is not None:
            stream_end = float((stream.start_time + stream.duration) * tb)
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                if packet.pts is None:
                    return _constant_times(info.num_frames if limit is None else min(info.num_frames, limit), fps)
                stamps.append((packet.pts, packet.duration or 0))
        except av.error.FFmpegError as err:
            raise InputError(f"{p}: video is corrupt ({_err_text(err)})") from None
    stamps.sort()
    end = None
    if limit is None or limit >= len(stamps):
        last_pts, last_dur = stamps[-1] if stamps else (0, 0)
        end = stream_end if stream_end is not None else float((last_pts + last_dur) * tb) if last_dur > 0 else None
    return _times_from([float(pts * tb) for pts, _ in stamps[:limit]], fps, end)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Inspect a video file, a still image or a folder of frames without decoding it all.

    The first frame is decoded to make sure the source is readable (a header-only or zero-frame video is
    rejected here rather than halfway through a run).

    Raises:
        InputError: missing, empty, not a video, corrupt, or without any decodable frame.
    """
    p = Path(path)
    _check_exists(p)
    if p.is_dir():
        frames = _folder_frames(p)
        first = read_image(frames[0], min_size=1)
        fps = _read_fps_file(p)
        fps_known = fps is not None
        fps = fps or DEFAULT_FPS
        h, w = first.shape[:2]
        return VideoInfo(path=p, kind="folder", width=w, height=h, display_width=w, display_height=h,
                         fps=float(fps), fps_fraction=fps, num_frames=len(frames), num_frames_exact=True,
                         has_audio=(p / AUDIO_FILE).is_file(), duration=float(len(frames) / fps),
                         codec=frames[0].suffix.lower().lstrip("."), fps_known=fps_known)
    if _is_image_path(p):
        img = read_image(p, min_size=1)
        h, w = img.shape[:2]
        return VideoInfo(path=p, kind="image", width=w, height=h, display_width=w, display_height=h,
                         fps=float(DEFAULT_FPS), fps_fraction=DEFAULT_FPS, num_frames=1, num_frames_exact=True,
                         has_audio=False, duration=float(1 / DEFAULT_FPS), codec="image", fps_known=False)

    with _open_input(p) as container:
        stream = _pick_video_stream(p, container)
        if stream.codec_context.width and stream.codec_context.height:  # from the header: refused before decoding
            check_video_pixels(p, stream.codec_context.width, stream.codec_context.height)
        first = next(_decoded_frames(p, container, stream), None)
        if first is None:
            raise InputError(f"{p}: video has no decodable frames")
        cc = stream.codec_context
        width, height = cc.width or first.width, cc.height or first.height
        sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
        sar = Fraction(sar) if sar else Fraction(1)
        rotation = _frame_rotation(first)
        fps = _stream_fps(stream)
        fps_known = fps is not None
        fps = fps or DEFAULT_FPS
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        if stream.frames and stream.frames > 0:
            num_frames, exact = int(stream.frames), True
        else:
            num_frames, exact = max(1, round((duration or 0.0) * fps)), False
        if duration is None:
            duration = float(num_frames / fps)
        has_audio = len(container.streams.audio) > 0
        dw, dh = _display_dims(width, height, sar, rotation)
        check_video_pixels(p, dw, dh, "video frames are shown at")  # an extreme aspect ratio inflates the display size
        return VideoInfo(path=p, kind="video", width=width, height=height, display_width=dw, display_height=dh,
                         fps=float(fps), fps_fraction=fps, num_frames=num_frames, num_frames_exact=exact,
                         has_audio=has_audio, duration=duration, sample_aspect_ratio=sar, rotation=rotation,
                         codec=cc.name or "", fps_known=fps_known)


def _frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> uint8 ``[H, W, 3]`` at the stored size, using the frame's colour tags.

    Untagged HD video is BT.709 in practice (what players assume); swscale would otherwise use BT.601.
    """
    kwargs = {}
    if frame.colorspace == 2 and frame.height >= 720:  # AVCOL_SPC_UNSPECIFIED
        kwargs["src_colorspace"] = av.video.reformatter.Colorspace.ITU709
    if frame.color_range in (1, 2):
        kwargs["src_color_range"] = frame.color_range
    return frame.to_ndarray(format="rgb24", **kwargs)


def _finish(img: np.ndarray, rotation: int, target: _FrameSize) -> np.ndarray:
    if rotation:
        img = np.rot90(img, k=rotation // 90)
    return np.ascontiguousarray(resize_uint8(np.ascontiguousarray(img), target))


def iter_frames(path: str | os.PathLike, size: _FrameSize | None = None, *,
                max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of a video / still image / frame folder one at a time.

    Args:
        path: video file, image file (one frame) or folder of PNG/JPG frames (natural sort order).
        size: ``(h, w)`` to resize every frame to (anti-aliased; aspect ratio not preserved, crop first if
            that matters); ``None`` yields :attr:`VideoInfo.display_size` frames (SAR and rotation applied).
        max_frames: stop after this many frames.
    Yields:
        uint8 ``[h, w, 3]`` RGB arrays (a fresh array each time).
    Raises:
        InputError: the source is unreadable, a frame cannot be decoded (the message gives its index),
            a folder frame has a different size from the first, or the file ends early (truncated).
    """
    info = probe_video(path)
    p = info.path
    target = tuple(size) if size is not None else info.display_size
    limit = info.num_frames if max_frames is None else max(0, int(max_frames))
    if info.kind == "image":
        if limit > 0:
            yield _finish(read_image(p, min_size=1), 0, target)
        return
    if info.kind == "folder":
        for i, f in enumerate(_folder_frames(p)):
            if max_frames is not None and i >= limit:
                return
            img = read_image(f, min_size=1)
            if img.shape[:2] != (info.height, info.width):
                raise InputError(f"{f}: frame {i} is {img.shape[1]}x{img.shape[0]}, but the first frame of "
                                 f"{p} is {info.width}x{info.height}; all frames must have the same size")
            yield _finish(img, 0, target)
        return

    count = 0
    with _open_input(p) as container:
        stream = _pick_video_stream(p, container)
        stream.thread_type = "AUTO"
        for frame in _decoded_frames(p, container, stream):
            if max_frames is not None and count >= limit:
                return
            yield _finish(_frame_to_rgb(frame), _frame_rotation(frame), target)
            count += 1
    # The container index says how many frames exist; a file cut short decodes fewer without any error.
    if max_frames is None and info.num_frames_exact and count < info.num_frames - 2:
        raise InputError(f"{p}: video ends early at frame {count} of {info.num_frames} (truncated or corrupt file)")


class FrameReader:
    """Random access to the frames of a video file, still image or frame folder.

    ``read(indices)`` returns uint8 ``[h, w, 3]`` RGB frames exactly as :func:`iter_frames` yields them at the
    same indices (display size: SAR and rotation applied, or ``size`` ``(h, w)`` when given). For a container
    video it seeks to the keyframe at or before each wanted frame and decodes forward only as far as needed;
    :attr:`decoded_frames` counts the frames the last :meth:`read` decoded. Frame ``i`` is the one whose
    presentation time is closest to ``start + i / fps`` (exact for constant-frame-rate files, approximate for
    variable-rate ones). ``num_frames`` is exact: when the container has no frame count the packets are counted
    (no decoding).

    Raises:
        InputError: the source is unreadable (here or in :meth:`read`), or an index is out of range.
    """

    #: A wanted frame at most this many frames after the last decoded one is reached by decoding on, not seeking.
    FORWARD_DECODE_LIMIT = 48

    def __init__(self, path: str | os.PathLike, size: _FrameSize | None = None) -> None:
        self.info = probe_video(path)
        self.path = self.info.path
        self.frame_hw: _FrameSize = tuple(size) if size is not None else self.info.display_size
        self.num_frames = self.info.num_frames
        self.decoded_frames = 0
        self._files = _folder_frames(self.path) if self.info.kind == "folder" else None
        self._start = 0
        self._time_base = Fraction(1)
        if self.info.kind == "video":
            with _open_input(self.path) as container:
                stream = _pick_video_stream(self.path, container)
                self._stream_index = stream.index
                self._time_base = Fraction(stream.time_base)
                self._start = stream.start_time or 0
                if not self.info.num_frames_exact:
                    # The duration estimate can be off by a frame or two; counting packets decodes nothing.
                    try:
                        self.num_frames = sum(1 for pk in container.demux(stream) if pk.pts is not None)
                    except av.error.FFmpegError as err:
                        raise InputError(f"{self.path}: video is corrupt ({_err_text(err)})") from None

    def _index_of(self, pts: int) -> int:
        return int(round((pts - self._start) * self._time_base * self.info.fps_fraction))

    def _pts_of(self, index: int) -> int:
        return self._start + int(round(index / self.info.fps_fraction / self._time_base))

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        check_video_pixels(self.path, frame.width, frame.height, "a frame is")
        return _finish(_frame_to_rgb(frame), _frame_rotation(frame), self.frame_hw)

    def read(self, indices: list[int] | tuple[int, ...] | np.ndarray) -> list[np.ndarray]:
        """Frames at ``indices`` (any order, repeats allowed), as uint8 ``[h, w, 3]`` arrays."""
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < self.num_frames]
        if bad:
            raise InputError(f"{self.path}: frame {bad[0]} is out of range (the video has {self.num_frames} frames)")
        self.decoded_frames = 0
        if self.info.kind == "image":
            img = _finish(read_image(self.path, min_size=1), 0, self.frame_hw)
            return [img.copy() for _ in idx]
        if self.info.kind == "folder":
            out = []
            for i in idx:
                img = read_image(self._files[i], min_size=1)
                self.decoded_frames += 1
                out.append(_finish(img, 0, self.frame_hw))
            return out
        wanted = set(idx)
        got: dict[int, np.ndarray] = {}
        target = -1
        with _open_input(self.path) as container:
            stream = container.streams[self._stream_index]
            stream.thread_type = "AUTO"
            decoder = None
            pos = -1  # index of the last frame the current decoder produced
            last = None
            try:
                for target in sorted(wanted):
                    # A short step forward is cheaper to decode through than to seek (the keyframe before the
                    # target is often the one already decoded from); otherwise seek to the keyframe at or
                    # before the target and decode forward only from there.
                    if decoder is None or not pos < target <= pos + self.FORWARD_DECODE_LIMIT:
                        container.seek(self._pts_of(target), stream=stream, backward=True, any_frame=False)
                        decoder = container.decode(stream)
                        last = None
                    for frame in decoder:
                        self.decoded_frames += 1
                        if frame.pts is None:
                            continue
                        i = self._index_of(frame.pts)
                        pos = i
                        if i in wanted and i not in got:
                            got[i] = self._rgb(frame)
                        last = frame
                        if i >= target:
                            break
                    else:
                        decoder = None
                    if target not in got and last is not None:
                        # The stream ended before the counted length: use its last frame.
                        got[target] = self._rgb(last)
            except av.error.FFmpegError as err:
                raise InputError(f"{self.path}: video is corrupt near frame {target} ({_err_text(err)})") from None
        missing = [i for i in idx if i not in got]
        if missing:
            raise InputError(f"{self.path}: frames {missing[:5]} could not be decoded")
        out, seen = [], set()
        for i in idx:  # a repeated index gets its own copy, so callers may modify frames in place
            out.append(got[i].copy() if i in seen else got[i])
            seen.add(i)
        return out


def read_frames_at(path: str | os.PathLike, indices: list[int] | tuple[int, ...] | np.ndarray,
                   size: _FrameSize | None = None) -> list[np.ndarray]:
    """The frames at ``indices`` of a video / still image / frame folder, without decoding the rest.

    One-shot :class:`FrameReader`: returns uint8 ``[h, w, 3]`` RGB frames equal to :func:`iter_frames`'s at the
    same indices (display size, or ``size`` ``(h, w)``). Raises :class:`InputError` (unreadable source, index out
    of range).
    """
    return FrameReader(path, size).read(indices)
