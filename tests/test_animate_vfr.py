"""fomm animate with a variable-frame-rate driving video: every output frame at its driving frame's time, the
driving audio's clicks where they were, video and audio of the same length (a random 64x64 model: timing only)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import alternating_times, click_times, make_vfr_clip, stream_timing
from hostile import run_main
from PIL import Image

import fomm
from fomm.animate.pipeline import animate_video
from fomm.io.reading import TIMESTAMPS_FILE, frame_times
from fomm.io.writing import MemorySink

N = 20
TIMES = alternating_times(N)  # 1/30 s and 1/15 s gaps
INTERVAL = 1 / 20  # the average frame interval
END = TIMES[-1] + 1 / 15
CLICKS = (TIMES[4], TIMES[13])


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("vfr-animate")
    src = root / "source.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src)
    return src, make_vfr_clip(root / "driving.mp4", TIMES, END, clicks=CLICKS)


def test_cli_vfr_driving_stays_in_sync(media, tmp_path):
    src, drv = media
    out = tmp_path / "out.mp4"
    res = run_main(["animate", "--config", "actions-64", "--random-weights", "--source", src, "--driving", drv,
                    "-o", out, "-q"])
    assert res.rc == 0, res.stderr
    got = stream_timing(out)
    assert len(got["times"]) == N
    # each output frame at its driving frame's time (well inside one frame interval: exact to the 90 kHz tick)
    assert np.abs(np.array(got["times"]) - TIMES).max() < 1e-4
    assert abs(got["audio"] - got["video"]) < INTERVAL  # no drift between the tracks
    assert got["video"] == pytest.approx(TIMES[-1] + INTERVAL, abs=1e-3)
    assert np.allclose(click_times(out), CLICKS, atol=0.003)  # the audio itself was not moved


def test_frame_folder_output_gets_timestamps(media, tmp_path):
    src, drv = media
    out = tmp_path / "frames"
    res = run_main(["animate", "--config", "actions-64", "--random-weights", "--source", src, "--driving", drv,
                    "-o", f"{out}/"])
    assert res.rc == 0, res.stderr
    assert TIMESTAMPS_FILE in res.stdout  # the user is told where the timing went
    assert np.allclose(frame_times(out).times, TIMES, atol=1e-6)
    assert np.allclose(click_times(out / "audio.m4a"), CLICKS, atol=0.003)


def test_max_frames_and_sinks(media, tmp_path):
    src, drv = media
    model = fomm.load_model("actions-64")
    out = tmp_path / "short.mp4"
    r = animate_video(model, src, drv, out, max_frames=7, progress=False)
    got = stream_timing(out)
    assert r.num_frames == 7 and np.abs(np.array(got["times"]) - TIMES[:7]).max() < 1e-4
    assert abs(got["audio"] - got["video"]) < INTERVAL
    # a caller's sink is written as before (frames only), whatever the driving timing
    sink = MemorySink()
    animate_video(model, src, drv, sink, max_frames=3, progress=False)
    assert len(sink.frames) == 3 and sink.timestamps == [None] * 3
