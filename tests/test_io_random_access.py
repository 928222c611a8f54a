"""fomm.io.read_frames_at / FrameReader: random access equals streaming, without decoding everything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fomm.errors import InputError
from fomm.io import FrameReader, VideoWriter, iter_frames, read_frames_at


def _level_frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    f = np.zeros((h, w, 3), np.uint8)
    f[:, :, 0] = 4 * i  # frame index coded in red; survives H.264 within +-2
    f[:, : (i % w) + 1, 1] = 200
    return f


def _video(path: Path, n: int) -> Path:
    with VideoWriter(path, 25, preset="ultrafast") as w:
        for i in range(n):
            w.write(_level_frame(i))
    return path


def test_video_random_access_matches_streaming(tmp_path):
    path = _video(tmp_path / "v.mp4", 60)
    streamed = list(iter_frames(path))
    reader = FrameReader(path)
    assert reader.num_frames == 60 and reader.frame_hw == (48, 64)
    got = reader.read([45, 3, 45, 59])
    for frame, i in zip(got, [45, 3, 45, 59], strict=True):
        assert np.array_equal(frame, streamed[i])
    assert got[0] is not got[2]  # repeated index: separate arrays
    # x264 puts a keyframe every 250 frames, so frame 45 needs ~46 decodes; never the whole file twice
    assert reader.decoded_frames <= 60 + 4
    small = read_frames_at(path, [10], size=(24, 32))[0]
    assert small.shape == (24, 32, 3)


def test_folder_and_image(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(_level_frame(i)).save(folder / f"f{i}.png")  # natural order: f2 before f10
    got = read_frames_at(folder, [10, 2])
    assert np.array_equal(got[0], _level_frame(10)) and np.array_equal(got[1], _level_frame(2))
    img = tmp_path / "one.png"
    Image.fromarray(_level_frame(7)).save(img)
    assert np.array_equal(read_frames_at(img, [0])[0], _level_frame(7))


def test_sar_video_matches_streaming(data_dir):
    path = data_dir / "faces" / "liveportrait" / "driving" / "d9.mp4"  # stored 512x480, SAR 15:16
    streamed = list(iter_frames(path, max_frames=31))
    got = read_frames_at(path, [30, 1])
    assert got[0].shape == (480, 480, 3)
    assert np.array_equal(got[0], streamed[30]) and np.array_equal(got[1], streamed[1])


def test_out_of_range_and_missing(tmp_path):
    path = _video(tmp_path / "v.mp4", 5)
    with pytest.raises(InputError, match="frame 5 is out of range"):
        read_frames_at(path, [0, 5])
    with pytest.raises(InputError, match="not found"):
        read_frames_at(tmp_path / "nope.mp4", [0])
