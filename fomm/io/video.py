"""Streaming video reading and writing (PyAV).

Reading: :func:`probe_video` and :func:`iter_frames` accept a video file (anything FFmpeg demuxes, GIFs
included), a still image (one frame) or a folder of PNG/JPG frames (natural sort order). Frames are decoded
one at a time, so memory does not grow with the video length. Frames come out as the viewer sees them:
non-square pixels (sample aspect ratio) are resampled to square ones and a rotation tag is applied.

Writing: :class:`VideoWriter` streams uint8 RGB frames into an H.264 MP4 (yuv420p, BT.709, ``+faststart``)
with an exact fractional frame rate and optionally the audio of another file; :class:`FrameFolderWriter`
writes lossless PNG frames. Both write to a temporary name beside the target and rename it on success, so an
interrupted run never leaves a half-written output. :func:`open_writer` picks one from the output path.
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

from fomm.errors import InputError, OutputError
from fomm.io.atomic import atomic_dir, atomic_file
from fomm.io.image import IMAGE_EXTENSIONS, read_image, resize_uint8

#: Frame rate assumed for a still image or a frame folder that does not record its own rate.
DEFAULT_FPS = Fraction(25)
#: Containers :class:`VideoWriter` writes (all hold H.264 + AAC with an exact rational frame rate).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov")
#: Audio codecs that may be copied into MP4 unchanged; anything else is transcoded to AAC.
MP4_AUDIO_COPY_CODECS = ("aac", "mp3", "alac", "ac3", "eac3")
#: Name of the frame-rate file a :class:`FrameFolderWriter` leaves beside its frames.
FPS_FILE = "fps.txt"
AUDIO_FILE = "audio.m4a"
_FRAME_NAME = re.compile(r"^\d{6}\.png$")

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


# ----------------------------------------------------------------------------------------------- reading


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


def _decoded_frames(p: Path, container: av.container.InputContainer,
                    stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
    """Decode ``stream`` frame by frame; FFmpeg errors become InputError naming the frame index."""
    index = 0
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                yield frame
                index += 1
    except av.error.FFmpegError as err:
        raise InputError(f"{p}: video is corrupt at frame {index} ({_err_text(err)})") from None


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


# ----------------------------------------------------------------------------------------------- writing


def to_fraction(fps: float | int | str | Fraction) -> Fraction:
    """Exact frame rate: ``25`` -> 25, ``"30000/1001"`` -> 30000/1001, ``29.97002997`` -> 30000/1001.

    Floats are reduced to the nearest fraction with denominator <= 1001, which recovers the NTSC rates.
    """
    try:
        if isinstance(fps, float):
            out = Fraction(fps).limit_denominator(1001)
        else:
            out = Fraction(fps)
    except (ValueError, ZeroDivisionError, TypeError):
        raise OutputError(f"invalid frame rate {fps!r}; give a positive number such as 25 or 30000/1001") from None
    if out <= 0:
        raise OutputError(f"invalid frame rate {fps!r}; give a positive number such as 25 or 30000/1001")
    return out


def _is_folder_target(path: str | os.PathLike) -> bool:
    s = os.fspath(path)
    return s.endswith("/") or s.endswith(os.sep) or Path(s).is_dir()


def _is_frame_folder(p: Path) -> bool:
    """True when ``p`` holds only what a :class:`FrameFolderWriter` writes (safe to replace)."""
    return all(_FRAME_NAME.match(f.name) or f.name in (FPS_FILE, AUDIO_FILE) for f in p.iterdir())


def _check_parent_writable(p: Path) -> None:
    anc = p.parent if str(p.parent) else Path(".")
    while not anc.exists():
        if anc.parent == anc:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"{p}: cannot create the output folder because {anc} is a file")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: folder {anc} is not writable; choose another output location")


def check_output_path(path: str | os.PathLike, kind: Literal["video", "image"] = "video") -> Path:
    """Fail fast, before any heavy work, when ``path`` cannot receive the output.

    ``kind="video"``: an MP4/M4V/MOV file, or a PNG frame folder when the path ends with ``/`` or is an
    existing folder (which must be empty or a previous frame folder). ``kind="image"``: an image file.
    Missing parent folders are fine if they can be created (the writers create them).

    Returns:
        the path as a :class:`Path`.
    Raises:
        OutputError: unknown extension, a folder where a file is expected (or the reverse), a parent that is a
            file, or a folder that is not writable.
    """
    p = Path(path)
    if kind == "video" and _is_folder_target(path):
        if p.exists() and not p.is_dir():
            raise OutputError(f"{p}: exists and is not a folder; cannot write PNG frames into it")
        if p.is_dir():
            if any(p.iterdir()) and not _is_frame_folder(p):
                raise OutputError(f"{p}: folder is not empty; give an empty or new folder for the PNG frames")
            if not os.access(p, os.W_OK | os.X_OK):
                raise OutputError(f"{p}: folder is not writable; choose another output location")
        _check_parent_writable(p)
        return p
    if p.is_dir():
        hint = "e.g. out.mp4, or end the path with / to write PNG frames" if kind == "video" else "e.g. out.png"
        raise OutputError(f"{p}: is a folder; give a file name ({hint})")
    allowed = VIDEO_EXTENSIONS if kind == "video" else IMAGE_EXTENSIONS
    if p.suffix.lower() not in allowed:
        extra = " or a folder ending with /" if kind == "video" else ""
        raise OutputError(f"{p}: unknown output extension {p.suffix!r}; use {', '.join(allowed)}{extra}")
    _check_parent_writable(p)
    return p


def _video_codec() -> str:
    """libx264 when this PyAV build has it (the PyPI wheels do); FFmpeg's native mpeg4 otherwise."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class _AudioCopier:
    """Copies the first audio stream of ``src`` into ``out``, remuxing MP4-compatible codecs and
    transcoding anything else to AAC; :meth:`pump` writes everything before a given time (seconds on
    the output's clock), so audio interleaves with the video as it is written and stops at its end.

    ``start``/``end``: the part of the source's audio to copy, in seconds from the source's first video frame
    (``end=None``: up to the end of the output video); output time 0 is source time ``start``. With
    ``start > 0`` whole packets/frames that begin before ``start`` are dropped, so the copy starts at most one
    audio packet (about 21-23 ms for AAC) late, never early."""

    def __init__(self, src: Path, out: av.container.OutputContainer, start: float = 0.0,
                 end: float | None = None) -> None:
        self.src = src
        self.inp = _open_input(src)
        self.ist = self.inp.streams.audio[0]
        video = [s for s in self.inp.streams.video if s.start_time is not None]
        # Align audio with the source's first video frame, which is frame 0 of the output.
        self.offset = float(video[0].start_time * video[0].time_base) if video else 0.0
        self.start = max(0.0, float(start))
        self.stop = None if end is None else float(end) - self.start
        self.offset += self.start
        if self.start > 1.0:
            # Jump near the start instead of demuxing (or decoding) all the audio before it.
            try:
                self.inp.seek(int((self.offset - 1.0) * av.time_base), backward=True)
            except av.error.FFmpegError:
                pass
        self.copy = self.ist.codec_context.name in MP4_AUDIO_COPY_CODECS
        if self.copy:
            self.ost = out.add_stream_from_template(self.ist)
        else:
            rate = self.ist.codec_context.sample_rate or 48000
            self.ost = out.add_stream("aac", rate=rate)
            # Channel layouts of PCM/WAV inputs are often unnamed ("2 channels"), which the AAC encoder rejects.
            layout = self.ist.codec_context.layout
            n = layout.nb_channels if layout is not None else 2
            self.ost.layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(n, "stereo")
        self.out = out
        self._packets = self.inp.demux(self.ist)
        self._pending: list = []  # decoded frames or packets read ahead of the current limit
        self._exhausted = False

    def _next_item(self):
        if self._pending:
            return self._pending.pop(0)
        while not self._exhausted:
            try:
                packet = next(self._packets)
            except StopIteration:
                self._exhausted = True
                return None
            except av.error.FFmpegError:
                # Damaged audio tail: keep the video and what audio was good.
                self._exhausted = True
                return None
            if self.copy:
                if packet.size == 0 or (packet.pts is None and packet.dts is None):
                    continue
                return packet
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            if frames:
                self._pending.extend(frames[1:])
                return frames[0]
        return None

    def _time(self, item) -> float | None:
        ts = item.pts if item.pts is not None else getattr(item, "dts", None)
        if ts is None or item.time_base is None:
            return None
        return float(ts * item.time_base) - self.offset

    def pump(self, until: float) -> None:
        if self.stop is not None:
            until = min(until, self.stop)
        while True:
            item = self._next_item()
            if item is None:
                return
            t = self._time(item)
            if t is not None and t >= until:
                self._pending.insert(0, item)
                return
            if t is not None and (t < -0.5 or (self.start > 0 and t < -1e-6)):
                continue  # audio well before the first video frame, or before the requested start
            if self.copy:
                shift = round(self.offset / item.time_base) if self.offset else 0
                if item.pts is not None:
                    item.pts -= shift
                if item.dts is not None:
                    item.dts -= shift
                item.stream = self.ost
                self.out.mux(item)
            else:
                if t is not None:
                    item.pts = round(max(t, 0.0) * self.ost.codec_context.sample_rate)
                    item.time_base = Fraction(1, self.ost.codec_context.sample_rate)
                self.out.mux(self.ost.encode(item))

    def finish(self, until: float) -> None:
        self.pump(until)
        if not self.copy:
            self.out.mux(self.ost.encode(None))
        self.close()

    def close(self) -> None:
        self.inp.close()


