"""``fomm live``: the engine, its threads and queues, the outputs, the remote worker and bad input.

No camera and no GPU: driving clips made here from the shared face video stand in for the camera (a file is played
at its own frame rate, as a camera delivers frames). The small models keep the suite fast: the shipped
``actions-64`` (64x64) for the pipeline, the golden 128x128 FOMM for the keypoint smoothing (its keypoints follow a
moving face). The window test runs a real OpenCV window under Xvfb and saves ``docs/live.png`` when
``FOMM_LIVE_SCREENSHOT=1``.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile import assert_refused, bomb_jpeg, bomb_png, run_main
from PIL import Image

import fomm
from fomm.animate import make_animator
from fomm.errors import FommError, InputError
from fomm.io.reading import iter_frames
from fomm.io.writing import VideoWriter
from fomm.live.control import CommandQueue, parse_command
from fomm.live.engine import LiveEngine, LiveOptions, load_sources
from fomm.live.outputs import MemoryOutput, MjpegOutput, parse_outputs
from fomm.live.runner import LatestSlot, LiveRunner, RunOptions
from fomm.live.smoothing import KeypointSmoother, OneEuroConfig
from fomm.live.sources import VideoFileSource

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def face(data_dir) -> Path:
    return data_dir / "faces/tpsmm"


@pytest.fixture(scope="module")
def model():
    return fomm.load_model("actions-64")


def _clip(src: Path, out: Path, fps: int, frames: int, size: int = 64) -> Path:
    with VideoWriter(out, fps) as w:
        for frame in iter_frames(src, size=(size, size), max_frames=frames):
            w.write(frame)
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory, face):
    folder = tmp_path_factory.mktemp("live")
    return {"short": _clip(face / "driving.mp4", folder / "short.mp4", 25, 12),
            "30fps": _clip(face / "driving.mp4", folder / "30fps.mp4", 30, 90),
            "folder": folder}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


# ---------------------------------------------------------------------------------------------------- engine
def test_every_frame_record_equals_fomm_animate(tmp_path, face, clips):
    """Nothing dropped (``--every-frame``: the file waits for the model), smoothing off: the recording is
    ``fomm animate``'s video within 1 LSB per pixel."""
    live_out, ref_out = tmp_path / "live.mp4", tmp_path / "animate.mp4"
    source = face / "source.png"
    res = run_main(["live", "--source", source, "--driving", clips["short"], "--output", f"record:{live_out}",
                    "--every-frame", "--once", "--smooth", "off", "--pretrained", "actions-64", "--precision", "fp32"])
    assert res.rc == 0, res.stderr
    res = run_main(["animate", "--source", source, "--driving", clips["short"], "-o", ref_out, "--pretrained",
                    "actions-64", "--batch-size", "1", "--no-audio", "-q"])
    assert res.rc == 0, res.stderr
    live, ref = list(iter_frames(live_out)), list(iter_frames(ref_out))
    assert len(live) == len(ref) == 12
    worst = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(live, ref, strict=True))
    assert worst <= 1


def test_engine_folder_switch_keeps_calibration(tmp_path, model, face, clips):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = np.asarray(Image.open(face / "source.png").convert("RGB"))
    Image.fromarray(photo).save(folder / "a10.png")
    Image.fromarray(photo[:, ::-1]).save(folder / "a2.png")
    (folder / "notes.txt").write_text("not a photo")
    sources = load_sources(folder)
    assert [s.name for s in sources] == ["a2.png", "a10.png"]  # natural order
    engine = LiveEngine.for_model(model, sources, LiveOptions(smooth=False))
    frames = list(iter_frames(clips["short"]))
    first = engine.process(frames[0], t=0.0)
    engine.command("next")
    switched = engine.process(frames[0], t=0.04)
    engine.command("previous")
    back = engine.process(frames[0], t=0.08)
    assert (first.source_index, switched.source_index, back.source_index) == (0, 1, 0)
    assert not np.array_equal(first.frame, switched.frame)
    np.testing.assert_array_equal(first.frame, back.frame)  # same photo, same reference pose: same frame
    engine.command("overlay")
    view = engine.process(frames[5], t=0.12)
    assert view.overlay and view.frame.shape == first.frame.shape


