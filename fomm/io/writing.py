"""Streaming video writing (PyAV): one sink interface for every frame producer.

:class:`VideoWriter` streams uint8 RGB frames into an H.264 MP4 (yuv420p, BT.709, ``+faststart``) with an exact
fractional frame rate and optionally the audio of another file; :class:`FrameFolderWriter` writes lossless PNG
frames; :class:`MemorySink` keeps the frames in memory (tests, in-process consumers). All three satisfy the
:class:`FrameSink` protocol, so a producer writes frames without knowing where they go, and :func:`open_writer`
picks one from the output path. The file writers write to a temporary name beside the target and rename it on success
(:mod:`fomm.io.atomic`), so an interrupted run never leaves a half-written output.

Timing: ``write(frame)`` places frame ``i`` at ``i / fps``. ``write(frame, pts=seconds)`` places it at its own time
instead, which is how a variable-frame-rate driving video keeps its sync with its audio (see
:func:`fomm.io.reading.frame_times`). A :class:`VideoWriter` opened with ``time_base=VFR_TIME_BASE`` (what
:func:`open_writer` does with ``vfr=True``) keeps such times to 1/90000 s; a default one keeps its exact ``1/fps`` time
base, so constant-rate output is byte-for-byte what it was before timestamps existed. A PNG folder cannot hold times, so
:class:`FrameFolderWriter` writes them to ``timestamps.txt`` beside the frames when they are not ``i / fps``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import av
import numpy as np

from fomm.errors import OutputError
from fomm.io.atomic import atomic_dir, atomic_file
from fomm.io.audio import AudioCopier, check_audio_range, source_has_audio
from fomm.io.image import IMAGE_EXTENSIONS
from fomm.io.reading import AUDIO_FILE, FPS_FILE, TIMESTAMPS_FILE, VFR_TOLERANCE, _err_text, _FrameSize

#: Containers :class:`VideoWriter` writes (all hold H.264 + AAC with an exact rational frame rate). Matroska is here
#: for stereo 3D: its StereoMode element (the ``stereo_mode`` stream tag) tells players how the eyes are packed.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv")
_FRAME_NAME = re.compile(r"^\d{6}\.png$")
#: Time base of a :class:`VideoWriter` that keeps per-frame times: the MPEG 90 kHz clock, a whole multiple of every
#: common rate (24, 25, 30000/1001, 50, 60 fps) and of milliseconds, so VFR times from MP4 and MKV sources survive
#: exactly or within 6 microseconds.
VFR_TIME_BASE = Fraction(1, 90000)


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
    return all(_FRAME_NAME.match(f.name) or f.name in (FPS_FILE, AUDIO_FILE, TIMESTAMPS_FILE) for f in p.iterdir())


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


@runtime_checkable
class FrameSink(Protocol):
    """Where a producer's frames go: a video file, a PNG folder, memory.

    ``write(frame, pts=None)`` appends one uint8 ``[H, W, 3]`` RGB frame (every frame the first frame's size; a wrong
    frame is a ValueError), shown at ``pts`` seconds when given (increasing), else ``1/fps`` after the previous
    one. ``close()`` commits everything written and returns the output path (``None`` when there is no file, as for
    :class:`MemorySink`); ``abort()`` discards it, leaving nothing behind. ``has_audio`` says whether the output gets
    a sound track. Used as a context manager it commits on a clean exit and aborts when the block raises.
    """

    @property
    def has_audio(self) -> bool: ...

    def write(self, frame: np.ndarray, pts: float | None = None) -> None: ...

    def close(self) -> Path | None: ...

    def abort(self) -> None: ...

    def __enter__(self) -> FrameSink: ...

    def __exit__(self, exc_type, exc, tb) -> None: ...


class SinkBase:
    """What every sink here shares: the context manager (commit on a clean exit, abort otherwise), the frame and
    timestamp checks, and the close of the sinks that write a file or folder atomically (:meth:`_commit`).
    Also the base of :class:`fomm.compositing.depth.DepthFolderWriter`."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> Path | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _commit(self, started: bool, nothing: str, finish: Callable[[], None]) -> Path:
        """Close a sink that writes ``self.path`` through ``self._out`` (an :func:`~fomm.io.atomic.atomic_file` or
        :func:`~fomm.io.atomic.atomic_dir`): run ``finish`` (flush the encoder, write sidecars), then move the result
        into place. Closing twice returns the path again; a sink that was never ``started`` has nothing to commit
        (``nothing`` says so, in an :class:`OutputError`); any failure aborts first, so nothing half-written stays,
        and an OSError becomes one :class:`OutputError` line."""
        if self._closed:
            return self.path
        if not started:
            self._closed = True
            raise OutputError(f"{self.path}: {nothing}")
        try:
            finish()
            self._out.commit()
        except BaseException as err:
            self.abort()
            if isinstance(err, OSError):
                raise OutputError(f"{self.path}: writing failed ({_err_text(err)})") from None
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @staticmethod
    def _check_pts(pts: float | Fraction, last: float | Fraction | None, index: int) -> None:
        """``pts`` must be a finite time >= 0 after the previous frame's (a caller bug otherwise: ValueError)."""
        if not (isinstance(pts, (int, float, Fraction, np.integer, np.floating)) and math.isfinite(pts)
                and pts >= 0):
            raise ValueError(f"frame {index}: pts must be a finite time in seconds >= 0, got {pts!r}")
        if last is not None and not pts > last:
            raise ValueError(f"frame {index}: pts {float(pts):.6f} s is not after the previous frame's "
                             f"({float(last):.6f} s)")

    @staticmethod
    def _check_frame(frame: np.ndarray) -> np.ndarray:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            desc = f"{frame.dtype} {tuple(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"expected a uint8 [H, W, 3] RGB frame, got {desc}")
        return frame


