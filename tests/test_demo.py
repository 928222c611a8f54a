"""The Gradio demo: input checks (no Gradio needed) and the animate endpoint through gradio_client."""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hostile import bomb_jpeg, bomb_png
from PIL import Image

import fomm
from fomm.assets import example_path
from fomm.demo import jobs
from fomm.demo.examples import DRIVING_EXAMPLES, SOURCE_EXAMPLES, example_files
from fomm.demo.jobs import DemoLimits, check_driving, check_input_path, check_source, draw_keypoints
from fomm.demo.models import ModelChoice, ModelPool, checkpoint_choice, choices_from_file
from fomm.errors import CheckpointError, ConfigError, FommError, InputError
from fomm.io.reading import iter_frames, probe_video
from fomm.io.writing import VideoWriter

LIMITS = DemoLimits(max_upload_mb=1.0, max_video_seconds=30.0)


def _ten_hour_video(path: Path) -> Path:
    """10 frames at one frame per hour: a 10-hour video in a few kB."""
    with VideoWriter(path, Fraction(1, 3600)) as w:
        for i in range(10):
            w.write(np.full((64, 64, 3), 20 * i, np.uint8))
    return path


# ------------------------------------------------------------------------------------------- checks (no Gradio)


def test_examples_are_shipped_and_small():
    for entries in (SOURCE_EXAMPLES, DRIVING_EXAMPLES):
        assert len(example_files(entries)) == len(entries)
    added = ["photo.jpg", "painting.jpg", "driving-man.mp4", "driving-child.mp4"]  # the face examples
    assert sum(example_path(n).stat().st_size for n in added) < 1.5 * 2**20
    readme = example_path("README.md").read_text()
    for name, *_ in SOURCE_EXAMPLES + DRIVING_EXAMPLES:
        assert f"`{name}`" in readme, f"{name}: origin and licence missing from the assets README"


def test_paths_outside_the_uploads_are_refused(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    inside = uploads / "a.png"
    inside.write_bytes(example_path("source.png").read_bytes())
    assert check_input_path(str(inside), [uploads], "source image") == inside.resolve()
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    for bad in (str(secret), str(uploads / ".." / "secret.png"), "/etc/passwd"):
        with pytest.raises(InputError, match="must be an uploaded file or a bundled example"):
            check_input_path(bad, [uploads], "source image")
    link = uploads / "link.png"
    link.symlink_to(secret)  # a symlink inside the uploads pointing out of them is refused too
    with pytest.raises(InputError, match="must be an uploaded file"):
        check_input_path(str(link), [uploads], "source image")
    with pytest.raises(InputError, match="no source image given"):
        check_input_path(None, [uploads], "source image")


def test_bad_sources_and_drivings_give_one_line_messages(tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is text, not a picture")
    with pytest.raises(InputError, match="source image: not an image") as err:
        check_source(not_image, LIMITS)
    assert str(tmp_path) not in str(err.value)  # server paths mean nothing to the user
    with pytest.raises(InputError, match="must be an image"):
        check_source(tmp_path / "clip.mp4", LIMITS)

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(20_000))
    with pytest.raises(InputError, match="driving video: not a video, or the file is corrupt"):
        check_driving(corrupt, LIMITS)
    with pytest.raises(InputError, match=r"lasts 10\.0 hours; the limit is 30 s"):
        check_driving(_ten_hour_video(tmp_path / "long.mp4"), LIMITS)
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (LIMITS.max_upload_bytes + 1))
    with pytest.raises(InputError, match=r"is 1\.0 MB; the limit is 1 MB"):
        check_driving(big, LIMITS)
    with pytest.raises(InputError, match="must be a video"):
        check_driving(example_path("source.png"), LIMITS)
    info = check_driving(example_path("driving.mp4"), LIMITS)
    assert info.num_frames == 169
    with pytest.raises(InputError, match="has 169 frames; the limit is 100"):
        check_driving(example_path("driving.mp4"), DemoLimits(max_video_frames=100))