# ---------------------------------------------------------------------------------------------------- threads
def test_latest_slot_newest_wins_and_counts_drops():
    slot = LatestSlot()
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.depth == 1 and slot.dropped == 2 and slot.get(timeout=0) == 3 and slot.get(timeout=0) is None
    slot.close()
    assert slot.put(4) is False and slot.get() is None
    waiting = LatestSlot(wait_for_space=True)
    waiting.put("a")
    got = []
    th = threading.Thread(target=lambda: got.append(waiting.put("b")))
    th.start()
    time.sleep(0.05)
    assert th.is_alive()  # back-pressure: the producer waits instead of dropping "a"
    assert waiting.get() == "a"
    th.join(timeout=2)
    assert got == [False] and waiting.get() == "b" and waiting.dropped == 0


class SlowEngine:
    """A live engine whose model takes ``seconds`` per frame (sleeps up to that)."""

    def __init__(self, engine: LiveEngine, seconds: float) -> None:
        self.engine, self.seconds = engine, seconds

    def prepare(self, frame, t, index):
        return self.engine.prepare(frame, t, index)

    def animate(self, prepared):
        start = time.perf_counter()
        result = self.engine.animate(prepared)
        time.sleep(max(0.0, self.seconds - (time.perf_counter() - start)))
        return result

    def command(self, name):
        return self.engine.command(name)


def test_slow_model_keeps_latency_bounded(model, face, clips):
    """Model 100 ms per frame, source 30 frames/s: one frame per queue at most, increasing timestamps, p95
    capture-to-output latency within the model time plus two frame intervals, drops counted."""
    engine = SlowEngine(LiveEngine.for_model(model, [np.asarray(Image.open(face / "source.png").convert("RGB"))]),
                        0.100)
    out = MemoryOutput()
    runner = LiveRunner(engine, VideoFileSource(clips["30fps"]), [out], RunOptions(max_frames=20, warmup=2))
    stats = runner.run()
    assert stats["max_queue_depth"] == 1
    assert stats["timestamps_increasing"]
    times = [r.t for r in out.results]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    model_p95 = stats["latency"]["model"]["p95_ms"]
    assert model_p95 >= 100
    assert stats["latency"]["capture_to_output"]["p95_ms"] <= model_p95 + 2 * 1000 / 30
    # ~3 frames arrive per animated one: about two of them are dropped, and the JSON says so.
    assert stats["dropped"]["total"] >= 20 and stats["fps_in"] > 2 * stats["fps_out"]
    json.dumps(stats)


def test_benchmark_prints_json(face, clips):
    res = run_main(["live", "--source", face / "source.png", "--driving", clips["30fps"], "--benchmark", "8",
                    "--pretrained", "actions-64"])
    assert res.rc == 0, res.stderr
    stats = json.loads(res.stdout)
    assert stats["frames_out"] == 8 and stats["warmup_frames"] == 5
    for key in ("fps_in", "fps_out", "dropped", "latency", "max_queue_depth"):
        assert key in stats
    for stage in ("queue", "prepare", "model", "output", "capture_to_output"):
        assert set(stats["latency"][stage]) == {"p50_ms", "p95_ms", "max_ms"}


# ---------------------------------------------------------------------------------------------------- smoothing
def _still_head(photo: np.ndarray, size: int, frames: int, step_at: int | None = None, step: int = 6,
                seed: int = 0) -> list[np.ndarray]:
    """A still head: one photo with fresh sensor noise (sigma 4 levels) per frame; from ``step_at`` on the head
    is ``step`` pixels to the left (a step motion)."""
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.fromarray(photo).resize((size + 40, size + 40)), dtype=np.float32)
    out = []
    for i in range(frames):
        s = step if step_at is not None and i >= step_at else 0
        crop = base[20:20 + size, 20 + s:20 + s + size]
        out.append(np.clip(crop + rng.normal(0, 4.0, crop.shape), 0, 255).astype(np.uint8))
    return out


