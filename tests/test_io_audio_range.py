"""Writers copy a time range of the source audio (audio_start / audio_end), e.g. for clips cut mid-video."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fomm.io import VideoWriter, probe_video
from fomm.io.writing import FrameFolderWriter

RATE = 44100
TONE_FROM = 1.0  # seconds: the source is silent before, a 440 Hz tone after


def _signal(seconds: float) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return np.where(t >= TONE_FROM, 0.3 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)


def _source(path: Path, seconds: float = 3.0, fps: int = 25, codec: str = "aac") -> Path:
    """Video (grey frames) + audio ``silence | tone`` written with PyAV directly; ``.wav``: audio only."""
    wav = path.suffix == ".wav"
    with av.open(str(path), "w", format="wav" if wav else "mp4") as c:
        if not wav:
            vs = c.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
            vs.codec_context.time_base = Fraction(1, fps)
            vs.options = {"preset": "ultrafast"}
        as_ = c.add_stream(codec, rate=RATE)
        as_.layout = "mono"
        if not wav:
            for i in range(int(seconds * fps)):
                f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 128, np.uint8), format="rgb24")
                f.pts = i
                c.mux(vs.encode(f))
            c.mux(vs.encode(None))
        sig = _signal(seconds)
        for s in range(0, len(sig), 1024):
            chunk = sig[s:s + 1024][None]
            if codec.startswith("pcm"):
                af = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16), format="s16", layout="mono")
            else:
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            af.sample_rate, af.pts = RATE, s
            c.mux(as_.encode(af))
        c.mux(as_.encode(None))
    return path


def _decoded_audio(path: Path) -> tuple[np.ndarray, float, int]:
    """Mono float samples, the stream's end time (seconds, from the packet timestamps) and the sample rate."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        end = max(float((p.pts + p.duration) * p.time_base) for p in c.demux(s) if p.pts is not None)
    with av.open(str(path)) as c:
        chunks = [f.to_ndarray().astype(np.float32).reshape(f.to_ndarray().shape[0], -1).mean(0)
                  for f in c.decode(audio=0)]
        rate = c.streams.audio[0].codec_context.sample_rate
    x = np.concatenate(chunks)
    if x.dtype != np.float32 or np.abs(x).max() > 2:
        x = x / 32768.0
    return x, end, rate


def _rms(x: np.ndarray, rate: int, t0: float, t1: float) -> float:
    seg = x[int(t0 * rate):int(t1 * rate)]
    return float(np.sqrt(np.mean(seg ** 2)))


def _write(out: Path, src: Path, n: int, **kw) -> VideoWriter:
    with VideoWriter(out, 25, audio_from=src, preset="ultrafast", **kw) as w:
        for _ in range(n):
            w.write(np.zeros((32, 32, 3), np.uint8))
    return w


@pytest.mark.parametrize("codec", ["aac", "pcm_s16le"])  # remuxed copy / transcoded to AAC
def test_audio_start_shifts_the_copied_audio(tmp_path, codec):
    src = _source(tmp_path / ("src.mp4" if codec == "aac" else "src.wav"), codec=codec)
    base = _write(tmp_path / "base.mp4", src, 25)
    shifted = _write(tmp_path / "shift.mp4", src, 25, audio_start=TONE_FROM)
    assert base.has_audio and shifted.has_audio
    xb, end_b, rate = _decoded_audio(tmp_path / "base.mp4")
    xs, end_s, _ = _decoded_audio(tmp_path / "shift.mp4")
    # both last as long as the 25-frame video (1 s), whatever the start
    assert end_b == pytest.approx(1.0, abs=0.05) and end_s == pytest.approx(1.0, abs=0.05)
    # frame 0 plays silence without an offset, the tone (which starts at 1 s in the source) with one
    assert _rms(xb, rate, 0.1, 0.6) < 0.01
    assert _rms(xs, rate, 0.1, 0.6) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)


def test_audio_end_and_frame_folder(tmp_path):
    src = _source(tmp_path / "src.mp4")
    w = _write(tmp_path / "cut.mp4", src, 50, audio_start=0.5, audio_end=1.3)
    x, end, rate = _decoded_audio(tmp_path / "cut.mp4")
    assert w.frames_written == 50 and end == pytest.approx(0.8, abs=0.05)  # audio stops at audio_end
    assert _rms(x, rate, 0.05, 0.4) < 0.01 and _rms(x, rate, 0.6, 0.75) > 0.15  # tone from 0.5 s on
    with FrameFolderWriter(tmp_path / "frames", 25, audio_from=src, audio_start=TONE_FROM) as fw:
        for _ in range(10):
            fw.write(np.zeros((16, 16, 3), np.uint8))
    xf, end_f, rate = _decoded_audio(tmp_path / "frames" / "audio.m4a")
    assert end_f == pytest.approx(0.4, abs=0.05) and _rms(xf, rate, 0.05, 0.3) > 0.15
    assert probe_video(tmp_path / "frames").has_audio


def test_bad_audio_range(tmp_path):
    src = _source(tmp_path / "src.mp4", seconds=0.5)
    with pytest.raises(ValueError, match="audio_start"):
        VideoWriter(tmp_path / "o.mp4", 25, audio_from=src, audio_start=-1)
    with pytest.raises(ValueError, match="audio_end"):
        VideoWriter(tmp_path / "o.mp4", 25, audio_from=src, audio_start=1.0, audio_end=0.5)