class VideoWriter(SinkBase):
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
      ``write(frame, pts=t)`` stamps it at ``t`` seconds instead, rounded to ``time_base`` (default ``1/fps``;
      :data:`VFR_TIME_BASE` for variable-rate video); times must increase by at least one tick. The last frame lasts
      ``1/fps``, and the audio is cut there.
    * ``audio_from``: if that file has an audio stream it is copied (AAC/MP3/ALAC/AC-3 remuxed untouched,
      other codecs transcoded to AAC), aligned to its first video frame and cut at the end of the video.
      ``audio_start``/``audio_end`` (seconds from that first frame) copy only that part, e.g. ``start / fps``
      for a clip cut out of the source from frame ``start`` on.
    * Output goes to a hidden temp file in the target folder, renamed over ``path`` by :meth:`close`; on an
      exception inside the ``with`` block (or :meth:`abort`) the temp file is deleted.
    * ``metadata``: tags of the video stream, e.g. ``{"stereo_mode": "left_right"}``, which the Matroska muxer
      (``.mkv``) turns into its StereoMode element.
    """

    def __init__(self, path: str | os.PathLike, fps: float | int | str | Fraction,
                 audio_from: str | os.PathLike | None = None, *, crf: int = 18, preset: str = "medium",
                 audio_start: float = 0.0, audio_end: float | None = None,
                 time_base: Fraction | None = None, metadata: dict[str, str] | None = None) -> None:
        self.path = check_output_path(path, kind="video")
        if _is_folder_target(path):
            raise OutputError(f"{self.path}: is a folder; use FrameFolderWriter/open_writer for PNG frames")
        self.fps = to_fraction(fps)
        self.time_base = 1 / self.fps if time_base is None else Fraction(time_base)
        if self.time_base <= 0:
            raise ValueError(f"time_base must be positive, got {time_base!r}")
        # Packets are held back until their frame's duration is known only when frames carry their own times.
        self._timed = time_base is not None
        self._frame_ticks = max(1, round(1 / (self.fps * self.time_base)))
        self._last_ticks: int | None = None
        self._pending: list[av.Packet] = []
        self._durations: dict[int, int] = {}
        self._first_ticks = 0
        self._first_dts: int | None = None
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.audio_start, self.audio_end = check_audio_range(audio_start, audio_end)
        # Validate the audio source now, not after minutes of rendering.
        self._want_audio = self.audio_from is not None and source_has_audio(self.audio_from)
        self.crf = int(crf)
        self.preset = preset
        self.metadata = dict(metadata or {})
        self.codec = _video_codec()
        self.frames_written = 0
        self.size: _FrameSize | None = None
        self._input_size: _FrameSize | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._audio: AudioCopier | None = None
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
        fmt = {".mov": "mov", ".mkv": "matroska"}.get(self.path.suffix.lower(), "mp4")
        options = {} if fmt == "matroska" else {"movflags": "+faststart"}
        self._container = av.open(self._tmp, mode="w", format=fmt, options=options)
        eh, ew = h + h % 2, w + w % 2
        stream = self._container.add_stream(self.codec, rate=self.fps)
        for key, value in self.metadata.items():
            stream.metadata[key] = value
        stream.width, stream.height, stream.pix_fmt = ew, eh, "yuv420p"
        stream.codec_context.time_base = self.time_base
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
            self._audio = AudioCopier(self.audio_from, self._container, self.audio_start, self.audio_end)

    @property
    def end_time(self) -> Fraction:
        """Where the video written so far ends, in seconds: the last frame's time plus ``1/fps``."""
        if self._last_ticks is None:
            return Fraction(0)
        return (self._last_ticks + self._frame_ticks) * self.time_base

    def _ticks(self, pts: float | Fraction | None) -> int:
        if pts is None:
            return 0 if self._last_ticks is None else self._last_ticks + self._frame_ticks
        last = None if self._last_ticks is None else self._last_ticks * self.time_base
        self._check_pts(pts, last, self.frames_written)
        exact = Fraction(pts) if isinstance(pts, (int, Fraction, np.integer)) else Fraction(float(pts))
        ticks = round(exact / self.time_base)
        if self._last_ticks is not None and ticks <= self._last_ticks:
            raise ValueError(f"frame {self.frames_written}: pts {float(pts):.6f} s falls on the previous frame's tick "
                             f"of the {self.time_base} s time base; use a finer time_base")
        return ticks

    def _mux_timed(self, packets: list[av.Packet], final: bool = False) -> None:
        """Mux packets in decode order, each once its frame's duration is known.

        MP4 stores sample durations as decode-time steps and takes only the last one from a packet's duration, so
        the last packet in decode order is stretched to end the track at :attr:`end_time`: with B-frames that packet
        is not the last frame shown, and its own duration would end the video up to a frame early (measured: 1/60 s
        short on a clip alternating 1/30 and 1/15 s frames with the ``medium`` preset).
        """
        self._pending.extend(packets)
        if self._first_dts is None and self._pending and self._pending[0].dts is not None:
            self._first_dts = self._pending[0].dts
        while self._pending and self._pending[0].pts in self._durations:
            packet = self._pending[0]
            packet.duration = self._durations.pop(packet.pts)
            if final and len(self._pending) == 1 and packet.dts is not None:
                # decode time runs (first pts - first dts) behind presentation time
                shift = self._first_ticks - self._first_dts
                end = self._last_ticks + self._frame_ticks
                packet.duration = max(1, end - shift - packet.dts)
            self._container.mux(self._pending.pop(0))
        if final:
            for packet in self._pending:  # none expected: every frame's duration is known by now
                self._container.mux(packet)
            self._pending.clear()

    def write(self, frame: np.ndarray, pts: float | Fraction | None = None) -> None:
        """Append one uint8 ``[H, W, 3]`` RGB frame (every frame must have the first frame's size), shown at ``pts``
        seconds (rounded to :attr:`time_base`; must be after the previous frame) or, when ``None``, ``1/fps`` after
        the previous frame."""
        if self._closed:
            raise RuntimeError("VideoWriter is closed")
        frame = self._check_frame(frame)
        ticks = self._ticks(pts)
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
        vf.pts = ticks
        vf.time_base = self.time_base
        try:
            if self._timed:
                if self._last_ticks is not None:
                    self._durations[self._last_ticks] = ticks - self._last_ticks
                self._mux_timed(self._stream.encode(vf))
            else:
                self._container.mux(self._stream.encode(vf))
        except OSError as err:
            raise OutputError(f"{self.path}: writing failed ({_err_text(err)})") from None
        if self._last_ticks is None:
            self._first_ticks = ticks
        self._last_ticks = ticks
        self.frames_written += 1
        if self._audio is not None:
            self._audio.pump(self.end_time)

    def close(self) -> Path:
        """Flush the encoder, finish the audio and move the file into place. Returns the output path.

        Raises:
            OutputError: no frame was written, or the file could not be finalised.
        """
        return self._commit(self._container is not None, "no frames were written, so no video was created",
                            self._finish)

    def _finish(self) -> None:
        if self._timed:
            self._durations[self._last_ticks] = self._frame_ticks
            self._mux_timed(self._stream.encode(None), final=True)
        else:
            self._container.mux(self._stream.encode(None))
        if self._audio is not None:
            self._audio.finish(self.end_time)
            self._audio = None
        self._container.close()
        self._container = None

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