def test_one_euro_halves_jitter_with_at_most_one_frame_of_lag(golden_dir, face):
    small = fomm.load_model(golden_dir / "fomm_small_main.yaml", golden_dir / "fomm_small_main_cpk.pth.tar")
    anim = make_animator(small, batch_size=1)
    size = small.image_size[0]
    photo = np.asarray(Image.open(face / "source.png").convert("RGB"))

    def track(frames, smoother=None):
        kps = [anim.keypoints(anim.to_model_input(f)) for f in frames]
        if smoother is not None:
            kps = [smoother(kp, i / 30) for i, kp in enumerate(kps)]  # 30 frames/s
        return torch.stack([kp["value"][0] for kp in kps])  # [T, K, 2]

    def jitter(values):
        return float((values[1:] - values[:-1]).norm(dim=-1).mean())

    still = _still_head(photo, size, 60)
    raw, smooth = track(still), track(still, KeypointSmoother())
    ratio = jitter(smooth) / jitter(raw)
    assert ratio <= 0.5, ratio

    at = 30
    stepped = _still_head(photo, size, 50, step_at=at, seed=1)
    raw, smooth = track(stepped), track(stepped, KeypointSmoother())
    before, after = raw[at - 10:at].mean(0), raw[at + 1:].mean(0)
    move = after - before
    moving = move.norm(dim=-1) > 3 * jitter(raw[:at])  # keypoints the step clearly moved

    def first_half_way(values):
        covered = ((values[at - 1:] - before) * move).sum(-1) / (move * move).sum(-1)  # 0 before, 1 after
        return int(np.argmax(covered[:, moving].mean(-1).numpy() >= 0.5))

    assert moving.sum() >= 3
    lag = first_half_way(smooth) - first_half_way(raw)
    assert lag <= 1, lag


def test_one_euro_config_is_range_checked():
    with pytest.raises(InputError, match="min_cutoff"):
        OneEuroConfig(min_cutoff=0)
    with pytest.raises(InputError, match="beta"):
        OneEuroConfig(beta=float("nan"))
    kp = {"value": torch.zeros(1, 3, 2)}
    sm = KeypointSmoother()
    assert sm(kp, 0.0)["value"] is kp["value"]  # the first frame passes through
    moved = sm({"value": torch.ones(1, 3, 2)}, 0.0)["value"]  # a repeated timestamp is not an error
    assert torch.all((moved > 0) & (moved <= 1))


