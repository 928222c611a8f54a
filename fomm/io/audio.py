"""Copying the audio of a source video into an output (PyAV).

Animation keeps the driving video's sound: :class:`AudioCopier` remuxes it unchanged when MP4 can hold the codec
and transcodes it to AAC otherwise, interleaved with the video as frames are written and cut at the video's end
(or at a requested range), aligned with the source's first video frame.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from fomm.io.reading import _check_exists, _is_image_path, _open_input

#: Audio codecs that may be copied into MP4 unchanged; anything else is transcoded to AAC.
MP4_AUDIO_COPY_CODECS = ("aac", "mp3", "alac", "ac3", "eac3")


class AudioCopier:
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


def source_has_audio(src: Path) -> bool:
    """Whether ``src`` (a video file) has an audio stream; still images and frame folders have none.

    Raises:
        InputError: ``src`` is missing, empty or not a readable video.
    """
    _check_exists(src)
    if src.is_dir() or _is_image_path(src):
        return False
    with _open_input(src) as c:
        return len(c.streams.audio) > 0


def check_audio_range(start: float, end: float | None) -> tuple[float, float | None]:
    """``(start, end)`` in seconds as floats.

    Raises:
        ValueError: not ``0 <= start < end`` (a caller bug, not user input).
    """
    start = float(start)
    if not start >= 0:
        raise ValueError(f"audio_start must be >= 0 seconds, got {start}")
    if end is not None and not float(end) > start:
        raise ValueError(f"audio_end ({end}) must be after audio_start ({start})")
    return start, None if end is None else float(end)