def _has_audio(src: Path) -> bool:
    _check_exists(src)
    if src.is_dir() or _is_image_path(src):
        return False
    with _open_input(src) as c:
        return len(c.streams.audio) > 0


def _check_audio_range(start: float, end: float | None) -> tuple[float, float | None]:
    start = float(start)
    if not start >= 0:
        raise ValueError(f"audio_start must be >= 0 seconds, got {start}")
    if end is not None and not float(end) > start:
        raise ValueError(f"audio_end ({end}) must be after audio_start ({start})")
    return start, None if end is None else float(end)


class _AtomicWriterBase:
    """Shared context-manager behaviour: ``close()`` on success, ``abort()`` (remove temp output) on error."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> Path:  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @staticmethod
    def _check_frame(frame: np.ndarray) -> np.ndarray:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            desc = f"{frame.dtype} {tuple(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"expected a uint8 [H, W, 3] RGB frame, got {desc}")
        return frame


class VideoWriter(_AtomicWriterBase):
    """Stream uint8 RGB frames into an H.264 MP4 (or MOV/M4V) at an exact frame rate.

    Usage::

        with VideoWriter("out.mp4", fps=info.fps_fraction, audio_from="driving.mp4") as w:
            for frame in frames:      # uint8 [H, W, 3]
                w.write(frame)

    * Codec: libx264 (``crf``, ``preset``), yuv420p, BT.709 limited range, ``+faststart``; FFmpeg's mpeg4
      if the PyAV build lacks libx264 (:attr:`codec` says which).
    * Odd widths/heights (yuv420p needs even ones) are padded by one row/column repeating the edge pixels;
      :attr:`size` is the encoded ``(h, w)``.
    * Frame ``i`` is stamped ``i / fps`` in a ``1/fps`` time base, so 25 and 30000/1001 are kept exactly.
    * ``audio_from``: if that file has an audio stream it is copied (AAC/MP3/ALAC/AC-3 remuxed untouched,
      other codecs transcoded to AAC), aligned to its first video frame and cut at the end of the video.
      ``audio_start``/``audio_end`` (seconds from that first frame) copy only that part, e.g. ``start / fps``
      for a clip cut out of the source from frame ``start`` on.
    * Output goes to a hidden temp file in the target folder, renamed over ``path`` by :meth:`close`; on an
      exception inside the ``with`` block (or :meth:`abort`) the temp file is deleted.
    """

    def __init__(self, path: str | os.PathLike, fps: float | int | str | Fraction,
                 audio_from: str | os.PathLike | None = None, *, crf: int = 18, preset: str = "medium",
                 audio_start: float = 0.0, audio_end: float | None = None) -> None:
        self.path = check_output_path(path, kind="video")
        if _is_folder_target(path):
            raise OutputError(f"{self.path}: is a folder; use FrameFolderWriter/open_writer for PNG frames")
        self.fps = to_fraction(fps)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.audio_start, self.audio_end = _check_audio_range(audio_start, audio_end)
        # Validate the audio source now, not after minutes of rendering.
        self._want_audio = self.audio_from is not None and _has_audio(self.audio_from)
        self.crf = int(crf)
        self.preset = preset
        self.codec = _video_codec()
        self.frames_written = 0
        self.size: _FrameSize | None = None
        self._input_size: _FrameSize | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._audio: _AudioCopier | None = None
        # The suffix keeps the container's extension, which PyAV reads the format from.
        self._out = atomic_file(self.path, suffix=f".part{self.path.suffix}")
        self._tmp: str | None = None
        self._closed = False

    @property
    def has_audio(self) -> bool:
        """Whether the output gets an audio track."""
        return self._want_audio

    def _open(self, h: int, w: int) -> None:
        try:
            self._tmp = str(self._out.begin())
        except OSError as err:
            raise OutputError(f"{self.path}: cannot write here ({_err_text(err)})") from None
        fmt = "mov" if self.path.suffix.lower() == ".mov" else "mp4"
        self._container = av.open(self._tmp, mode="w", format=fmt, options={"movflags": "+faststart"})
        eh, ew = h + h % 2, w + w % 2
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = ew, eh, "yuv420p"
        stream.codec_context.time_base = 1 / self.fps
        cc = stream.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1  # BT.709, limited range
        if self.codec == "libx264":
            stream.options = {"crf": str(self.crf), "preset": self.preset}
        else:
            cc.bit_rate = int(max(2_000_000, ew * eh * float(self.fps) * 0.4))
        self._stream = stream
        self.size = (eh, ew)
        self._input_size = (h, w)
        if self._want_audio:
            self._audio = _AudioCopier(self.audio_from, self._container, self.audio_start, self.audio_end)

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 ``[H, W, 3]`` RGB frame (every frame must have the first frame's size)."""
        if self._closed:
            raise RuntimeError("VideoWriter is closed")
        frame = self._check_frame(frame)
        h, w = frame.shape[:2]
        if self._container is None:
            self._open(h, w)
        elif (h, w) != self._input_size:
            raise ValueError(f"frame {self.frames_written} is {w}x{h}, but the video is "
                             f"{self._input_size[1]}x{self._input_size[0]}")
        eh, ew = self.size
        if (eh, ew) != (h, w):
            frame = np.pad(frame, ((0, eh - h), (0, ew - w), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf = vf.reformat(format="yuv420p", dst_colorspace=av.video.reformatter.Colorspace.ITU709,
                         dst_color_range=av.video.reformatter.ColorRange.MPEG)
        vf.pts = self.frames_written
        vf.time_base = 1 / self.fps
        try:
            self._container.mux(self._stream.encode(vf))
        except OSError as err:
            raise OutputError(f"{self.path}: writing failed ({_err_text(err)})") from None
        self.frames_written += 1
        if self._audio is not None:
            self._audio.pump(self.frames_written / self.fps)

    def close(self) -> Path:
        """Flush the encoder, finish the audio and move the file into place. Returns the output path.

        Raises:
            OutputError: no frame was written, or the file could not be finalised.
        """
        if self._closed:
            return self.path
        if self._container is None:
            self._closed = True
            raise OutputError(f"{self.path}: no frames were written, so no video was created")
        try:
            self._container.mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.finish(self.frames_written / self.fps)
                self._audio = None
            self._container.close()
            self._container = None
            self._out.commit()
        except BaseException as err:
            self.abort()
            if isinstance(err, OSError):
                raise OutputError(f"{self.path}: writing failed ({_err_text(err)})") from None
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything written so far (nothing is left on disk)."""
        self._closed = True
        if self._audio is not None:
            try:
                self._audio.close()
            except Exception:
                pass
            self._audio = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
        self._out.discard()


class FrameFolderWriter(_AtomicWriterBase):
    """Write frames losslessly as ``000000.png``, ``000001.png``, ... into a folder.

    Same interface as :class:`VideoWriter`. The folder also receives ``fps.txt`` (the exact rate, read back
    by :func:`probe_video`) and, when ``audio_from`` has audio, ``audio.m4a`` cut to the video's length.
    Frames go to a hidden temp folder beside the target, which replaces the target on :meth:`close`; an
    existing target must be empty or a previous frame folder.
    """

    def __init__(self, path: str | os.PathLike, fps: float | int | str | Fraction,
                 audio_from: str | os.PathLike | None = None, *, compress_level: int = 3,
                 audio_start: float = 0.0, audio_end: float | None = None) -> None:
        self.path = Path(os.fspath(path).rstrip("/" + os.sep) or os.fspath(path))
        check_output_path(os.fspath(self.path) + "/", kind="video")
        self.fps = to_fraction(fps)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.audio_start, self.audio_end = _check_audio_range(audio_start, audio_end)
        self._want_audio = self.audio_from is not None and _has_audio(self.audio_from)
        self.compress_level = compress_level
        self.frames_written = 0
        self.size: _FrameSize | None = None
        self._out = atomic_dir(self.path, check_existing=_check_replaceable_frame_folder)
        self._tmpdir: str | None = None
        self._closed = False

    @property
    def has_audio(self) -> bool:
        return self._want_audio

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 ``[H, W, 3]`` RGB frame (every frame must have the first frame's size)."""
        from PIL import Image

        if self._closed:
            raise RuntimeError("FrameFolderWriter is closed")
        frame = self._check_frame(frame)
        if self._tmpdir is None:
            try:
                self._tmpdir = str(self._out.begin())
            except OSError as err:
                raise OutputError(f"{self.path}: cannot write here ({_err_text(err)})") from None
            self.size = frame.shape[:2]
        elif frame.shape[:2] != self.size:
            raise ValueError(f"frame {self.frames_written} is {frame.shape[1]}x{frame.shape[0]}, but the first "
                             f"frame is {self.size[1]}x{self.size[0]}")
        out = os.path.join(self._tmpdir, f"{self.frames_written:06d}.png")
        try:
            Image.fromarray(np.ascontiguousarray(frame)).save(out, format="PNG", compress_level=self.compress_level)
        except OSError as err:
            raise OutputError(f"{self.path}: writing frame {self.frames_written} failed ({_err_text(err)})") from None
        self.frames_written += 1

    def _write_audio(self) -> None:
        target = os.path.join(self._tmpdir, AUDIO_FILE)
        with av.open(target, mode="w", format="ipod") as out:
            copier = _AudioCopier(self.audio_from, out, self.audio_start, self.audio_end)
            copier.finish(self.frames_written / self.fps)

    def close(self) -> Path:
        """Write ``fps.txt`` (and ``audio.m4a``) and move the folder into place. Returns the folder path."""
        if self._closed:
            return self.path
        if self._tmpdir is None:
            self._closed = True
            raise OutputError(f"{self.path}: no frames were written, so no frame folder was created")
        try:
            Path(self._tmpdir, FPS_FILE).write_text(f"{self.fps.numerator}/{self.fps.denominator}\n")
            if self._want_audio:
                self._write_audio()
            self._out.commit()
        except BaseException as err:
            self.abort()
            if isinstance(err, OSError):
                raise OutputError(f"{self.path}: writing failed ({_err_text(err)})") from None
            raise
        self._tmpdir = None
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything written so far."""
        self._closed = True
        self._out.discard()
        self._tmpdir = None


def _check_replaceable_frame_folder(p: Path) -> None:
    """Re-checked when the frames are committed: the target may have changed since the writer was created."""
    if not p.is_dir() or not _is_frame_folder(p):
        raise OutputError(f"{p}: is no longer an empty or frame folder; not replacing it")


def open_writer(path: str | os.PathLike, fps: float | int | str | Fraction,
                audio_from: str | os.PathLike | None = None, **kwargs) -> VideoWriter | FrameFolderWriter:
    """A :class:`FrameFolderWriter` when ``path`` ends with ``/`` or is an existing folder, else a
    :class:`VideoWriter` (``.mp4``/``.m4v``/``.mov``). Extra keyword arguments go to the writer."""
    if _is_folder_target(path):
        return FrameFolderWriter(path, fps, audio_from, **kwargs)
    return VideoWriter(path, fps, audio_from, **kwargs)