# ---------------------------------------------------------------------------------------------------- outputs
def _read_parts(port: int, count: int, timeout: float = 30.0) -> list[tuple[int, np.ndarray]]:
    """The first ``count`` JPEG parts of http://127.0.0.1:PORT/stream as ``(frame index, RGB array)``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", "/stream")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("multipart/x-mixed-replace")
    parts = []
    while len(parts) < count:
        line = resp.readline()
        if not line.startswith(b"--fommframe"):
            continue
        headers = {}
        while (line := resp.readline().strip()):
            key, _, value = line.decode().partition(":")
            headers[key.lower()] = value.strip()
        data = resp.read(int(headers["content-length"]))
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        parts.append((int(headers["x-frame-index"]), image))
    conn.close()
    return parts


def test_mjpeg_stream_serves_the_engine_frames_and_takes_commands(model, face, clips):
    engine = LiveEngine.for_model(model, [np.asarray(Image.open(face / "source.png").convert("RGB"))])
    memory, mjpeg = MemoryOutput(), MjpegOutput(0)
    runner = LiveRunner(engine, VideoFileSource(clips["30fps"]), [memory, mjpeg], RunOptions(max_frames=40))
    got: dict = {}
    th = threading.Thread(target=lambda: got.update(stats=runner.run()))
    th.start()
    try:
        parts = _read_parts(mjpeg.port, 8)
        conn = http.client.HTTPConnection("127.0.0.1", mjpeg.port, timeout=10)
        conn.request("POST", "/control/smooth")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        th.join(timeout=60)
    assert got["stats"]["frames_out"] == 40
    by_index = {r.index: r.frame for r in memory.results}
    for index, image in parts:
        assert _psnr(image, by_index[index]) > 30  # JPEG quality 90 of the engine's own frame
    assert [r.smoothed for r in memory.results][0] and not memory.results[-1].smoothed  # the POST reached it


# ---------------------------------------------------------------------------------------------------- window
def _free_display() -> int:
    for n in range(99, 199):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    pytest.skip("no free X display number")


@pytest.fixture
def xvfb(monkeypatch):
    if shutil.which("Xvfb") is None:
        pytest.skip("the window test needs Xvfb: apt-get install xvfb")
    n = _free_display()
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if Path(f"/tmp/.X11-unix/X{n}").exists():
            break
        time.sleep(0.05)
    monkeypatch.setenv("DISPLAY", f":{n}")
    yield f":{n}"
    proc.terminate()
    proc.wait(timeout=10)


class Screenshot:
    """An output after the window: at frame ``at`` it lets the window paint, then grabs the X screen."""

    def __init__(self, window, display: str, at: int) -> None:
        self.window, self.display, self.at, self.count = window, display, at, 0
        self.shot = self.shown = self.result = self.rect = None

    def write(self, result, status):
        self.count += 1
        if self.count != self.at:
            return
        from PIL import ImageGrab

        assert self.window.wait_shown()
        time.sleep(0.5)  # let the X server paint it
        self.rect = self.window.rect
        self.shot = np.asarray(ImageGrab.grab(xdisplay=self.display).convert("RGB"))
        self.shown, self.result = self.window.last_display, result

    def close(self, ok):
        pass


def test_window_under_xvfb_shows_the_animated_frame(xvfb, face, clips, golden_dir):
    pytest.importorskip("cv2")
    from fomm.live.outputs import WindowOutput, opencv_gui

    try:
        opencv_gui()
    except FommError as err:
        pytest.skip(str(err))
    small = fomm.load_model(golden_dir / "fomm_small_main.yaml", golden_dir / "fomm_small_main_cpk.pth.tar")
    engine = LiveEngine.for_model(small, [np.asarray(Image.open(face / "source.png").convert("RGB"))])
    window = WindowOutput(display=512)
    probe = Screenshot(window, xvfb, at=6)
    stats = LiveRunner(engine, VideoFileSource(clips["30fps"]), [window, probe], RunOptions(max_frames=8)).run()
    assert stats["frames_out"] == 8 and probe.shot is not None
    x, y, w, h = probe.rect
    shown = probe.shot[y:y + h, x:x + w]
    assert shown.shape == probe.shown.shape  # the whole frame is on screen, 1:1
    k = 512 // probe.result.frame.shape[0]
    animated = np.repeat(np.repeat(probe.result.frame, k, axis=0), k, axis=1)
    # Below the status lines and left of the inset, the screen shows the engine's frame pixel for pixel.
    rows, cols = slice(60, 300), slice(0, 300)
    assert np.abs(shown[rows, cols].astype(int) - animated[rows, cols]).max() <= 2
    if os.environ.get("FOMM_LIVE_SCREENSHOT"):
        Image.fromarray(shown).save(REPO / "docs" / "live.png")


# ---------------------------------------------------------------------------------------------------- worker
def test_worker_round_trip_survives_a_restart(model, face, clips):
    from fomm.live.worker import LiveWorker, RemoteEngine

    photo = np.asarray(Image.open(face / "source.png").convert("RGB"))
    opts = LiveOptions(smooth=False)

    def start(port):
        worker = LiveWorker(model, port)
        th = threading.Thread(target=worker.serve_forever, daemon=True)
        th.start()
        return worker, th

    worker, th = start(0)
    port = worker.port
    remote = RemoteEngine(f"127.0.0.1:{port}", [photo], opts, retry_every=0.05)
    local = LiveEngine.for_model(model, [photo], opts)
    frames = list(iter_frames(clips["30fps"], max_frames=30))
    results = {}
    try:
        for i, frame in enumerate(frames):
            if i == 10:  # the worker restarts mid-stream
                worker.stop()
                th.join(timeout=10)
                worker, th = start(port)
            got = None
            for _ in range(100):
                got = remote.animate(remote.prepare(frame, i / 30, i))
                if got is not None:
                    break
                time.sleep(0.02)
            assert got is not None, f"frame {i}: no reconnect"
            results[i] = got
    finally:
        worker.stop()
        remote.close()
    assert remote.reconnects == 1 and worker.frames == 20
    for i, frame in enumerate(frames):
        want = local.process(frame, t=i / 30).frame
        assert _psnr(results[i].frame, want) > 28, i  # two JPEG trips (frame there, result back)
        assert results[i].timings["network"] >= 0


def test_worker_refuses_a_decompression_bomb_and_serves_the_next_frame(model, face, clips):
    """A client's frame (or photo) is decoded through fomm's checked reader: one whose header claims 64 MP (above
    fomm's 50 MP limit, below Pillow's own guard) or 4 GP gets an error reply saying so, before a pixel is decoded;
    that client is dropped, and the worker answers the next client's good frame."""
    from fomm.live.worker import VERSION, LiveWorker, RemoteEngine, encode_png, recv_message, send_message

    photo = np.asarray(Image.open(face / "source.png").convert("RGB"))
    opts = LiveOptions(smooth=False)
    e = opts.one_euro
    hello = {"type": "hello", "version": VERSION, "relative": True, "adapt_movement_scale": True,
             "one_euro": [e.min_cutoff, e.beta, e.d_cutoff]}
    frame = {"type": "frame", "index": 0, "t": 0.0, "smooth": False, "calibrate": True}
    worker = LiveWorker(model, 0)
    th = threading.Thread(target=worker.serve_forever, daemon=True)
    th.start()

    def refused(kind: str, payload: bytes, with_source: bool) -> str:
        with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as sock:
            send_message(sock, hello)
            assert recv_message(sock)[0]["type"] == "hello"
            if with_source:
                send_message(sock, {"type": "source", "name": "photo"}, encode_png(photo))
                assert recv_message(sock)[0]["type"] == "ok"
            send_message(sock, frame if kind == "frame" else {"type": kind, "name": "photo"}, payload)
            reply, _ = recv_message(sock)
            with pytest.raises(ConnectionError):  # the worker hung up on this client
                recv_message(sock)
        assert reply["type"] == "error", reply
        return reply["message"]

    limit = "above fomm's limit of 50 MP; downscale it first"
    try:
        start = time.perf_counter()
        assert refused("frame", bomb_jpeg(8000, 8000), True) == f"frame: image is 8000x8000 = 64 MP, {limit}"
        assert refused("frame", bomb_png(8000, 8000), True) == f"frame: image is 8000x8000 = 64 MP, {limit}"
        assert refused("frame", bomb_jpeg(65000, 65000), True) == f"frame: image is 65000x65000 = 4,225 MP, {limit}"
        assert refused("source", bomb_png(8000, 8000), False) == f"source photo: image is 8000x8000 = 64 MP, {limit}"
        assert refused("frame", b"\xff\xd8 not a jpeg", True) == "frame: not an image or an unsupported image format"
        assert time.perf_counter() - start < 10  # nothing was decoded
        assert th.is_alive() and worker.frames == 0
        remote = RemoteEngine(f"127.0.0.1:{worker.port}", [photo], opts)
        try:
            driving = next(iter_frames(clips["short"], max_frames=1))
            got = remote.animate(remote.prepare(driving, 0.0, 0))
        finally:
            remote.close()
        assert got is not None and got.frame.shape == (64, 64, 3) and worker.frames == 1
    finally:
        worker.stop()
        th.join(timeout=10)