def test_photo_bombs_are_refused_from_their_header(tmp_path):
    """The photo goes through fomm's checked reader: a header claiming 64 MP (above fomm's 50 MP, below Pillow's own
    guard and below the demo's default max_decode_pixels) is refused in the demo's words, as is one above a lower
    max_decode_pixels; nothing is decoded (a ~100-byte file)."""
    for name, data in (("bomb.png", bomb_png(8000, 8000)), ("bomb.jpg", bomb_jpeg(8000, 8000))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as err:
            check_source(tmp_path / name, LIMITS)
        assert str(err.value) == ("the source photo is 8000x8000 pixels (64 MP), too large to open safely; photos up "
                                  "to 50 MP are accepted: scale it down first")
    (tmp_path / "wide.png").write_bytes(bomb_png(2000, 1000))
    with pytest.raises(InputError, match=r"^the source photo is 2000x1000 pixels \(2 MP\), too large to open safely; "
                                         r"photos up to 1 MP are accepted"):
        check_source(tmp_path / "wide.png", DemoLimits(max_source_pixels=64 * 64, max_decode_pixels=1_000_000))


def test_draw_keypoints_puts_each_point_where_the_detector_says():
    frame = np.full((65, 33, 3), 128, np.uint8)
    kp = np.array([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    out = draw_keypoints(frame, kp, radius=2)
    colors = jobs.keypoint_colors(3)
    assert (out[0, 0] == colors[0]).all()
    assert (out[64, 32] == colors[1]).all()
    assert (out[32, 16] == colors[2]).all()
    assert (out[10, 16] == 128).all() and (frame == 128).all()  # untouched elsewhere; input not modified
    assert len({tuple(c) for c in jobs.keypoint_colors(10)}) == 10


def test_auto_crop_checkbox_follows_animate_video(monkeypatch):
    def without(model, source, driving, output, *, relative=True):
        raise AssertionError

    def with_crop(model, source, driving, output, *, relative=True, auto_crop=False):
        raise AssertionError

    monkeypatch.setattr(jobs, "animate_video", without)
    assert jobs.auto_crop_available() is False
    monkeypatch.setattr(jobs, "animate_video", with_crop)
    assert jobs.auto_crop_available() is True


def test_model_pool_reports_load_failures_and_retries(tmp_path):
    calls = []

    def broken():
        calls.append(1)
        raise CheckpointError("x.pth: not a FOMM checkpoint")

    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"not a checkpoint")
    pool = ModelPool([ModelChoice("broken", broken), checkpoint_choice("actions-64", junk, name="junk")])
    for _ in range(2):
        with pytest.raises(FommError, match="model 'broken' failed to load: x.pth: not a FOMM checkpoint"):
            pool.get("broken")
    assert len(calls) == 2  # a failure is not cached: fixing the file and retrying works
    with pytest.raises(FommError, match="model 'junk' failed to load"):
        pool.get("junk")
    with pytest.raises(FommError, match="unknown model 'nope'; choose one of: broken, junk"):
        pool.get("nope")
    with pytest.raises(FommError, match="no model is configured"):
        ModelPool([]).get(None)
    with pytest.raises(ConfigError, match="two demo models are called 'a'"):
        ModelPool([ModelChoice("a", broken), ModelChoice("a", broken)])


def test_models_file(tmp_path):
    f = tmp_path / "models.yaml"
    f.write_text("- {name: mine, config: actions-64, checkpoint: ckpt/a.pth.tar}\n- {config: shapes-64}\n")
    choices = choices_from_file(f)
    assert [c.label for c in choices] == ["mine", "shapes-64 (random weights)"]
    assert str(tmp_path / "ckpt" / "a.pth.tar") in choices[0].description
    assert choices[1].loader().image_size == (64, 64)
    f.write_text("- {name: x, config: vox-256, weights: a.pth}\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        choices_from_file(f)
    f.write_text("just text")
    with pytest.raises(ConfigError, match="expected a list of models"):
        choices_from_file(f)


# ----------------------------------------------------------------------------------- the served app (gradio_client)

gradio = pytest.importorskip("gradio", reason="the demo needs gradio: pip install 'fomm[demo]'")
gradio_client = pytest.importorskip("gradio_client", reason="pip install gradio_client")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The demo with a random-weight 64x64 model and a model that fails to load, served on a free port."""
    from fomm.demo import build_app, launch

    def broken():
        raise CheckpointError("weights.pth: not a FOMM checkpoint (no 'generator' entry)")

    app = build_app({"actions-64 (random)": fomm.load_model("actions-64"), "broken": broken},
                    include_shipped=False, limits=LIMITS)
    launch(app, block=False)
    client = gradio_client.Client(app.local_url, verbose=False, download_files=str(tmp_path_factory.mktemp("dl")))
    yield app, client
    app.close()


def _animate(client, source: Path, driving: Path, model: str = "actions-64 (random)", **depth):
    """The endpoint as the page calls it, with the Depth & 3D inputs left at their defaults unless given (by their
    parameter names); returns (result, preview, summary)."""
    from gradio_client import handle_file

    if "plate" in depth:
        depth["plate"] = handle_file(str(depth["plate"]))
    out = client.predict(handle_file(str(source)), handle_file(str(driving)), model, "relative", True, False, False,
                         api_name="/animate", **depth)
    return out[:3]


def test_animate_endpoint_writes_the_video_with_audio(served):
    _, client = served
    video, preview, summary = _animate(client, example_path("source.png"), example_path("driving.mp4"))
    info = probe_video(video)
    drv = probe_video(example_path("driving.mp4"))
    assert (info.num_frames, info.fps_fraction, info.display_size) == (169, drv.fps_fraction, (64, 64))
    assert info.has_audio
    assert sum(1 for _ in iter_frames(video)) == 169
    pv = probe_video(preview)
    assert (pv.num_frames, pv.display_size) == (169, (256, 768))
    first = next(iter_frames(preview))
    src = next(iter_frames(example_path("source.png"), size=(256, 256)))
    assert np.abs(first[:, :256].astype(int) - src.astype(int)).mean() < 6  # left panel is the source photo
    assert summary == "169 frames, 64x64, 25 fps, with the driving audio"


def test_bad_inputs_get_a_message_and_the_server_keeps_serving(served, tmp_path):
    from gradio_client.exceptions import AppError

    _, client = served
    not_image = tmp_path / "photo.png"
    not_image.write_text("not an image")
    empty_png = tmp_path / "empty.png"
    empty_png.write_bytes(b"")
    corrupt = tmp_path / "clip.mp4"
    corrupt.write_bytes(os.urandom(30_000))
    cases = [
        ((not_image, example_path("driving-man.mp4")), "source image: not an image"),
        ((empty_png, example_path("driving-man.mp4")), "the source image is empty"),
        ((_huge_png(tmp_path / "huge.png"), example_path("driving-man.mp4")),
         r"the source photo is 20000x20000 pixels \(400 MP\), too large to open safely; .* scale it down first"),
        ((example_path("photo.jpg"), corrupt), "driving video: not a video, or the file is corrupt"),
        ((example_path("photo.jpg"), _ten_hour_video(tmp_path / "long.mp4")), "lasts 10.0 hours"),
    ]
    for (src, drv), message in cases:
        with pytest.raises(AppError, match=message):
            _animate(client, src, drv)
    with pytest.raises(AppError, match="model 'broken' failed to load: weights.pth: not a FOMM checkpoint"):
        _animate(client, example_path("photo.jpg"), example_path("driving-man.mp4"), model="broken")
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (LIMITS.max_upload_bytes + 10))
    with pytest.raises(Exception, match="(?i)(too large|max|size)"):  # refused by Gradio at upload time
        _animate(client, example_path("photo.jpg"), big)
    with pytest.raises(AppError, match="background plate: not an image") as err:  # the plate: the photo's checks
        _animate(client, example_path("photo.jpg"), example_path("driving-man.mp4"), plate=not_image)
    assert "\n" not in str(err.value) and str(tmp_path) not in str(err.value)
    with pytest.raises(AppError, match="the fog colour must be a colour like #c8d2e6, got 'mauve'"):
        _animate(client, example_path("photo.jpg"), example_path("driving-man.mp4"), fog_density=1.0,
                 fog_colour="mauve")
    # still serving: a good job after all the bad ones
    video, _, _ = _animate(client, example_path("photo.jpg"), _short_clip(tmp_path / "short.mp4"))
    assert probe_video(video).num_frames == 12


def test_the_endpoint_returns_the_depth_only_for_a_3d_job(served, tmp_path):
    from gradio_client import handle_file

    _, client = served
    clip = _short_clip(tmp_path / "short.mp4")
    args = (handle_file(str(example_path("photo.jpg"))), handle_file(str(clip)), "actions-64 (random)", "relative",
            True, False, False)
    video, _, summary, depth_video, depth_zip = client.predict(*args, parallax="swing", stereo="anaglyph",
                                                               api_name="/animate")
    assert probe_video(video).display_size == (64, 64) and "swing parallax, anaglyph stereo" in summary
    assert probe_video(depth_video).num_frames == 12 and Path(depth_zip).name == "depth-pass.zip"
    *_, depth_video, depth_zip = client.predict(*args, api_name="/animate")  # the next plain job hides them
    assert depth_video is None and depth_zip is None


def _huge_png(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit ``side`` x ``side`` PNG (all black) in ~50 kB, written chunk by chunk: 400 MP, far past
    Pillow's decompression-bomb limit, without ever holding the pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _short_clip(path: Path) -> Path:
    with VideoWriter(path, 25) as w:
        for frame in iter_frames(example_path("driving-man.mp4"), size=(96, 96), max_frames=12):
            w.write(frame)
    return path


def test_cli_rejects_bad_options_before_starting_a_server(tmp_path):
    import argparse

    from fomm.cli import demo as cli_demo

    parser = argparse.ArgumentParser(prog="fomm")
    cli_demo.register(parser.add_subparsers())
    for argv, message in ((["demo", "--checkpoint", "x.pth"], "--checkpoint needs --config"),
                          (["demo", "--models", str(tmp_path / "missing.yaml")], "cannot read the models file")):
        args = parser.parse_args(argv)
        with pytest.raises(FommError, match=message):
            args.func(args)
    # A limit out of range is refused by its argparse type, before main runs (tests/test_hostile_numbers.py checks
    # the message); main still refuses it when the namespace is built by hand.
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--random-weights", "--max-upload-mb", "0"])
    args = parser.parse_args(["demo", "--random-weights"])
    args.max_upload_mb = 0
    with pytest.raises(FommError, match="--max-upload-mb must be positive"):
        args.func(args)
    args = parser.parse_args(["demo", "--host", "0.0.0.0", "--port", "9000", "--share", "--random-weights"])
    assert (args.host, args.port, args.share, args.config) == ("0.0.0.0", 9000, True, None)


# ------------------------------------------------------------------ defaults, limits, every model, webcam sessions


def test_photo_limits_scale_down_and_cap_the_output():
    notes: list[str] = []
    limits = DemoLimits(max_source_pixels=128 * 128, max_output_pixels=100 * 100)
    photo = check_source(example_path("photo.jpg"), limits, notes)  # 512x512
    assert photo.shape == (128, 128, 3) and notes == ["the photo (512x512) was scaled down to 128x128 (limit 0.0 MP)"]
    opts = jobs.JobOptions(auto_crop=True)
    assert jobs.output_size_for(photo, opts, limits, notes) == (100, 100)  # the paste-back's size, capped, even
    assert jobs.output_size_for(np.zeros((101, 75, 3), np.uint8), opts, DemoLimits()) == (100, 74)
    assert jobs.output_size_for(photo, jobs.JobOptions(), limits) is None  # the model's working size
    with pytest.raises(InputError, match="max_source_pixels"):
        DemoLimits(max_source_pixels=0)


def _fixture_face_model(monkeypatch, tmp_path, installed: bool):
    """A downloadable face entry (random actions-64 weights) in an empty $FOMM_HOME, in the cache when
    ``installed``."""
    from fomm.checkpoint import save_checkpoint
    from fomm.pretrained import REGISTRY, PretrainedModel

    monkeypatch.setenv("FOMM_HOME", str(tmp_path / "home"))
    entry = PretrainedModel("faces-fixture-64", "fomm", "actions-64", "faces-fixture.pth.tar", "test",
                            "random weights", subject="faces", resolution=64, remote="faces-fixture.pth.tar")
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    if installed:
        m = fomm.load_model("actions-64")
        save_checkpoint(entry.path, {"generator": m.generator, "kp_detector": m.kp_detector})
    return entry


def _markdown_ids(app) -> set[str]:
    return {b.elem_id for b in app.blocks.values() if type(b).__name__ == "Markdown" and b.elem_id}


@pytest.mark.parametrize("installed", [False, True])
def test_the_page_starts_on_a_face_model_when_one_is_installed(monkeypatch, tmp_path, installed):
    from fomm.demo import build_app
    from fomm.demo.models import default_choice

    entry = _fixture_face_model(monkeypatch, tmp_path, installed)
    app = build_app()
    pool = app.fomm_pool
    start = default_choice(pool.choices)
    dropdown = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "model")
    source = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "source")
    if installed:
        assert start.label == entry.name and dropdown.value == entry.name and "face-note" not in _markdown_ids(app)
        assert "faces, 64x64" in pool.choice(entry.name).summary
        assert Path(source.value["path"]).name in {"painting.jpg", "photo.jpg", "source.png"}
    else:
        assert start.label == "actions-64" and entry.name not in pool.labels and "face-note" in _markdown_ids(app)
        note = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "face-note")
        assert "fomm download vox-256" in note.value and "--config" in note.value
        assert Path(source.value["path"]).name == "body-source.png"  # the example the body model is for


def test_examples_follow_the_subject():
    assert [p.name for p in example_files(SOURCE_EXAMPLES, "bodies")] == ["body-source.png"]
    assert [p.name for p in example_files(DRIVING_EXAMPLES, "shapes")] == ["shapes-driving.mp4"]
    assert len(example_files(SOURCE_EXAMPLES, "faces")) == 3
    assert len(example_files(SOURCE_EXAMPLES, "objects")) == len(SOURCE_EXAMPLES)  # nothing of its own: all


def test_webcam_session_restarts_resets_and_stops_at_its_limit():
    from fomm.demo.webcam import RESTART_GAP_S, LiveOptions, WebcamSession

    model = fomm.load_model("actions-64")
    src = next(iter_frames(example_path("body-source.png")))
    frames = list(iter_frames(example_path("body-driving.mp4"), max_frames=3))
    s = WebcamSession()
    t = 100.0
    assert not s.over_limit(10, now=t)
    s.animate(model, "m", src, "src", frames[0])
    first = s.animator
    assert not s.over_limit(10, now=t + 0.1)
    s.animate(model, "m", src, "src", frames[1])
    assert s.animator is first and s.frames == 2
    streaming = [s.over_limit(10, now=t + 0.1 * k) for k in range(2, 106)]  # a frame every 0.1 s for 10.5 s
    assert not any(streaming[:97]) and all(streaming[-5:])  # refused once past the limit, until...
    assert not s.over_limit(10, now=t + 10.5 + RESTART_GAP_S + 0.1)  # Stop, Record: a new start, a new clock
    s.animate(model, "m", src, "src", frames[2])
    assert s.animator is not first and s.frames == 1  # ...and a new reference pose
    second = s.animator
    s.reset()  # the button
    out = s.animate(model, "m", src, "src", frames[0], display=128, options=LiveOptions(relative=False, overlay=True))
    assert s.animator is not second and out.shape == (128, 128, 3)
    plain = s.animate(model, "m", src, "src", frames[0], display=128, options=LiveOptions(relative=False))
    assert np.abs(out.astype(int) - plain.astype(int)).max() > 50  # the keypoints are drawn


def test_webcam_frames_are_decoded_by_fomms_checked_reader(tmp_path, monkeypatch):
    """A webcam frame is whatever the browser (or a script) sends: the demo decodes it with fomm's reader, not
    Gradio's, so a bomb is refused from its header with one line, as a data URL or as an uploaded file (which is
    deleted either way), and a good frame still arrives as the RGB array the handler takes."""
    import base64

    from gradio.data_classes import ImageData

    from fomm.demo import app as demo_app

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setattr(demo_app, "get_upload_folder", lambda: str(uploads))
    cam = demo_app._WebcamImage(sources=["webcam"], streaming=True, type="numpy")
    cam.max_pixels = jobs.decode_limit(LIMITS)
    good = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(good).save(buf, format="PNG")

    def data_url(data: bytes) -> ImageData:
        return ImageData(url="data:image/png;base64," + base64.b64encode(data).decode("ascii"))

    def upload(data: bytes) -> ImageData:
        path = uploads / f"frame{len(list(uploads.iterdir()))}.png"
        path.write_bytes(data)
        return ImageData(path=str(path), orig_name="webcam.png")

    limit = "webcam frame: image is 8000x8000 = 64 MP, above fomm's limit of 50 MP; downscale it first"
    for payload in (data_url(bomb_png(8000, 8000)), upload(bomb_png(8000, 8000)), upload(bomb_jpeg(8000, 8000))):
        with pytest.raises(gradio.Error) as err:
            cam.preprocess(payload)
        assert err.value.message == limit
    with pytest.raises(gradio.Error) as err:
        cam.preprocess(upload(b"not a frame"))
    assert err.value.message == "webcam frame: not an image or an unsupported image format"
    assert list(uploads.iterdir()) == []  # each uploaded frame is gone, refused or not
    np.testing.assert_array_equal(cam.preprocess(data_url(buf.getvalue())), good)
    np.testing.assert_array_equal(cam.preprocess(upload(buf.getvalue())), good)
    assert cam.preprocess(None) is None and list(uploads.iterdir()) == []


def test_the_webcam_model_is_moved_to_its_device_once():
    pool = ModelPool([ModelChoice("m", lambda: fomm.load_model("actions-64"))])
    cpu = pool.get("m")
    assert pool.get_on("m", "cpu") is cpu
    moved = pool.get_on("m", "meta")  # any other device: a copy, made once
    assert moved is not cpu and moved.device.type == "meta" and pool.get_on("m", "meta") is moved
    assert next(cpu.generator.parameters()).device.type == "cpu"


@pytest.fixture(scope="module")
def served_shipped(tmp_path_factory):
    """The demo as `fomm demo` starts it (the shipped models, no face model in an empty cache)."""
    from fomm.demo import build_app, launch

    mp = pytest.MonkeyPatch()
    mp.setenv("FOMM_HOME", str(tmp_path_factory.mktemp("home")))
    app = build_app(limits=LIMITS)
    launch(app, block=False)
    client = gradio_client.Client(app.local_url, verbose=False, download_files=str(tmp_path_factory.mktemp("dl")))
    yield app, client
    app.close()
    mp.undo()


def test_every_offered_model_animates_and_streams(served_shipped):
    """Each model in the picker returns a video through the animate endpoint and frames through the webcam
    handler (x2face-actions-64 used to fail "the demo needs a keypoint model", monkeynet-actions-64 in the
    preview's keypoint overlay). gradio_client cannot call a streaming endpoint, so the webcam handler is called
    as Gradio calls it, with a request per browser."""
    from types import SimpleNamespace

    app, client = served_shipped
    labels = app.fomm_pool.labels
    assert {"actions-64", "monkeynet-actions-64", "x2face-actions-64"} <= set(labels)
    body, clip = example_path("body-source.png"), example_path("body-driving.mp4")
    frames = list(iter_frames(clip, max_frames=2))
    for label in labels:
        video, preview, summary = _animate(client, body, clip, model=label)
        assert probe_video(video).num_frames == 55, label
        assert probe_video(preview).display_size == (256, 768), label
        assert summary == "55 frames, 64x64, 25 fps, no audio in the driving video", label
        for motion, overlay in (("relative", False), ("absolute", True)):
            browser = SimpleNamespace(session_hash=f"{label}-{motion}")
            for frame in frames:
                out = app.fomm_live(frame, str(body), label, motion, False, overlay, browser)
                assert out.shape == (256, 256, 3) and out.dtype == np.uint8, label
    assert len(app.fomm_sessions) == 2 * len(labels)  # one session (animator) per browser


def test_the_webcam_tab_runs_the_live_engine_with_smoothing():
    """The webcam session animates through fomm.live's engine: smoothing on by default changes a jittery stream,
    and off it equals the plain animator frame for frame."""
    from fomm.animate import make_animator
    from fomm.demo.webcam import WebcamOptions, WebcamSession
    from fomm.io.image import resize_uint8, tensor_to_uint8
    from fomm.live import LiveEngine

    model = fomm.load_model("actions-64")
    src = next(iter_frames(example_path("body-source.png")))
    frames = list(iter_frames(example_path("body-driving.mp4"), max_frames=6))
    plain, smooth = WebcamSession(), WebcamSession()
    anim = make_animator(model, batch_size=1)
    anim.set_source(src)
    smoothed_differs = False
    for i, frame in enumerate(frames):
        got = plain.animate(model, "m", src, "src", frame, display=64, options=WebcamOptions(smooth=False), t=0.1 * i)
        want = resize_uint8(tensor_to_uint8(anim.animate_batch(anim.to_model_input(frame))[0]), (64, 64))
        assert np.array_equal(got, want)
        s = smooth.animate(model, "m", src, "src", frame, display=64, t=0.1 * i)
        smoothed_differs |= not np.array_equal(s, got)
    assert isinstance(smooth.engine, LiveEngine) and smooth.engine.smoothing and not plain.engine.smoothing
    assert smoothed_differs


# ------------------------------------------------------------------------------------------------------ depth & 3D


def _tiny_clip(path: Path, frames: int = 8) -> Path:
    with VideoWriter(path, 25) as w:
        for frame in iter_frames(example_path("body-driving.mp4"), size=(64, 64), max_frames=frames):
            w.write(frame)
    return path


@pytest.fixture(scope="module")
def tiny_model():
    return fomm.load_model("actions-64")  # random weights, 64x64: the depth stage needs only its motion field


def test_depth_settings_are_checked_in_the_pages_words():
    assert not jobs.DepthSettings().active and not jobs.DepthSettings().compositing
    assert jobs.DepthSettings(depth_pass=True).active and not jobs.DepthSettings(depth_pass=True).compositing
    assert jobs.DepthSettings(fog_density=1.0).compositing
    for kwargs, message in (({"parallax": "spin"}, "parallax move must be one of none, orbit"),
                            ({"parallax_amount": 0.5}, "parallax amount must be a number from 0 to 0.25"),
                            ({"divergence": float("nan")}, "stereo divergence must be a number"),
                            ({"focus": "1"}, "focus must be a number"), ({"aperture": -1}, "aperture"),
                            ({"fog_density": 51}, "fog density"), ({"plate_depth": 2}, "plate depth"),
                            ({"dof": "yes"}, "depth of field must be true or false"),
                            ({"fog_colour": "mauve"}, "fog colour must be a colour")):
        with pytest.raises(InputError, match=message):
            jobs.DepthSettings(**kwargs)
    assert jobs.parse_colour("#C8D2E6") == (200.0, 210.0, 230.0) == jobs.parse_colour("rgba(200, 210, 230, 1)")
    opts = jobs.DepthSettings(parallax="dolly", stereo="htb", dof=True, fog_density=2, fog_colour="#000").\
        composite_options()
    assert (opts.parallax.move, opts.stereo.format, opts.dof, opts.fog) == ("dolly", "htb", (0.8, 2.0),
                                                                           (2.0, (0.0, 0.0, 0.0)))


def test_stereo_layouts_that_grow_the_frame_stay_within_the_output_cap():
    photo = np.zeros((64, 64, 3), np.uint8)
    opts = jobs.JobOptions()
    roomy = DemoLimits()
    for stereo in (None, "sbs", "tb", "hsbs", "anaglyph"):  # within the cap: the model's size, as before
        assert jobs.output_size_for(photo, opts, roomy, stereo=stereo, model_size=(256, 256)) is None
    notes: list[str] = []
    tight = DemoLimits(max_output_pixels=256 * 256)
    assert jobs.output_size_for(photo, opts, tight, notes, stereo="sbs", model_size=(256, 256)) == (180, 180)
    assert notes == ["output capped at 360x180, each eye 180x180 (limit 0.1 MP)"]  # 360*180 <= 256*256
    assert jobs.output_size_for(photo, opts, tight, stereo="tb", model_size=(256, 256)) == (180, 180)
    assert jobs.output_size_for(photo, opts, tight, stereo="hsbs", model_size=(256, 256)) is None
    crop = jobs.JobOptions(auto_crop=True)  # the auto-crop cap counts the packed frame too
    assert jobs.output_size_for(np.zeros((512, 512, 3), np.uint8), crop, tight, stereo="cross") == (180, 180)


def test_a_3d_job_writes_stereo_the_depth_preview_and_the_zipped_depth_pass(tiny_model, tmp_path):
    import json
    import zipfile

    from PIL import Image

    clip = _tiny_clip(tmp_path / "clip.mp4")
    job = tmp_path / "job"
    job.mkdir()
    steps = list(jobs.job_steps(tiny_model, example_path("body-source.png"), clip, job, jobs.JobOptions(), LIMITS,
                                depth=jobs.DepthSettings(stereo="sbs", parallax="swing", fog_density=1.0)))
    first, last = steps
    assert first.preview is None and first.depth_zip is not None  # the depth is there with the result
    assert probe_video(last.video).display_size == (64, 128)  # side by side: twice as wide
    assert "128x64" in last.summary and "swing parallax, sbs stereo, fog" in last.summary
    assert "portrait" in last.summary or "depth-anything" in last.summary
    assert probe_video(last.preview).display_size == (256, 1024)  # the stereo panel keeps its 2:1 shape
    depth_video = probe_video(last.depth_preview)
    assert (depth_video.num_frames, depth_video.display_size) == (8, (64, 64))  # one eye's depth per frame
    grey = next(iter_frames(last.depth_preview)).astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 3 and grey.max() - grey.min() > 50  # grey, not flat
    with zipfile.ZipFile(last.depth_zip) as zf:
        names = sorted(zf.namelist())
        assert names == [f"depth/{i:06d}.png" for i in range(8)] + ["depth/depth.json"]
        meta = json.loads(zf.read("depth/depth.json"))
        with zf.open("depth/000000.png") as f, Image.open(f) as img:
            assert img.mode.startswith("I;16") and img.size == (64, 64)
    assert meta["num_frames"] == 8 and meta["near"] == 1.0 and meta["source"] == "body-source.png"
    assert str(tmp_path) not in json.dumps(meta)  # the zip leaves the server: no server paths in it
    assert not [p.name for p in job.iterdir() if p.name.startswith(".")]  # no temporaries left behind


def _photo_depth(h: int, w: int) -> np.ndarray:
    """The photo's depth, defined on the photo's own coordinates (so "scaled" has a meaning): a ramp in x steeper
    than the round bump on it is anywhere (a move to the right shows everywhere), in [0.1, 0.9]."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = u / (w - 1), v / (h - 1)
    return (0.1 + 0.7 * u + 0.1 * np.exp(-((u - 0.5) ** 2 + (v - 0.5) ** 2) / 0.05)).astype(np.float32)


class _KnownDepth:
    """A depth estimator whose answer is known (:func:`_photo_depth` at the size it is handed); it keeps the shapes
    it was handed."""

    name = "known"

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def __call__(self, image: np.ndarray) -> np.ndarray:
        self.seen.append(image.shape)
        return _photo_depth(*image.shape[:2])


def _shift_motion(monkeypatch, shift_px: int) -> None:
    """Every animated frame's motion becomes a known move right by ``shift_px`` model pixels (the colour stays the
    random model's), so the depth inside the face box has an answer to compare with."""
    import dataclasses

    import torch

    from fomm.animate.fomm import Animator

    original = Animator.animate_outputs

    def moved(self, frames):
        out = original(self, frames)
        b, _, h, w = out.prediction.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        grid = torch.stack([xs - 2.0 * shift_px / (w - 1), ys], -1)[None].expand(b, -1, -1, -1)
        return dataclasses.replace(out, deformation=grid, occlusion_map=None, aligned=True)

    monkeypatch.setattr(Animator, "animate_outputs", moved)


def test_auto_crop_with_3d_pastes_the_depth_back_at_the_scaled_and_capped_size(tiny_model, tmp_path, monkeypatch):
    """Auto-crop with stereo, parallax and the depth download, on a photo past the scale-down limit: the face box,
    the depth estimate and the paste-back all see the scaled photo; the video is the scaled photo's size capped for
    the SBS pair; the depth pass has one map per frame at one eye's size, equal to the photo's depth outside the
    face box and to the face crop's depth moved like the colour inside it."""
    import zipfile

    from fomm.compositing.depth import estimators, read_depth, read_sidecar, resize_depth
    from fomm.io.image import write_image

    # 480x320 upload -> scaled to 240x160 (0.0384 MP); the SBS pair of that (480x160) -> capped to 240x80, 120x80 an eye
    limits = DemoLimits(max_upload_mb=5.0, max_video_seconds=30.0, max_source_pixels=240 * 160,
                        max_output_pixels=240 * 80)
    yy, xx = np.mgrid[0:320, 0:480]
    write_image(tmp_path / "photo.png", np.stack([xx * 255 // 479, yy * 255 // 319, (xx + yy) % 256], -1)
                .astype(np.uint8))
    face = (200, 80, 280, 160)  # in the upload's pixels: (100, 40, 140, 80) in the scaled photo's
    box = (80, 20, 160, 100)  # the scaled face grown by the default crop increase (0.5 a side): an 80-pixel square
    detected: list[tuple[int, ...]] = []

    def find_face(image: np.ndarray, backend: str = "auto") -> tuple[int, ...]:
        detected.append(image.shape)
        scale = image.shape[1] / 480
        return tuple(round(v * scale) for v in face)

    monkeypatch.setattr("fomm.crop.detect.find_face_box", find_face)
    monkeypatch.setattr("fomm.animate.autocrop.driving_face_box",
                        lambda path, increase=None, **kw: ((0, 0, 64, 64), (0, 0, 64, 64)))
    known = _KnownDepth()
    monkeypatch.setitem(estimators.ESTIMATORS, "auto", lambda options: known)
    _shift_motion(monkeypatch, 8)  # 8 of the model's 64 pixels: 10 of the 80-pixel box, 5 of the output's
    clip = _tiny_clip(tmp_path / "clip.mp4")
    job = tmp_path / "job"
    job.mkdir()
    first, last = jobs.job_steps(tiny_model, tmp_path / "photo.png", clip, job, jobs.JobOptions(auto_crop=True),
                                 limits, depth=jobs.DepthSettings(stereo="sbs", parallax="swing", depth_pass=True))
    assert first.depth_zip is not None and last.preview is not None
    assert detected == known.seen == [(160, 240, 3)]  # the face and the depth come from the same, scaled, photo
    video = probe_video(last.video)
    assert (video.num_frames, video.display_size) == (8, (80, 240))  # two 120x80 eyes side by side
    assert "8 frames, 240x80" in last.summary and "swing parallax, sbs stereo" in last.summary
    assert "scaled down to 240x160" in last.summary and "output capped at 240x80, each eye 120x80" in last.summary
    depth_video = probe_video(last.depth_preview)
    assert (depth_video.num_frames, depth_video.display_size) == (8, (80, 120))

    with zipfile.ZipFile(last.depth_zip) as zf:
        assert sorted(zf.namelist()) == [f"depth/{i:06d}.png" for i in range(8)] + ["depth/depth.json"]
        zf.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / "depth"
    meta = read_sidecar(folder)
    assert (meta["num_frames"], meta["height"], meta["width"], meta["estimator"]) == (8, 80, 120, "known")
    photo_depth = _photo_depth(160, 240)
    expect = resize_depth(photo_depth, (80, 120))  # the scaled photo's depth, resized like the frame
    shifted = resize_depth(np.roll(photo_depth, 10, axis=1), (80, 120))  # ... with the face moved 10 pixels right
    left, top, right, bottom = (v // 2 for v in box)  # the box at the output's size
    far = np.ones((80, 120), bool)
    far[top - 2:bottom + 2, left - 2:right + 2] = False  # plus the resize's reach
    inner = np.zeros((80, 120), bool)  # past the feathered rim (4 pixels here), the 5 filled columns and the resize
    inner[top + 6:bottom - 6, left + 11:right - 6] = True
    assert np.abs(expect[inner] - shifted[inner]).min() > 0.01  # the move shows everywhere it is checked
    for i in range(8):
        d = read_depth(folder / f"{i:06d}.png")
        assert d.shape == (80, 120)
        np.testing.assert_allclose(d[far], expect[far], atol=1 / 65535, err_msg=f"frame {i}: depth outside the box")
        np.testing.assert_allclose(d[inner], shifted[inner], atol=0.001, err_msg=f"frame {i}: the face's depth")


def test_with_nothing_set_the_job_is_the_one_without_the_section(tiny_model, tmp_path, monkeypatch):
    from fomm.compositing import depth as depth_pkg

    clip = _tiny_clip(tmp_path / "clip.mp4")
    before, untouched = tmp_path / "before", tmp_path / "untouched"
    before.mkdir()
    untouched.mkdir()
    plain = jobs.run_job(tiny_model, example_path("body-source.png"), clip, before, jobs.JobOptions(), LIMITS)

    def no_depth(*args, **kwargs):
        raise AssertionError("depth estimated for a job that asked for none")

    monkeypatch.setattr(depth_pkg, "source_depth_stage", no_depth)
    same = jobs.run_job(tiny_model, example_path("body-source.png"), clip, untouched, jobs.JobOptions(), LIMITS,
                        depth=jobs.DepthSettings())
    assert same.video.read_bytes() == plain.video.read_bytes()
    assert same.summary == plain.summary and same.depth_zip is None and same.depth_preview is None
    assert sorted(p.name for p in untouched.iterdir()) == ["preview.mp4", "result.mp4"]
    monkeypatch.undo()
    # the depth pass on its own adds the depth and leaves the video as it was
    only = tmp_path / "only"
    only.mkdir()
    passed = jobs.run_job(tiny_model, example_path("body-source.png"), clip, only, jobs.JobOptions(), LIMITS,
                          depth=jobs.DepthSettings(depth_pass=True))
    assert passed.video.read_bytes() == plain.video.read_bytes() and passed.depth_zip.is_file()


def test_a_bad_plate_or_model_gives_one_line_before_any_work(tiny_model, tmp_path):
    clip = _tiny_clip(tmp_path / "clip.mp4")
    not_image = tmp_path / "plate.png"
    not_image.write_text("not a picture")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    bomb = tmp_path / "plate.jpg"
    bomb.write_bytes(bomb_jpeg(8000, 8000))
    cases = [(jobs.DepthSettings(plate=not_image), tiny_model, "background plate: not an image"),
             (jobs.DepthSettings(plate=empty), tiny_model, "the background plate is empty"),
             (jobs.DepthSettings(plate=tmp_path / "clip.mp4"), tiny_model, "the background plate must be an image"),
             (jobs.DepthSettings(plate=bomb), tiny_model,
              r"^the background plate is 8000x8000 pixels \(64 MP\), too large to open safely"),
             (jobs.DepthSettings(stereo="anaglyph"), fomm.load_model("actions-64", model="monkeynet"),
              "Depth & 3D needs a First Order Motion model")]
    for i, (settings, model, message) in enumerate(cases):
        job = tmp_path / f"job{i}"
        job.mkdir()
        with pytest.raises(InputError, match=message) as err:
            jobs.run_job(model, example_path("body-source.png"), clip, job, jobs.JobOptions(), LIMITS,
                         depth=settings)
        assert "\n" not in str(err.value) and str(tmp_path) not in str(err.value)
        assert list(job.iterdir()) == []  # refused before anything was written


def test_messages_name_the_pages_controls_not_command_line_flags(monkeypatch):
    """The no-face refusal comes from the library, which speaks of ``--auto-crop``; the page has a checkbox."""
    import fomm.crop.paste as paste
    from fomm.demo.app import ui_message

    monkeypatch.setattr(paste, "find_face_box", lambda image, backend: None)
    with pytest.raises(InputError) as err:
        paste.auto_crop_image(np.zeros((64, 64, 3), np.uint8))
    assert "--auto-crop" in str(err.value)
    shown = ui_message(err.value)
    assert "--" not in shown and "untick 'Auto-crop the face'" in shown and shown.startswith("no face found")
