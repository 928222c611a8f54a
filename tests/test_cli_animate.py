"""``fomm animate`` end to end on a small model, and its handling of bad input."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fomm
from fomm.cli.main import main
from fomm.io.image import image_to_tensor, read_image, tensor_to_uint8
from fomm.io.reading import iter_frames, probe_video
from fomm.io.writing import VideoWriter


def _make_video(path: Path, frames: int = 6, size: int = 96, fps=25, audio: bool = False) -> Path:
    rng = np.random.default_rng(1)
    base = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    with VideoWriter(path, fps=fps) as w:
        for t in range(frames):
            w.write(np.roll(base, 3 * t, axis=1))
    if audio:
        import av

        # Re-mux with a sine audio track so the audio copy path is exercised.
        out = path.with_name(path.stem + "_a.mp4")
        with av.open(str(path)) as src, av.open(str(out), "w") as dst:
            vin = src.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            aout = dst.add_stream("aac", rate=44100, layout="mono")
            for pkt in src.demux(vin):
                if pkt.dts is None:
                    continue
                pkt.stream = vout
                dst.mux(pkt)
            t = np.arange(int(44100 * frames / float(fps)) + 2048) / 44100
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for i in range(0, len(samples) - 1024, 1024):
                frame = av.AudioFrame.from_ndarray(samples[None, i:i + 1024], format="flt", layout="mono")
                frame.sample_rate = 44100
                frame.pts = i
                for p in aout.encode(frame):
                    dst.mux(p)
            for p in aout.encode(None):
                dst.mux(p)
        return out
    return path


@pytest.fixture(scope="module")
def small(golden_dir):
    return ["--config", str(golden_dir / "fomm_small_main.yaml"),
            "--checkpoint", str(golden_dir / "fomm_small_main_cpk.pth.tar")]


@pytest.fixture()
def source(tmp_path) -> Path:
    p = tmp_path / "source.png"
    Image.fromarray((np.random.default_rng(0).random((120, 100, 3)) * 255).astype(np.uint8)).save(p)
    return p


def test_animate_png_frames_match_direct_model_calls(tmp_path, small, source, golden_dir):
    drv = _make_video(tmp_path / "drv.mp4", frames=5)
    out = tmp_path / "frames/"
    assert main(["animate", *small, "--source", str(source), "--driving", str(drv), "-o", str(out) + "/", "-q",
                 "--batch-size", "2"]) == 0
    got = [np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))]
    assert len(got) == 5 and got[0].shape == (128, 128, 3)

    model = fomm.load_model(golden_dir / "fomm_small_main.yaml", golden_dir / "fomm_small_main_cpk.pth.tar")
    src = image_to_tensor(read_image(source), (128, 128))
    frames = [image_to_tensor(f, (128, 128)) for f in iter_frames(drv)]
    with torch.no_grad():
        kp_s = model.kp_detector(src)
        kp_d = [model.kp_detector(f) for f in frames]
        for t in range(len(frames)):
            kp = fomm.normalize_kp(kp_s, kp_d[t], kp_d[0], use_relative_movement=True, use_relative_jacobian=True,
                                   adapt_movement_scale=True)
            ref = tensor_to_uint8(model.generator(src, kp_source=kp_s, kp_driving=kp)["prediction"])[0]
            assert np.abs(ref.astype(int) - got[t].astype(int)).max() <= 1


def test_animate_mp4_keeps_fps_audio_and_size(tmp_path, small, source):
    drv = _make_video(tmp_path / "drv.mp4", frames=8, fps=Fraction(30000, 1001), audio=True)
    assert probe_video(drv).has_audio
    out = tmp_path / "out.mp4"
    assert main(["animate", *small, "--source", str(source), "--driving", str(drv), "-o", str(out), "-q",
                 "--size", "96x64", "--absolute"]) == 0
    info = probe_video(out)
    assert info.num_frames == 8 and info.has_audio
    assert (info.width, info.height) == (96, 64)
    assert info.fps_fraction == probe_video(drv).fps_fraction


def test_best_frame_sets_reference(tmp_path, small, source):
    drv = _make_video(tmp_path / "drv.mp4", frames=4)
    a, b = f"{tmp_path}/a/", f"{tmp_path}/b/"
    assert main(["animate", *small, "--source", str(source), "--driving", str(drv), "-o", str(a), "-q"]) == 0
    assert main(["animate", *small, "--source", str(source), "--driving", str(drv), "-o", str(b), "-q",
                 "--best-frame", "2"]) == 0
    fa, fb = sorted(Path(a).glob("*.png")), sorted(Path(b).glob("*.png"))
    assert len(fa) == len(fb) == 4
    assert not np.array_equal(np.asarray(Image.open(fa[0])), np.asarray(Image.open(fb[0])))


def test_find_best_frame_uses_landmarks():
    from fomm.animate import best_frame

    pts = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float)
    calls = iter([pts, pts * 2 + [[0.5, 0], [0, 0], [0, 0], [0, 0]], None, pts * 3, pts + 0.1])

    def fake(_frame):
        return next(calls)

    assert best_frame.find_best_frame(np.zeros((8, 8, 3), np.uint8), [np.zeros((8, 8, 3), np.uint8)] * 4,
                                      landmarks=fake) == 2


def _run(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def _check_error(tmp_path, capsys, args, pattern, out_name="out.mp4"):
    code, err = _run(args, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fomm: error:"), err
    assert pattern.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / out_name).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.parametrize("case,pattern", [
    ("missing", "not found"),
    ("empty", "empty"),
    ("corrupt", ""),
    ("text", ""),
])
def test_bad_driving_video(tmp_path, capsys, small, source, case, pattern):
    drv = tmp_path / "drv.mp4"
    if case == "empty":
        drv.write_bytes(b"")
    elif case == "corrupt":
        good = _make_video(tmp_path / "good.mp4", frames=6)
        data = bytearray(good.read_bytes())
        drv.write_bytes(bytes(data[: len(data) // 3]))
    elif case == "text":
        drv.write_text("this is not a video\n")
    _check_error(tmp_path, capsys, ["animate", *small, "--source", str(source), "--driving", str(drv),
                                    "-o", str(tmp_path / "out.mp4"), "-q"], pattern)


def test_zero_frame_video(tmp_path, capsys, small, source):
    import av

    drv = tmp_path / "zero.mp4"
    with av.open(str(drv), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = 64
    _check_error(tmp_path, capsys, ["animate", *small, "--source", str(source), "--driving", str(drv),
                                    "-o", str(tmp_path / "out.mp4"), "-q"], "")


@pytest.mark.parametrize("kind", ["missing", "notimage", "tiny"])
def test_bad_source_image(tmp_path, capsys, small, kind):
    drv = _make_video(tmp_path / "drv.mp4", frames=3)
    src = tmp_path / "src.png"
    if kind == "notimage":
        src.write_text("hello")
    elif kind == "tiny":
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    _check_error(tmp_path, capsys, ["animate", *small, "--source", str(src), "--driving", str(drv),
                                    "-o", str(tmp_path / "out.mp4"), "-q"], "")


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_unusual_source_images_work(tmp_path, small, mode):
    drv = _make_video(tmp_path / "drv.mp4", frames=2)
    src = tmp_path / "src.png"
    arr = (np.random.default_rng(0).random((64, 64)) * (65535 if mode == "I;16" else 255))
    if mode == "RGBA":
        img = Image.fromarray(np.dstack([arr] * 4).astype(np.uint8), "RGBA")
    elif mode == "L":
        img = Image.fromarray(arr.astype(np.uint8), "L")
    else:
        img = Image.fromarray(arr.astype(np.uint16))
    img.save(src)
    assert main(["animate", *small, "--source", str(src), "--driving", str(drv), "-o", str(tmp_path / "o.mp4"),
                 "-q"]) == 0
    assert probe_video(tmp_path / "o.mp4").num_frames == 2


def test_bad_checkpoints(tmp_path, capsys, golden_dir, source):
    drv = _make_video(tmp_path / "drv.mp4", frames=2)
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    common = ["animate", "--source", str(source), "--driving", str(drv), "-o", str(tmp_path / "out.mp4"), "-q"]
    _check_error(tmp_path, capsys, [*common, "--config", "vox-256", "--checkpoint", str(junk)], "checkpoint")
    _check_error(tmp_path, capsys, [*common, "--config", "vox-256", "--checkpoint",
                                    str(golden_dir / "fomm_small_main_cpk.pth.tar")], "does not fit")
    _check_error(tmp_path, capsys, [*common, "--config", "vox-256"], "--checkpoint")
    _check_error(tmp_path, capsys, [*common, "--config", "nope-256", "--random-weights"], "unknown config")


def test_unwritable_output(tmp_path, capsys, small, source):
    drv = _make_video(tmp_path / "drv.mp4", frames=2)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker / "out.mp4", tmp_path / "out.xyz"):
        code, err = _run(["animate", *small, "--source", str(source), "--driving", str(drv), "-o", str(out), "-q"],
                         capsys)
        assert code == 2 and err.startswith("fomm: error:") and len(err.splitlines()) == 1, err


def test_console_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "fomm", "animate", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--driving" in res.stdout


@pytest.mark.slow
def test_find_best_frame_with_dlib_picks_the_source_itself():
    """Known answer: a driving clip that contains the source photo at index 3 has its best frame there."""
    pytest.importorskip("dlib")
    from fomm.animate.best_frame import find_best_frame
    from fomm.assets import example_path

    src = read_image(example_path("source.png"))
    frames = list(iter_frames(example_path("driving.mp4"), max_frames=5))
    frames.insert(3, src)
    assert find_best_frame(src, frames) == 3
