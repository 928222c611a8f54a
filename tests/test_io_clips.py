"""fomm.io.clips: evaluation reads videos through fomm.io's reader (rotation, SAR) and writes frame folders whole."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from fomm.errors import InputError
from fomm.eval import protocol as P
from fomm.io.clips import read_clip, split_strip, write_frame_folder


def _marked_video(path, rotation: int = 0, sar: Fraction | None = None, n: int = 3):
    """64x32 (w x h) H.264 clip with a white 8x8 block in the stored top-left corner of every frame."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "10"}
        if rotation:
            s.set_display_rotation(rotation)  # counter-clockwise, as phones tag portrait clips
        if sar is not None:
            s.codec_context.sample_aspect_ratio = sar
        for i in range(n):
            img = np.zeros((32, 64, 3), np.uint8)
            img[:8, :8] = 255
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def test_read_clip_applies_rotation_tag(tmp_path):
    clip = read_clip(_marked_video(tmp_path / "rot.mp4", rotation=90))
    assert clip.shape == (3, 64, 32, 3) and clip.dtype == np.uint8
    ys, xs = np.nonzero(clip[0, ..., 0] > 128)
    assert ys.mean() > 50 and xs.mean() < 8  # the stored top-left block is shown bottom-left


def test_read_clip_applies_sample_aspect_ratio(tmp_path):
    clip = read_clip(_marked_video(tmp_path / "sar.mp4", sar=Fraction(1, 2)))
    assert clip.shape == (3, 32, 32, 3)  # 64 stored columns of half-width pixels are 32 square ones


def test_eval_scores_a_rotated_video_at_its_display_size(tmp_path):
    root = tmp_path / "ds" / "test"
    root.mkdir(parents=True)
    _marked_video(root / "phone.mp4", rotation=90)
    out = tmp_path / "run"
    summary = P.evaluate_reconstruction(root.parent, out, P.copy_source_reconstructor, progress=False)
    assert summary["videos"]["scored"] == 1
    assert read_clip(out / "generated" / "phone").shape == (3, 64, 32, 3)


def test_read_clip_gif_matches_its_frames(tmp_path):
    rng = np.random.default_rng(0)
    frames = []
    for i in range(5):
        a = np.full((40, 48, 3), 255, np.uint8)
        a[5 + i:20 + i, 4 + 2 * i:19 + 2 * i] = rng.integers(0, 255, 3)
        frames.append(Image.fromarray(a).convert("P", palette=Image.ADAPTIVE))
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=40, loop=0)
    with Image.open(tmp_path / "a.gif") as img:
        want = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(img)])
    np.testing.assert_array_equal(read_clip(tmp_path / "a.gif"), want)


def test_strip_and_frame_folder_roundtrip(tmp_path):
    video = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    strip = np.concatenate(list(video), axis=1)
    np.testing.assert_array_equal(split_strip(strip, tmp_path / "s.png"), video)
    with pytest.raises(InputError, match="multiple of height"):
        split_strip(strip[:, :-1], tmp_path / "s.png")
    write_frame_folder(video, tmp_path / "gen" / "v")
    write_frame_folder(video[:2], tmp_path / "gen" / "v")  # replaces the earlier clip whole
    np.testing.assert_array_equal(read_clip(tmp_path / "gen" / "v"), video[:2])
    assert [p.name for p in (tmp_path / "gen").iterdir()] == ["v"]
