"""Variable-frame-rate timing: frame_times() reads each frame's time, writers keep it, audio stays in sync."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from helpers import alternating_times, click_times, make_vfr_clip, stream_timing

from fomm.errors import InputError
from fomm.io.reading import TIMESTAMPS_FILE, frame_times, iter_frames, probe_video
from fomm.io.writing import VFR_TIME_BASE, FrameFolderWriter, MemorySink, VideoWriter, open_writer

N = 24
TIMES = alternating_times(N)  # 1/30 s and 1/15 s gaps: 20 fps on average
END = TIMES[-1] + 1 / 15
CLICKS = (TIMES[5], TIMES[17])


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    return make_vfr_clip(tmp_path_factory.mktemp("vfr") / "vfr.mp4", TIMES, END, clicks=CLICKS)


def _grey(n: int, size: int = 32) -> list[np.ndarray]:
    return [np.full((size, size, 3), 20 + 9 * i, np.uint8) for i in range(n)]


def test_frame_times_reads_vfr_clip(vfr_clip):
    ft = frame_times(vfr_clip)
    assert ft.vfr and len(ft.times) == N
    assert np.allclose(ft.times, TIMES, atol=1e-4)
    assert ft.fps == probe_video(vfr_clip).fps_fraction
    assert frame_times(vfr_clip, max_frames=5).times == ft.times[:5]
    assert len(list(iter_frames(vfr_clip))) == N  # one time per decoded frame


def test_constant_rate_and_dropped_frame(tmp_path):
    cfr = tmp_path / "cfr.mp4"
    with VideoWriter(cfr, 25, preset="ultrafast") as w:
        for f in _grey(10):
            w.write(f)
    ft = frame_times(cfr)
    assert not ft.vfr and np.allclose(ft.times, [i / 25 for i in range(10)]) and ft.end == pytest.approx(0.4)
    # One dropped frame: every later frame would be shown a frame early at a constant rate.
    dropped = make_vfr_clip(tmp_path / "drop.mp4", [i / 25 for i in range(12) if i != 6], 12 / 25, audio=False)
    assert frame_times(dropped).vfr


@pytest.mark.parametrize("preset", ["ultrafast", "medium"])  # medium: B-frames reorder the packets
def test_writer_keeps_times_and_audio_sync(vfr_clip, tmp_path, preset):
    info = probe_video(vfr_clip)
    ft = frame_times(vfr_clip)
    out = tmp_path / "out.mp4"
    with open_writer(out, info.fps_fraction, audio_from=vfr_clip, vfr=True, preset=preset) as w:
        for frame, t in zip(iter_frames(vfr_clip), ft.times, strict=True):
            w.write(frame, pts=t)
    assert w.time_base == VFR_TIME_BASE
    got = stream_timing(out)
    assert np.allclose(got["times"], TIMES, atol=1 / 90000 + 1e-9)  # every frame at its source time
    interval = float(1 / info.fps_fraction)
    assert got["video"] == pytest.approx(TIMES[-1] + interval, abs=1e-4)  # last frame lasts 1/fps
    assert abs(got["audio"] - got["video"]) < interval
    assert np.allclose(click_times(out), CLICKS, atol=0.003)
    assert frame_times(out).vfr


def test_constant_rate_output_unchanged_by_pts(tmp_path, vfr_clip):
    """Frames written with pts = i / fps give the same bytes as frames written without (CFR output unchanged)."""
    outs = []
    for name, with_pts in (("plain.mp4", False), ("pts.mp4", True)):
        with VideoWriter(tmp_path / name, Fraction(30000, 1001), audio_from=vfr_clip, preset="ultrafast") as w:
            for i, f in enumerate(_grey(8)):
                w.write(f, pts=i * Fraction(1001, 30000)) if with_pts else w.write(f)
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]


def test_frame_folder_keeps_vfr_times(tmp_path, vfr_clip):
    ft = frame_times(vfr_clip)
    with FrameFolderWriter(tmp_path / "vfr", ft.fps, audio_from=vfr_clip) as w:
        for frame, t in zip(iter_frames(vfr_clip), ft.times, strict=True):
            w.write(frame, pts=t)
    back = frame_times(tmp_path / "vfr")
    assert back.vfr and np.allclose(back.times, TIMES, atol=1e-6)
    assert np.allclose(click_times(tmp_path / "vfr" / "audio.m4a"), CLICKS, atol=0.003)
    # constant-rate times leave no timestamps file, and the folder can be replaced by the writer again
    with FrameFolderWriter(tmp_path / "vfr", 25) as w:
        for i, f in enumerate(_grey(4)):
            w.write(f, pts=i / 25)
    assert not (tmp_path / "vfr" / TIMESTAMPS_FILE).exists()
    assert not frame_times(tmp_path / "vfr").vfr


def test_bad_timestamps_file_is_input_error(tmp_path):
    with FrameFolderWriter(tmp_path / "f", 25) as w:
        for f in _grey(3):
            w.write(f)
    (tmp_path / "f" / TIMESTAMPS_FILE).write_text("0\n0.1\n")
    with pytest.raises(InputError, match="2 frame times for 3 frames"):
        frame_times(tmp_path / "f")
    (tmp_path / "f" / TIMESTAMPS_FILE).write_text("0\nabc\n0.2\n")
    with pytest.raises(InputError, match="one number per line"):
        frame_times(tmp_path / "f")


@pytest.mark.parametrize("bad", [float("nan"), -0.1, 0.0, "0.5"])
def test_bad_pts_is_a_caller_error(tmp_path, bad):
    for sink in (VideoWriter(tmp_path / "o.mp4", 25, time_base=VFR_TIME_BASE), FrameFolderWriter(tmp_path / "d", 25),
                 MemorySink()):
        with sink:
            sink.write(_grey(1)[0], pts=0.0)
            with pytest.raises(ValueError, match="pts"):
                sink.write(_grey(2)[1], pts=bad)
            sink.abort()
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "d").exists()


def test_pts_closer_than_a_tick(tmp_path):
    with VideoWriter(tmp_path / "o.mp4", 25) as w:  # default time base: 1/25 s
        w.write(_grey(1)[0], pts=0.0)
        with pytest.raises(ValueError, match="finer time_base"):
            w.write(_grey(1)[0], pts=0.01)
        w.abort()


def test_memory_sink_records_pts():
    sink = MemorySink(25)
    with sink:
        sink.write(_grey(1)[0], pts=0.0)
        sink.write(_grey(1)[0])
    assert sink.timestamps == [0.0, None]