class FrameFolderWriter(SinkBase):
    """Write frames losslessly as ``000000.png``, ``000001.png``, ... into a folder.

    Same interface as :class:`VideoWriter`. The folder also receives ``fps.txt`` (the exact rate, read back
    by :func:`probe_video`) and, when ``audio_from`` has audio, ``audio.m4a`` cut to the video's length. Frames
    written with times (``write(frame, pts=t)``) that are not ``i / fps`` also leave ``timestamps.txt``: frame ``i``'s
    time in seconds on line ``i`` (PNG has no timing of its own; :func:`~fomm.io.reading.frame_times` reads it back).
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
        self.audio_start, self.audio_end = check_audio_range(audio_start, audio_end)
        self._want_audio = self.audio_from is not None and source_has_audio(self.audio_from)
        self.compress_level = compress_level
        self.frames_written = 0
        #: Each written frame's time in seconds (``i / fps`` for frames written without ``pts``).
        self.times: list[Fraction | float] = []
        self.size: _FrameSize | None = None
        self._out = atomic_dir(self.path, check_existing=_check_replaceable_frame_folder)
        self._tmpdir: str | None = None
        self._closed = False

    @property
    def has_audio(self) -> bool:
        return self._want_audio

    def write(self, frame: np.ndarray, pts: float | Fraction | None = None) -> None:
        """Append one uint8 ``[H, W, 3]`` RGB frame (every frame must have the first frame's size), shown at ``pts``
        seconds when given (kept in ``timestamps.txt``), else ``1/fps`` after the previous frame."""
        from PIL import Image

        if self._closed:
            raise RuntimeError("FrameFolderWriter is closed")
        frame = self._check_frame(frame)
        last = self.times[-1] if self.times else None
        if pts is None:
            pts = Fraction(0) if last is None else last + 1 / self.fps
        else:
            self._check_pts(pts, last, self.frames_written)
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
        self.times.append(pts)
        self.frames_written += 1

    def _is_vfr(self) -> bool:
        step = 1 / self.fps
        return any(abs(t - i * step) > VFR_TOLERANCE * step for i, t in enumerate(self.times))

    def _end_time(self) -> Fraction | float:
        # Constant-rate frames end exactly at frames / fps, as before per-frame times existed.
        return self.times[-1] + 1 / self.fps if self._is_vfr() else self.frames_written / self.fps

    def _write_audio(self) -> None:
        target = os.path.join(self._tmpdir, AUDIO_FILE)
        with av.open(target, mode="w", format="ipod") as out:
            copier = AudioCopier(self.audio_from, out, self.audio_start, self.audio_end)
            copier.finish(self._end_time())

    def close(self) -> Path:
        """Write ``fps.txt`` (and ``audio.m4a``) and move the folder into place. Returns the folder path."""
        path = self._commit(self._tmpdir is not None, "no frames were written, so no frame folder was created",
                            self._finish)
        self._tmpdir = None
        return path

    def _finish(self) -> None:
        Path(self._tmpdir, FPS_FILE).write_text(f"{self.fps.numerator}/{self.fps.denominator}\n")
        if self._is_vfr():
            Path(self._tmpdir, TIMESTAMPS_FILE).write_text("".join(f"{float(t):.6f}\n" for t in self.times))
        if self._want_audio:
            self._write_audio()

    def abort(self) -> None:
        """Discard everything written so far."""
        self._closed = True
        self._out.discard()
        self._tmpdir = None


def _check_replaceable_frame_folder(p: Path) -> None:
    """Re-checked when the frames are committed: the target may have changed since the writer was created."""
    if not p.is_dir() or not _is_frame_folder(p):
        raise OutputError(f"{p}: is no longer an empty or frame folder; not replacing it")


class MemorySink(SinkBase):
    """A :class:`FrameSink` that keeps a copy of every frame in :attr:`frames` (tests, in-process consumers).

    Frames are checked like the file writers check them (uint8 ``[H, W, 3]``, all the first frame's size) and
    copied, so the producer may reuse its buffer. :meth:`close` returns ``None`` (there is no file) and keeps
    the frames; :meth:`abort` drops them. ``fps``, when given, is kept as an exact :class:`~fractions.Fraction`.
    :attr:`timestamps` holds each frame's ``pts`` as given (``None`` when it was written without one).
    """

    def __init__(self, fps: float | int | str | Fraction | None = None) -> None:
        self.fps = to_fraction(fps) if fps is not None else None
        #: The frames written so far, uint8 ``[H, W, 3]`` each.
        self.frames: list[np.ndarray] = []
        #: The ``pts`` each frame was written with (``None``: none given).
        self.timestamps: list[float | None] = []
        self.size: _FrameSize | None = None
        self._closed = False

    @property
    def has_audio(self) -> bool:
        return False

    @property
    def frames_written(self) -> int:
        return len(self.frames)

    def write(self, frame: np.ndarray, pts: float | None = None) -> None:
        """Append a copy of one uint8 ``[H, W, 3]`` RGB frame (and its ``pts``, seconds, when given)."""
        if self._closed:
            raise RuntimeError("MemorySink is closed")
        frame = self._check_frame(frame)
        if self.size is None:
            self.size = frame.shape[:2]
        elif frame.shape[:2] != self.size:
            raise ValueError(f"frame {len(self.frames)} is {frame.shape[1]}x{frame.shape[0]}, but the first "
                             f"frame is {self.size[1]}x{self.size[0]}")
        if pts is not None:
            last = next((t for t in reversed(self.timestamps) if t is not None), None)
            self._check_pts(pts, last, len(self.frames))
        self.frames.append(frame.copy())
        self.timestamps.append(pts)

    def close(self) -> None:
        """Stop accepting frames; :attr:`frames` stays."""
        self._closed = True

    def abort(self) -> None:
        """Stop accepting frames and drop those written."""
        self._closed = True
        self.frames.clear()
        self.timestamps.clear()


def open_writer(path: str | os.PathLike, fps: float | int | str | Fraction,
                audio_from: str | os.PathLike | None = None, *, vfr: bool = False, **kwargs) -> FrameSink:
    """A :class:`FrameFolderWriter` when ``path`` ends with ``/`` or is an existing folder, else a
    :class:`VideoWriter` (``.mp4``/``.m4v``/``.mov``). ``vfr``: frames will be written with their own times
    (``write(frame, pts=t)``), so a video gets :data:`VFR_TIME_BASE` (a frame folder records the times whenever they
    are not ``i / fps``). Extra keyword arguments go to the writer."""
    if _is_folder_target(path):
        return FrameFolderWriter(path, fps, audio_from, **kwargs)
    if vfr:
        kwargs.setdefault("time_base", VFR_TIME_BASE)
    return VideoWriter(path, fps, audio_from, **kwargs)
