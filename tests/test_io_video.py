from __future__ import annotations

import gc
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import fomm.io.writing as video_mod  # the writer module: _video_codec is patched there
from fomm.errors import InputError, OutputError
from fomm.io.reading import iter_frames, probe_video
from fomm.io.writing import FrameFolderWriter, VideoWriter, check_output_path, open_writer


def _frame(i: int, h: int, w: int) -> np.ndarray:
    """Smooth, moving test pattern (H.264-friendly, so PSNR measures the pipeline, not noise)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 127.5 + 127.5 * np.sin((xx + 3 * i) / 9.0)
    g = 127.5 + 127.5 * np.cos((yy - 2 * i) / 7.0)
    b = 127.5 + 127.5 * np.sin((xx + yy + 5 * i) / 11.0)
    return np.stack([r, g, b], axis=2).round().astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def make_video(path: Path, n: int, fps, h: int = 64, w: int = 96, audio_codec: str | None = None,
               faststart: bool = True, audio_seconds: float | None = None) -> Path:
    """Encode a synthetic video with PyAV directly (independent of the writer under test)."""
    fps = Fraction(fps)
    options = {"movflags": "+faststart"} if faststart else {}
    fmt = {".wav": "wav"}.get(path.suffix, "mp4")
    with av.open(str(path), "w", format=fmt, options=options) as c:
        vs = None
        if n > 0 or fmt == "mp4":
            vs = c.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.codec_context.time_base = 1 / fps
            vs.options = {"preset": "ultrafast", "crf": "16"}
        if fmt == "wav":
            vs = None
        as_ = None
        if audio_codec is not None:
            as_ = c.add_stream(audio_codec, rate=44100)
            as_.layout = "stereo"
        for i in range(n if vs is not None else 0):
            f = av.VideoFrame.from_ndarray(_frame(i, h, w), format="rgb24")
            f.pts = i
            c.mux(vs.encode(f))
        if vs is not None:
            c.mux(vs.encode(None))
        if as_ is not None:
            secs = audio_seconds if audio_seconds is not None else n / fps
            total = int(44100 * secs)
            t = np.arange(total) / 44100.0
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            fmt_name = "s16" if audio_codec.startswith("pcm") else "fltp"
            for start in range(0, total, 1024):
                chunk = np.stack([tone[start:start + 1024]] * 2)
                if fmt_name == "s16":
                    chunk = (chunk * 32767).astype(np.int16).T.reshape(1, -1)
                af = av.AudioFrame.from_ndarray(chunk, format=fmt_name, layout="stereo")
                af.sample_rate = 44100
                af.pts = start
                c.mux(as_.encode(af))
            c.mux(as_.encode(None))
    return path


def _audio_duration(path: Path) -> float | None:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        s = c.streams.audio[0]
        end = 0.0
        for p in c.demux(s):
            if p.pts is not None and p.duration is not None:
                end = max(end, float((p.pts + p.duration) * p.time_base))
        return end


# ------------------------------------------------------------------------------------------------- probe


@pytest.mark.parametrize("fps", [Fraction(25), Fraction(30000, 1001)])
def test_probe_and_read_synthetic(tmp_path, fps):
    path = make_video(tmp_path / "v.mp4", 30, fps, audio_codec="aac")
    info = probe_video(path)
    assert info.kind == "video" and info.codec == "h264"
    assert (info.width, info.height) == (96, 64) and info.display_size == (64, 96)
    assert info.fps_fraction == fps and info.fps == pytest.approx(float(fps))
    assert info.num_frames == 30 and info.num_frames_exact
    assert info.has_audio
    assert info.duration == pytest.approx(30 / float(fps), abs=1e-3)
    frames = list(iter_frames(path))
    assert len(frames) == 30
    assert all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for f in frames)
    assert min(_psnr(f, _frame(i, 64, 96)) for i, f in enumerate(frames)) > 30
    small = list(iter_frames(path, size=(32, 40), max_frames=4))
    assert len(small) == 4 and small[0].shape == (32, 40, 3)


def test_sar_on_shared_driving_video(data_dir):
    path = data_dir / "faces" / "liveportrait" / "driving" / "d9.mp4"
    info = probe_video(path)
    assert (info.width, info.height) == (512, 480)
    assert info.sample_aspect_ratio == Fraction(15, 16)
    assert (info.display_width, info.display_height) == (480, 480)
    assert info.has_audio and info.fps_fraction == 30
    first = next(iter_frames(path))
    assert first.shape == (480, 480, 3)
    assert first.flags.writeable and first.flags.c_contiguous  # callers may modify frames in place
    # Exact frame count from the index matches what actually decodes.
    assert sum(1 for _ in iter_frames(path, size=(32, 32))) == info.num_frames == 587


def test_still_image_is_one_frame(tmp_path, data_dir):
    path = data_dir / "faces" / "liveportrait" / "driving" / "d9.jpg"
    info = probe_video(path)
    assert info.kind == "image" and info.num_frames == 1 and not info.fps_known
    frames = list(iter_frames(path, size=(64, 64)))
    assert len(frames) == 1 and frames[0].shape == (64, 64, 3)


def test_frame_folder_natural_order(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    for i in (0, 1, 2, 10):
        img = np.full((40, 40, 3), i * 20, np.uint8)
        Image.fromarray(img).save(d / f"frame{i}.png")
    (d / "notes.txt").write_text("ignored")
    info = probe_video(d)
    assert info.kind == "folder" and info.num_frames == 4 and info.fps_fraction == 25 and not info.fps_known
    vals = [int(f[0, 0, 0]) for f in iter_frames(d)]
    assert vals == [0, 20, 40, 200]  # frame10 after frame2
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(d / "frame11.png")
    with pytest.raises(InputError, match="same size"):
        list(iter_frames(d))


def test_gif(tmp_path):
    frames = [Image.fromarray(np.full((40, 48, 3), v, np.uint8)) for v in (0, 120, 240)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=40, loop=0)
    out = list(iter_frames(tmp_path / "a.gif"))
    assert len(out) == 3 and out[0].shape == (40, 48, 3)
    assert [int(f.mean()) for f in out] == pytest.approx([0, 120, 240], abs=3)
    assert probe_video(tmp_path / "a.gif").fps == pytest.approx(25, abs=1)


def test_rotation_tag_applied(tmp_path):
    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(90)  # counter-clockwise, as phones tag portrait clips
        for i in range(3):
            img = np.zeros((32, 64, 3), np.uint8)
            img[:8, :8] = 255
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    info = probe_video(path)
    assert info.rotation == 90 and info.display_size == (64, 32)
    f = next(iter_frames(path))
    ys, xs = np.nonzero(f[..., 0] > 128)
    assert f.shape == (64, 32, 3) and ys.mean() > 50 and xs.mean() < 8  # top-left went to bottom-left


# ------------------------------------------------------------------------------------------------- bad input


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        probe_video(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        probe_video(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 50)
    with pytest.raises(InputError, match="not a video"):
        probe_video(tmp_path / "text.mp4")
    audio_only = make_video(tmp_path / "tone.wav", 0, 25, audio_codec="pcm_s16le", audio_seconds=0.5)
    with pytest.raises(InputError, match="no video stream"):
        probe_video(audio_only)
    zero = make_video(tmp_path / "zero.mp4", 0, 25)
    with pytest.raises(InputError):
        probe_video(zero)
    with pytest.raises(InputError, match="not found"):
        next(iter_frames(tmp_path / "missing.mp4"))


def test_truncated_and_corrupt(tmp_path):
    good = make_video(tmp_path / "g.mp4", 60, 25, h=64, w=64)
    data = good.read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"ends early at frame \d+ of 60"):
        list(iter_frames(tmp_path / "half.mp4"))
    # moov atom at the end: a truncated file has no index at all.
    tail = make_video(tmp_path / "t.mp4", 20, 25, faststart=False).read_bytes()
    (tmp_path / "t_half.mp4").write_bytes(tail[: len(tail) // 2])
    with pytest.raises(InputError, match="corrupt"):
        probe_video(tmp_path / "t_half.mp4")
    # Garbage over the middle of the frame data.
    b = bytearray(data)
    mid = len(b) // 2
    b[mid:mid + 4000] = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (tmp_path / "bad.mp4").write_bytes(bytes(b))
    with pytest.raises(InputError, match=r"frame \d+"):
        list(iter_frames(tmp_path / "bad.mp4"))


# ------------------------------------------------------------------------------------------------- writing


@pytest.mark.parametrize("fps", [25, Fraction(30000, 1001)])
def test_writer_roundtrip_odd_size_with_audio(tmp_path, fps):
    src = make_video(tmp_path / "src.mp4", 40, fps, audio_codec="aac")
    out = tmp_path / "out" / "res.mp4"  # parent folder created on demand
    with VideoWriter(out, fps, audio_from=src, preset="ultrafast") as w:
        for i in range(25):
            w.write(_frame(i, 45, 67))
    assert w.size == (46, 68) and w.frames_written == 25 and w.has_audio
    assert sorted(p.name for p in out.parent.iterdir()) == ["res.mp4"]
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: playable while downloading
    info = probe_video(out)
    assert info.fps_fraction == Fraction(fps) and info.num_frames == 25 and info.has_audio
    assert (info.width, info.height) == (68, 46)
    frames = list(iter_frames(out))
    assert min(_psnr(f[:45, :67], _frame(i, 45, 67)) for i, f in enumerate(frames)) > 30
    # Padding repeats the edge, it does not add a black border.
    assert _psnr(frames[0][45, :67], frames[0][44, :67]) > 25
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
    # Copied, and cut at the video's end (within one AAC packet).
    assert _audio_duration(out) == pytest.approx(25 / float(Fraction(fps)), abs=0.05)


def test_writer_transcodes_non_mp4_audio(tmp_path):
    wav = make_video(tmp_path / "tone.wav", 0, 25, audio_codec="pcm_s16le", audio_seconds=3.0)
    out = tmp_path / "o.mp4"
    with VideoWriter(out, 25, audio_from=wav, preset="ultrafast") as w:
        for i in range(25):
            w.write(_frame(i, 32, 32))
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        audio = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    assert np.abs(audio).max() > 0.1  # the tone survived, not silence
    assert _audio_duration(out) == pytest.approx(1.0, abs=0.06)


def test_writer_without_audio_source_audio(tmp_path):
    src = make_video(tmp_path / "silent.mp4", 5, 25)
    with VideoWriter(tmp_path / "o.mp4", 25, audio_from=src, preset="ultrafast") as w:
        w.write(_frame(0, 32, 32))
    assert not w.has_audio and not probe_video(tmp_path / "o.mp4").has_audio
    with pytest.raises(InputError, match="not found"):
        VideoWriter(tmp_path / "o2.mp4", 25, audio_from=tmp_path / "nope.mp4")


def test_writer_failure_leaves_nothing(tmp_path):
    out_dir = tmp_path / "res"
    out_dir.mkdir()
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out_dir / "o.mp4", 25, preset="ultrafast") as w:
            for i in range(5):
                w.write(_frame(i, 32, 32))
            raise RuntimeError("boom")
    assert list(out_dir.iterdir()) == []
    with pytest.raises(RuntimeError, match="boom"):
        with FrameFolderWriter(out_dir / "frames/", 25) as fw:
            fw.write(_frame(0, 32, 32))
            raise RuntimeError("boom")
    assert list(out_dir.iterdir()) == []
    with pytest.raises(OutputError, match="no frames"):
        with VideoWriter(out_dir / "o.mp4", 25):
            pass
    assert list(out_dir.iterdir()) == []
    # A wrong frame mid-way is a bug in the caller: ValueError, and still nothing left behind.
    with pytest.raises(ValueError):
        with VideoWriter(out_dir / "o.mp4", 25, preset="ultrafast") as w:
            w.write(_frame(0, 32, 32))
            w.write(_frame(1, 16, 16))
    assert list(out_dir.iterdir()) == []


def test_existing_output_replaced_atomically(tmp_path):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"old")
    with VideoWriter(out, 25, preset="ultrafast") as w:
        w.write(_frame(0, 32, 32))
    assert probe_video(out).num_frames == 1 and list(tmp_path.iterdir()) == [out]


def test_mpeg4_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(video_mod, "_video_codec", lambda: "mpeg4")
    with VideoWriter(tmp_path / "m.mp4", Fraction(30000, 1001)) as w:
        for i in range(10):
            w.write(_frame(i, 64, 64))
    assert w.codec == "mpeg4"
    info = probe_video(tmp_path / "m.mp4")
    assert info.codec == "mpeg4" and info.num_frames == 10 and info.fps_fraction == Fraction(30000, 1001)
    assert min(_psnr(f, _frame(i, 64, 64)) for i, f in enumerate(iter_frames(tmp_path / "m.mp4"))) > 28


def test_libx264_available_in_this_build():
    assert video_mod._video_codec() == "libx264"


def test_png_folder_roundtrip_exact(tmp_path):
    src = make_video(tmp_path / "src.mp4", 10, 25, audio_codec="aac")
    target = tmp_path / "frames"
    w = open_writer(str(target) + "/", Fraction(30000, 1001), audio_from=src)
    assert isinstance(w, FrameFolderWriter)
    with w:
        for i in range(6):
            w.write(_frame(i, 33, 47))
    names = sorted(p.name for p in target.iterdir())
    assert names == ["000000.png", "000001.png", "000002.png", "000003.png", "000004.png", "000005.png",
                     "audio.m4a", "fps.txt"]
    info = probe_video(target)
    assert info.num_frames == 6 and info.fps_fraction == Fraction(30000, 1001) and info.fps_known
    assert info.has_audio
    for i, f in enumerate(iter_frames(target)):
        np.testing.assert_array_equal(f, _frame(i, 33, 47))
    assert _audio_duration(target / "audio.m4a") == pytest.approx(6 * 1001 / 30000, abs=0.05)
    # An existing frame folder is picked as a folder target and replaced (no stale frames left).
    assert isinstance(open_writer(target, 25), FrameFolderWriter)
    with open_writer(target, 25) as w2:
        w2.write(_frame(0, 33, 47))
    assert sorted(p.name for p in target.iterdir()) == ["000000.png", "fps.txt"]
    assert isinstance(open_writer(tmp_path / "x.mp4", 25), VideoWriter)


def test_check_output_path(tmp_path):
    assert check_output_path(tmp_path / "new" / "deeper" / "o.mp4") == tmp_path / "new" / "deeper" / "o.mp4"
    assert not (tmp_path / "new").exists()  # checking has no side effects
    with pytest.raises(OutputError, match="unknown output extension"):
        check_output_path(tmp_path / "o.avi")
    with pytest.raises(OutputError, match="unknown output extension"):
        check_output_path(tmp_path / "o")
    (tmp_path / "adir.mp4").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_output_path(tmp_path / "adir.mp4", kind="image")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_output_path(tmp_path / "afile" / "o.mp4")
    with pytest.raises(OutputError, match="not a folder"):
        check_output_path(str(tmp_path / "afile") + "/")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("user data")
    with pytest.raises(OutputError, match="not empty"):
        check_output_path(full)
    with pytest.raises(OutputError, match="not empty"):
        open_writer(full, 25)
    check_output_path(tmp_path / "o.png", kind="image")
    with pytest.raises(OutputError, match="extension"):
        check_output_path(tmp_path / "o.mp4", kind="image")
    with pytest.raises(OutputError, match="frame rate"):
        VideoWriter(tmp_path / "o.mp4", 0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_check_output_path_read_only(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="not writable"):
            check_output_path(ro / "o.mp4")
    finally:
        ro.chmod(0o755)


def test_to_fraction():
    assert video_mod.to_fraction(25) == 25
    assert video_mod.to_fraction("30000/1001") == Fraction(30000, 1001)
    assert video_mod.to_fraction(30000 / 1001) == Fraction(30000, 1001)
    assert video_mod.to_fraction(12.5) == Fraction(25, 2)


# ------------------------------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_streaming_memory_is_flat(tmp_path):
    # 2000 frames of 256x256 RGB would be 393 MB if held in memory at once.
    path = tmp_path / "long.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 256, 256, "yuv420p"
        s.options = {"preset": "ultrafast", "tune": "zerolatency"}
        base = _frame(0, 256, 256)
        for i in range(2000):
            f = av.VideoFrame.from_ndarray(np.roll(base, i, axis=1), format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    gc.collect()
    count, rss_at_100 = 0, 0
    for _ in iter_frames(path):
        count += 1
        if count == 100:
            gc.collect()
            rss_at_100 = _rss_bytes()
    gc.collect()
    growth = _rss_bytes() - rss_at_100
    assert count == 2000
    assert growth < 40 * 2 ** 20, f"RSS grew by {growth / 2 ** 20:.1f} MiB while streaming"


def test_check_output_path_unwritable_folder_simulated(tmp_path, monkeypatch):
    # Runs as root too (where chmod cannot make a folder read-only): simulate the permission check failing.
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(OutputError, match="not writable"):
        check_output_path(tmp_path / "o.mp4")