# ---------------------------------------------------------------------------------------------------- bad input
def test_controls_and_output_specs():
    assert parse_command("cal") == "calibrate" and parse_command(" q\n") == "quit" and parse_command("x") is None
    specs = parse_outputs("window, mjpeg:8090,record:a.mp4")
    assert [(s.kind, s.arg) for s in specs] == [("window", None), ("mjpeg", "8090"), ("record", "a.mp4")]
    queue = CommandQueue()
    queue.put("next")
    assert queue.drain() == ["next"] and queue.drain() == []


@pytest.fixture
def busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_bad_input_is_one_line(tmp_path, face, clips, busy_port):
    photo, drive = face / "source.png", clips["short"]
    base = ["live", "--pretrained", "actions-64"]
    out = tmp_path / "out.mp4"
    assert_refused([*base, "--source", photo, "--camera", "57", "--output", f"record:{out}"], inputs=[photo],
                   outputs=[out], match="no camera at index 57")
    bad = tmp_path / "photo.jpg"
    bad.write_text("not a jpeg")
    assert_refused([*base, "--source", bad, "--driving", drive, "--output", "null"], inputs=[bad, drive],
                   match="not an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no photos here")
    assert_refused([*base, "--source", empty, "--driving", drive, "--output", "null"], inputs=[empty],
                   match="no images in this folder")
    assert_refused([*base, "--source", photo, "--driving", drive, "--output", f"mjpeg:{busy_port},record:{out}"],
                   inputs=[photo, drive], outputs=[out], match=f"127.0.0.1:{busy_port}")
    assert_refused(["live-worker", "--pretrained", "actions-64", "--port", busy_port], match=f":{busy_port}")
    assert_refused([*base, "--source", photo, "--driving", drive, "--output", "virtualcam"], inputs=[photo, drive],
                   match="virtual camera")
    assert_refused([*base, "--source", photo, "--driving", drive, "--output", "mjpeg:99999"], match="port")
    assert_refused([*base, "--source", photo, "--output", "null"], match="need one input")
    assert_refused([*base, "--source", photo, "--camera", "0", "--every-frame"], match="--every-frame needs")
    assert_refused(["live", "--source", photo, "--driving", drive, "--remote", "127.0.0.1:1", "--output", "null"],
                   match="cannot reach the worker")
