"""Hostile media: huge and empty images, videos without pictures, truncated files, bad frame times, a crop of a clip
with audio but no face, decompression bombs at every entry point that reads an image (photo, dataset strip or
frame, depth PNG/NPY/EXR). Each is refused with one ``fomm: error:`` line, rc 2, nothing written (but the report
of why that eval writes by design), inputs unchanged."""

from __future__ import annotations

import struct

import av
import numpy as np
import pytest
from helpers import alternating_times, huge_png, make_vfr_clip
from hostile import assert_refused, big_frame_video, bomb_jpeg, bomb_png
from PIL import Image

from fomm.io.reading import TIMESTAMPS_FILE

MODEL = ["--config", "actions-64", "--random-weights"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-media")
    src = root / "source.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(src)
    times = alternating_times(12)
    drv = make_vfr_clip(root / "vfr.mp4", times, times[-1] + 1 / 15, clicks=(0.1,))
    return root, src, drv


def _animate(src, drv, out):
    return ["animate", *MODEL, "--source", src, "--driving", drv, "-o", out, "-q"]


@pytest.mark.parametrize("side", [10000, 20000])
def test_huge_source_png(media, tmp_path, side):
    _, _, drv = media
    big = huge_png(tmp_path / "big.png", side, side)
    out = tmp_path / "out.mp4"
    assert_refused(_animate(big, drv, out), inputs=[big, drv], outputs=[out],
                   match=f"is {side}x{side} = {side * side // 10**6} MP, above fomm's limit of 50 MP; downscale it")


def test_empty_source_png(media, tmp_path):
    _, _, drv = media
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    out = tmp_path / "out.mp4"
    assert_refused(_animate(empty, drv, out), inputs=[empty, drv], outputs=[out], match="empty (0 bytes)")


def test_driving_without_video_stream(media, tmp_path):
    _, src, _ = media
    audio_only = tmp_path / "voice.mp4"
    with av.open(str(audio_only), "w") as c:
        s = c.add_stream("aac", rate=48000)
        s.layout = "mono"
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 48000, i * 1024
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    out = tmp_path / "out.mp4"
    assert_refused(_animate(src, audio_only, out), inputs=[src, audio_only], outputs=[out],
                   match="has no video stream")


@pytest.mark.parametrize("grow", [False, True], ids=["header", "second-frame"])
def test_driving_video_with_frames_above_the_pixel_limit(media, tmp_path, grow):
    """7200x7200 = 51.8 MP, just above the 50 MP images get: refused from the container header, or (a stream that
    grows midway) at the frame, before it is converted to RGB."""
    _, src, _ = media
    big = big_frame_video(tmp_path / "big.mkv", 7200, grow=grow)
    out = tmp_path / "out.mp4"
    match = ("frame 1 is 7200x7200" if grow else "video frames are 7200x7200") + " = 51.8 MP, above fomm's limit"
    assert_refused(_animate(src, big, out), inputs=[src, big], outputs=[out], match=match)
    assert_refused(["composite", str(big), "-o", str(tmp_path / "c.mp4"), "--depth", str(src), "--stereo", "sbs",
                    "-q"], inputs=[src, big], outputs=[tmp_path / "c.mp4"], match=match)


def test_random_access_refuses_a_frame_above_the_pixel_limit(tmp_path):
    from fomm.io.reading import FrameReader, InputError

    reader = FrameReader(big_frame_video(tmp_path / "grow.mkv", 7200, grow=True))
    assert reader.read([0])[0].shape == (64, 64, 3)
    with pytest.raises(InputError, match="a frame is 7200x7200 = 51.8 MP, above fomm's limit"):
        reader.read([1])


def test_an_extreme_aspect_ratio_counts_at_its_display_size(media, monkeypatch):
    """A tiny stored frame with a huge sample aspect ratio is shown (and resized to) a huge width."""
    import fomm.io.reading as reading

    _, _, drv = media
    monkeypatch.setattr(reading, "_display_dims", lambda w, h, sar, rotation: (w * 200_000, h))
    with pytest.raises(reading.InputError, match="video frames are shown at .* above fomm's limit"):
        reading.probe_video(drv)


@pytest.mark.parametrize("keep", [0.3, 0.7])
def test_truncated_vfr_driving(media, tmp_path, keep):
    _, src, drv = media
    cut = tmp_path / "cut.mp4"
    data = drv.read_bytes()
    cut.write_bytes(data[:int(len(data) * keep)])
    out = tmp_path / "out.mp4"
    assert_refused(_animate(src, cut, out), inputs=[src, cut], outputs=[out])


@pytest.mark.parametrize("content,match", [("0\n0.1\n", "2 frame times for 3 frames"),
                                           ("0\nx\n0.2\n", "one number per line")])
def test_frame_folder_with_bad_timestamps(media, tmp_path, content, match):
    _, src, _ = media
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(folder / f"{i:06d}.png")
    (folder / TIMESTAMPS_FILE).write_text(content)
    out = tmp_path / "out.mp4"
    assert_refused(_animate(src, folder, out), inputs=[src, folder], outputs=[out], match=match)


def test_crop_of_clip_with_audio_but_no_face(media, tmp_path):
    _, _, drv = media  # grey frames with an audio track: nothing to crop
    out = tmp_path / "crop.mp4"
    assert_refused(["crop", "--video", drv, "-o", out, "-q"], inputs=[drv], outputs=[out, tmp_path / "crop_00.mp4"],
                   match="no face found")


# ------------------------------------------------------------------------ decompression bombs at every entry point
# Header-only bombs (tests/hostile.py): a ~100-byte file claiming 8000x8000 = 64 MP, above fomm's 50 MP limit and
# below Pillow's own 89 MP guard, so only fomm's header check stands between the file and a 64-192 MB decode. Each
# case also fails if that check is skipped: the message would then be about a truncated file, not the limit.
LIMIT = "above fomm's limit of 50 MP; downscale it first"


def _bomb(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_bomb_source_photo(media, tmp_path, kind):
    _, _, drv = media
    bomb = _bomb(tmp_path / f"photo.{kind}", bomb_png(8000, 8000) if kind == "png" else bomb_jpeg(8000, 8000))
    out = tmp_path / "out.mp4"
    assert_refused(_animate(bomb, drv, out), inputs=[bomb, drv], outputs=[out], match=f"8000x8000 = 64 MP, {LIMIT}")
    assert_refused(["live", "--pretrained", "actions-64", "--source", bomb, "--driving", drv, "--output",
                    f"record:{out}"], inputs=[bomb, drv], outputs=[out], match=f"8000x8000 = 64 MP, {LIMIT}")


def _dataset(tmp_path, entry: str, data: bytes):
    """A dataset with train/ and test/ each holding ``entry`` (a strip image's name) with ``data``."""
    root = tmp_path / "ds"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        (root / split / entry).write_bytes(data)
    return root


def test_bomb_strip_in_a_training_set(tmp_path):
    ds = _dataset(tmp_path, "clip.png", bomb_png(64 * 15625, 64))  # 15625 frames of 64x64 = 64 MP in one strip
    run = tmp_path / "run"
    assert_refused(["train", "--config", "actions-64", "--data", ds, "--out", run, "--workers", "0"], inputs=[ds],
                   outputs=[run], match=f"clip.png: image is 1000000x64 = 64 MP, {LIMIT}")


def test_bomb_strip_in_an_eval_set(tmp_path):
    ds = _dataset(tmp_path, "clip.png", bomb_png(64 * 15625, 64))
    run = tmp_path / "run"
    res = assert_refused(["eval", "reconstruction", ds, "--out", run, "-q"], inputs=[ds],
                         match=f"clip.png: image is 1000000x64 = 64 MP, {LIMIT}")
    assert "no video could be scored (1 of 1 failed" in res.stderr
    assert (run / "metrics.json").is_file()  # eval's design: the partial report says why, and the line says where


def test_bomb_frame_in_an_eval_frame_folder(tmp_path):
    root = tmp_path / "ds"
    clip = root / "test" / "clip"
    clip.mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(clip / "000.png")
    _bomb(clip / "001.png", bomb_png(8000, 8000))
    res = assert_refused(["eval", "reconstruction", root, "--out", tmp_path / "run", "-q"], inputs=[root],
                         match=f"001.png: image is 8000x8000 = 64 MP, {LIMIT}")
    assert "no video could be scored" in res.stderr


def _bomb_exr(path, width: int, height: int):
    """A real 16x16 EXR depth map whose header's data window is patched to claim ``width`` x ``height``."""
    openexr = pytest.importorskip("OpenEXR")
    openexr.File({"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage},
                 {"Z": np.full((16, 16), 0.5, np.float32)}).write(str(path))
    data = bytearray(path.read_bytes())
    at = data.index(b"dataWindow\0box2i\0") + len(b"dataWindow\0box2i\0") + 4  # after the attribute's size
    data[at:at + 16] = struct.pack("<4i", 0, 0, width - 1, height - 1)
    return _bomb(path, bytes(data))


def _bomb_npy(path, width: int, height: int):
    """An NPY header declaring float32 ``[height, width]`` followed by 64 bytes of data."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (height, width)})
        fh.write(b"\0" * 64)
    return path


@pytest.mark.parametrize("kind", ["png", "npy", "exr"])
def test_bomb_depth_file(tmp_path, kind):
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(tmp_path / "img.png")
    if kind == "png":
        bomb = _bomb(tmp_path / "depth.png", bomb_png(8000, 8000))
    elif kind == "npy":
        bomb = _bomb_npy(tmp_path / "depth.npy", 8000, 8000)
    else:
        bomb = _bomb_exr(tmp_path / "depth.exr", 8000, 8000)
    out = tmp_path / "out.png"
    assert_refused(["depth", tmp_path / "img.png", "-o", out, "-q", "--depth-file", bomb],
                   inputs=[bomb, tmp_path / "img.png"], outputs=[out, tmp_path / "out.png.json"],
                   match=f"depth.{kind}: image is 8000x8000 = 64 MP, {LIMIT}")
