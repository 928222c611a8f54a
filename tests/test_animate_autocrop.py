"""``animate_video(..., auto_crop=True)`` / ``fomm animate --auto-crop`` on the shared face photos and videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fomm
from fomm.animate import animate_video
from fomm.animate.autocrop import driving_face_box
from fomm.cli.main import main
from fomm.errors import InputError
from fomm.io import VideoWriter, iter_frames, probe_video, read_frames_at, read_image


@pytest.fixture(scope="module")
def model():
    return fomm.load_model("actions-64")  # random weights, 64x64: fast


@pytest.fixture(scope="module")
def short_driving(data_dir, tmp_path_factory) -> Path:
    """The first 9 frames of d9.mp4 (stored 512x480 with SAR 15:16, 30 fps, AAC audio), with its audio."""
    src = data_dir / "faces" / "liveportrait" / "driving" / "d9.mp4"
    out = tmp_path_factory.mktemp("drv") / "d9_short.mp4"
    with VideoWriter(out, probe_video(src).fps_fraction, audio_from=src, preset="ultrafast") as w:
        for f in iter_frames(src, max_frames=9):
            w.write(f)
    return out


def test_pastes_face_into_full_photo(model, data_dir, short_driving, tmp_path):
    photo_path = data_dir / "faces" / "liveportrait" / "source" / "s0.jpg"  # 600x704 painting, small face
    photo = read_image(photo_path)
    out = f"{tmp_path}/frames/"
    res = animate_video(model, photo_path, short_driving, out, auto_crop=True, progress=False)
    info, drv = probe_video(out), probe_video(short_driving)
    assert res.size == photo.shape[:2] == (704, 600)
    assert (info.height, info.width) == photo.shape[:2]
    assert res.num_frames == info.num_frames == drv.num_frames == 9
    assert info.fps_fraction == drv.fps_fraction == 30 and info.has_audio and res.has_audio
    left, top, right, bottom = res.crop.source_box
    assert right - left == bottom - top and 0 <= left and 0 <= top and right <= 600 and bottom <= 704
    assert (right - left) < 0.7 * 600  # only the face region, not the whole painting
    fl, ft, fr, fb = res.crop.source_face
    assert left <= fl and top <= ft and right >= fr and bottom >= fb
    outside = np.ones(photo.shape[:2], bool)
    outside[top:bottom, left:right] = False
    for frame in read_frames_at(out, [0, 8]):  # lossless PNG output: exact comparison
        assert np.array_equal(frame[outside], photo[outside])
        face = np.s_[top:bottom, left:right]
        assert np.abs(frame[face].astype(int) - photo[face]).mean() > 1  # the face was replaced
    # the driving box is one square around d9's face, in display (SAR-corrected 480x480) pixels
    dl, dt, dr, db = res.crop.driving_box
    assert dr - dl == db - dt and 0 <= dl and 0 <= dt and dr <= 480 and db <= 480


def test_mp4_output_keeps_photo_size_and_driving_rate(model, data_dir, tmp_path):
    photo = data_dir / "faces" / "tpsmm" / "source.png"  # 680x676
    driving = data_dir / "faces" / "tpsmm" / "driving.mp4"  # 410x412, 25 fps, AAC
    out = tmp_path / "anim.mp4"
    res = animate_video(model, photo, driving, out, auto_crop=True, crop_increase=0.3, feather=0.2, max_frames=6,
                        progress=False)
    info = probe_video(out)
    assert (info.width, info.height) == (680, 676) and res.size == (676, 680)
    assert info.num_frames == 6 and info.fps_fraction == 25 and info.has_audio
    # the same box as the driving-video helper finds on its own, and inside the 410x412 frame
    assert res.crop.driving_box == driving_face_box(driving, 0.3, max_frames=6)[0]


def test_cli_auto_crop(data_dir, tmp_path, capsys):
    out = tmp_path / "cli.mp4"
    rc = main(["animate", "--config", "actions-64", "--random-weights", "--auto-crop", "--crop-increase", "0.4",
               "--source", str(data_dir / "faces" / "liveportrait" / "source" / "s42.jpg"),
               "--driving", str(data_dir / "faces" / "liveportrait" / "driving" / "d0.mp4"),
               "-o", str(out), "-q"])
    assert rc == 0
    info = probe_video(out)
    assert (info.width, info.height, info.num_frames, info.fps_fraction) == (512, 512, 78, 25)
    rc = main(["animate", "--config", "actions-64", "--random-weights", "--crop-increase", "0.4",
               "--source", str(data_dir / "faces" / "tpsmm" / "source.png"),
               "--driving", str(data_dir / "faces" / "tpsmm" / "driving.mp4"), "-o", str(tmp_path / "x.mp4")])
    assert rc == 2 and "--auto-crop" in capsys.readouterr().err


def test_no_face_errors(model, data_dir, short_driving, tmp_path):
    flat = np.full((240, 320, 3), 128, np.uint8)
    out = tmp_path / "o.mp4"
    with pytest.raises(InputError, match="no face found in the source image"):
        animate_video(model, flat, short_driving, out, auto_crop=True, progress=False)
    noise = tmp_path / "noise.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(noise, 25, preset="ultrafast") as w:
        for _ in range(8):
            w.write(rng.integers(60, 70, (96, 96, 3), dtype=np.uint8))
    photo = data_dir / "faces" / "tpsmm" / "source.png"
    with pytest.raises(InputError, match="no face found in the driving video"):
        animate_video(model, photo, noise, out, auto_crop=True, progress=False)
    with pytest.raises(InputError, match="feather"):
        animate_video(model, photo, short_driving, out, auto_crop=True, feather=0.9, progress=False)
    assert not out.exists()
