"""Helpers shared by several test modules.

Test modules never import each other (``tests/test_layout.py`` checks it): importing one collects its tests and
fixtures twice and ties unrelated files together, so anything two of them need lives here. ``tests/`` is on
``sys.path`` because it has no ``__init__.py`` (pytest's rootdir/prepend import mode inserts the folder of each
test module and of ``conftest.py``), so test modules use ``from helpers import ...``.
"""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import yaml
from PIL import Image

from fomm.config import load_config
from fomm.models.x2face.config import X2FaceRunConfig
from fomm.train.trainer import TrainOptions


def tiny_config(tmp_path: Path, adversarial: bool = False, size: int = 32) -> Path:
    """A few-parameter FOMM training config (from ``actions-64``) written under ``tmp_path``; returns its path."""
    cfg = load_config("actions-64").to_dict()
    mp = cfg["model_params"]
    mp["common_params"]["num_kp"] = 3
    mp["kp_detector_params"].update(block_expansion=8, max_features=16, num_blocks=2, scale_factor=1)
    mp["generator_params"].update(block_expansion=8, max_features=16, num_bottleneck_blocks=1)
    # Half-resolution dense motion whatever the bundled config uses: test_train.py relies on the anti-alias path.
    dense = mp["generator_params"]["dense_motion_params"]
    dense.update(block_expansion=8, max_features=16, num_blocks=2, scale_factor=0.5)
    mp["discriminator_params"].update(block_expansion=8, max_features=16, num_blocks=2)
    cfg["dataset_params"]["frame_shape"] = [size, size, 3]
    tp = cfg["train_params"]
    tp.update(num_epochs=2, num_repeats=4, batch_size=2, checkpoint_freq=1, epoch_milestones=[1])
    if adversarial:
        tp["loss_weights"]["generator_gan"] = 1
        tp["loss_weights"]["feature_matching"] = [10, 10]
    path = tmp_path / f"tiny{size}{'-adv' if adversarial else ''}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def make_strips(root: Path, n: int = 3, frames: int = 5, size: int = 32, seed: int = 0) -> Path:
    """``root/train`` + ``root/test`` of strip PNGs: a coloured square moving over a grey background."""
    rng = np.random.default_rng(seed)
    for part in ("train", "test"):
        (root / part).mkdir(parents=True, exist_ok=True)
        for v in range(n):
            strip = np.full((size, size * frames, 3), 90, np.uint8)
            color = rng.integers(100, 255, 3)
            y, x = rng.integers(0, size // 2, 2)
            for t in range(frames):
                x0, y0 = size * t + x + t, y + t
                strip[y0:y0 + size // 3, x0:x0 + size // 3] = color
            Image.fromarray(strip).save(root / part / f"{v:04d}.png")
    return root


def train_opts(config, data, out, **kw):
    """:class:`TrainOptions` for a quiet in-process test run (no workers, no progress bar, no log lines)."""
    kw.setdefault("workers", 0)
    kw.setdefault("progress", False)
    kw.setdefault("log", lambda _m: None)
    return TrainOptions(config=str(config), data=str(data), out=str(out), **kw)


def tiny_x2face(tmp_path: Path, size: int = 32, **train_overrides) -> Path:
    """A few-parameter X2Face training config written under ``tmp_path``; returns its path."""
    cfg = X2FaceRunConfig.load("actions-64").to_dict()
    cfg["model_params"].update(ngf=2, inner_nc=8)
    cfg["dataset_params"]["frame_shape"] = [size, size, 3]
    tp = cfg["train_params"]
    tp.update(num_epochs=2, num_repeats=4, batch_size=2, checkpoint_freq=1, epoch_milestones=[1], lr=1e-3)
    tp.update(train_overrides)
    path = tmp_path / "x2face-tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def decode_fp32_and_view(model, view, src, drv):
    """``(fp32, reduced)``: ``model.generator``'s decode of ``src`` driven by ``drv``, and that of its
    reduced-precision ``view`` after calibrating the view on the same source."""
    from fomm.models.fomm.precision import calibrate_low_precision

    gen = model.generator
    with torch.no_grad():
        kp, kp_d = model.kp_detector(src), model.kp_detector(drv)
        enc = gen.encode_source(src)
        full = gen.decode(enc, kp, kp_d)
        calibrate_low_precision(view, enc, kp)
        return full, view.decode(enc, kp, kp_d)



#: Audio rate of :func:`make_vfr_clip`'s click track.
CLICK_RATE = 48000


def alternating_times(n: int, short: float = 1 / 30, long: float = 1 / 15) -> list[float]:
    """``n`` frame times with gaps alternating ``short``, ``long`` (a VFR phone clip's pattern), from 0."""
    times = [0.0]
    for i in range(n - 1):
        times.append(times[-1] + (short if i % 2 == 0 else long))
    return times


def make_vfr_clip(path: Path, times: list[float], end: float, clicks: tuple[float, ...] = (), size: int = 64,
                  audio: bool = True, preset: str = "ultrafast", frames: list[np.ndarray] | None = None) -> Path:
    """An H.264 MP4 whose frame ``i`` is shown at ``times[i]`` (1/90000 s time base) and is ``frames[i]`` (default:
    a ``size`` grey level coded by ``i``), plus (``audio``) a mono AAC track of ``end`` seconds, silent except a 5 ms
    click at each of ``clicks``."""
    if frames is not None:
        size = frames[0].shape[0]
    tb = Fraction(1, 90000)
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=round(len(times) / end))
        vs.width, vs.height, vs.pix_fmt = size, size, "yuv420p"  # square frames
        vs.codec_context.time_base = tb
        vs.options = {"preset": preset}
        if audio:
            aus = c.add_stream("aac", rate=CLICK_RATE)
            aus.layout = "mono"
        ticks = [round(t / tb) for t in times] + [round(end / tb)]
        packets = []
        for i, t in enumerate(ticks[:-1]):
            img = np.full((size, size, 3), 30 + (i * 37) % 190, np.uint8) if frames is None else frames[i]
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = t, tb
            packets += vs.encode(frame)
        packets += vs.encode(None)
        # MP4 takes the last frame's length from its packet: give every frame its own, so the clip lasts `end`
        duration = dict(zip(ticks[:-1], np.diff(ticks).tolist(), strict=True))
        for packet in packets:
            packet.duration = duration[packet.pts]
            c.mux(packet)
        if audio:
            sig = np.zeros(int(round(end * CLICK_RATE)), np.float32)
            for t in clicks:
                k = int(round(t * CLICK_RATE))
                sig[k:k + CLICK_RATE // 200] = 0.8
            for s in range(0, len(sig), 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(sig[None, s:s + 1024]), format="fltp",
                                                layout="mono")
                af.sample_rate, af.pts = CLICK_RATE, s
                c.mux(aus.encode(af))
            c.mux(aus.encode(None))
    return path


def stream_timing(path: Path) -> dict[str, float | list[float]]:
    """Decoded video frame times (seconds), and the video and audio streams' durations (seconds) of a media file."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        out: dict[str, float | list[float]] = {"video": float(v.duration * v.time_base)}
        if c.streams.audio:
            a = c.streams.audio[0]
            out["audio"] = float(a.duration * a.time_base)
        out["times"] = [float(f.time) for f in c.decode(video=0)]
    return out


def click_times(path: Path, threshold: float = 0.3) -> list[float]:
    """Onsets (seconds) of the clicks in the first audio stream of ``path`` (or of an ``.m4a``)."""
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].codec_context.sample_rate
        frames = list(c.decode(audio=0))
        # a copied track may start after 0 (the first packet at or after a cut point): place it by its timestamp
        t0 = float(frames[0].time or 0.0) if frames else 0.0
        x = np.concatenate([f.to_ndarray().mean(0) for f in frames])
    loud = np.flatnonzero(np.abs(x) > threshold)
    if loud.size == 0:
        return []
    starts = loud[np.concatenate([[True], np.diff(loud) > rate // 50])]
    return [t0 + float(s / rate) for s in starts]


def huge_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black 8-bit greyscale PNG of ``width`` x ``height``, streamed through zlib so neither memory nor
    the file grows with its size (20000x20000: 0.4 MB on disk, about 3 s to make)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    data = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path
