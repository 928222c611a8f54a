"""fomm crop: face tracking, stable per-scene boxes, scene/face-loss splits, on real and synthetic clips."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import alternating_times, click_times, make_vfr_clip, stream_timing
from PIL import Image

from fomm.crop.boxes import DEFAULT_INCREASE
from fomm.crop.video import crop_video
from fomm.errors import InputError
from fomm.io.reading import frame_times, iter_frames, probe_video
from fomm.io.writing import VideoWriter

N = 16  # frames looked at per real clip: enough to track, quick on 2 shared cores


def _check_stable(r, frame_w, frame_h):
    left, top, right, bottom = r.box
    assert right - left == bottom - top, "crop box must be square"
    assert 0 <= left and 0 <= top and right <= frame_w and bottom <= frame_h
    faces = np.array(r.face_boxes)
    assert len(faces) == r.end - r.start
    # one box per scene: it holds every (smoothed) face box of the segment
    assert (faces[:, 0] >= left).all() and (faces[:, 1] >= top).all()
    assert (faces[:, 2] <= right).all() and (faces[:, 3] <= bottom).all()
    # stated jitter bound: the smoothed face centre moves < 10 % of the face side between frames
    side = (faces[:, 2] - faces[:, 0]).mean()
    centres = np.stack([(faces[:, 0] + faces[:, 2]) / 2, (faces[:, 1] + faces[:, 3]) / 2], 1)
    assert np.abs(np.diff(centres, axis=0)).max(initial=0) < 0.1 * side
    union = max(faces[:, 2].max() - faces[:, 0].min(), faces[:, 3].max() - faces[:, 1].min())
    return side, union, right - left


@pytest.mark.parametrize("clip,frame_size,is_face_crop,audio", [
    ("liveportrait/driving/d0.mp4", (512, 512), True, False),
    ("liveportrait/driving/d9.mp4", (480, 480), True, True),   # stored 512x480 with SAR 15:16
    ("liveportrait/driving/d13.mp4", (720, 1280), False, False),  # phone selfie, face about 1/3 width
    ("liveportrait/source/s18.mp4", (1280, 720), False, True),   # medium shot, small face
])
def test_real_clips(data_dir, tmp_path, clip, frame_size, is_face_crop, audio):
    out = tmp_path / "crop.mp4"
    results = crop_video(data_dir / "faces" / clip, out, size=64, max_frames=N, progress=False)
    assert len(results) == 1
    r = results[0]
    assert (r.start, r.end) == (0, N) and r.path == out and r.frame_size == frame_size
    face_side, union_side, box_side = _check_stable(r, *frame_size)
    # default increase: the crop is (1 + 2 * increase)x the union of the segment's face boxes, or the frame's
    # short side when that is smaller
    assert face_side <= box_side <= min(min(frame_size), (1 + 2 * DEFAULT_INCREASE) * union_side + 2)
    if is_face_crop:
        assert box_side > 0.4 * min(frame_size)
    else:
        assert box_side < 0.7 * max(frame_size)  # really cropped, not the whole frame
    info = probe_video(out)
    assert (info.width, info.height, info.num_frames) == (64, 64, N)
    assert info.has_audio == audio == r.has_audio


def _face_frames(data_dir, name: str, n: int, size=(256, 256)) -> list[np.ndarray]:
    frames = iter_frames(data_dir / "faces" / "liveportrait" / "driving" / name, size=size, max_frames=n)
    return list(frames)


def test_scene_cut_and_face_loss_split(data_dir, tmp_path):
    a = _face_frames(data_dir, "d0.mp4", 10)
    b = _face_frames(data_dir, "d11.mp4", 10)
    grey = [np.full((256, 256, 3), 90, np.uint8)] * 8
    src = tmp_path / "cuts.mp4"
    with VideoWriter(src, 25) as w:
        for f in a + b + grey + a[:8]:
            w.write(f)
    out = tmp_path / "faces.mp4"
    results = crop_video(src, out, size=32, min_frames=6, progress=False)
    # d0 | cut | d11 | face lost (grey) | d0 again
    assert [(r.start, r.end) for r in results] == [(0, 10), (10, 20), (28, 36)]
    assert [r.path.name for r in results] == ["faces_00.mp4", "faces_01.mp4", "faces_02.mp4"]
    for r in results:
        assert probe_video(r.path).num_frames == r.end - r.start
    assert results[0].box == results[2].box or abs(results[0].box[0] - results[2].box[0]) < 8
    # the cropped pixels are the input's: compare the first written frame with a crop of the source frame
    first = next(iter_frames(results[1].path))
    frames = list(iter_frames(src, max_frames=11))
    left, top, right, bottom = results[1].box
    crop = Image.fromarray(frames[10][top:bottom, left:right])
    ref = np.asarray(crop.resize((32, 32), Image.BICUBIC)).astype(int)
    assert np.abs(first.astype(int) - ref).mean() < 8  # H.264 twice; a wrong box gives ~40+


def test_video_without_face_is_clear_error(tmp_path):
    src = tmp_path / "noface.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(src, 25) as w:
        for _ in range(6):
            w.write(rng.integers(60, 70, (96, 96, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="no face found"):
        crop_video(src, tmp_path / "o.mp4", progress=False)
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("vfr", [False, True])
def test_every_segment_gets_its_own_audio(data_dir, tmp_path, vfr):
    """A scene cut at frame 10 of a clip with clicks in both scenes: each crop carries the audio under it, starting
    at its first frame's time (with a variable frame rate: the frame's real time, not ``10 / fps``)."""
    frames = _face_frames(data_dir, "d0.mp4", 10, size=(128, 128)) + _face_frames(data_dir, "d11.mp4", 10,
                                                                                   size=(128, 128))
    times = alternating_times(20) if vfr else [i / 25 for i in range(20)]
    end = times[-1] + (1 / 15 if vfr else 1 / 25)
    clicks = (times[3], times[15])
    src = make_vfr_clip(tmp_path / "cut.mp4", times, end, clicks=clicks, frames=frames)
    assert frame_times(src).vfr == vfr
    results = crop_video(src, tmp_path / "faces.mp4", size=32, min_frames=6, progress=False)
    assert [(r.start, r.end) for r in results] == [(0, 10), (10, 20)]
    first, second = results
    assert first.has_audio and second.has_audio
    assert second.start_time == pytest.approx(times[10], abs=1e-6)
    for r, click in ((first, clicks[0]), (second, clicks[1])):
        got = stream_timing(r.path)
        assert np.allclose(got["times"], np.array(times[r.start:r.end]) - times[r.start], atol=1e-4)
        assert "audio" in got and abs(got["audio"] - got["video"]) < 1 / 20  # the segment's length, not the clip's
        assert np.allclose(click_times(r.path), [click - times[r.start]], atol=0.003)  # its own click, in place
