"""The harness of the hostile-input suite (``tests/test_hostile_*.py``).

The promise checked for every case: exit code 2, exactly one ``fomm: error: ...`` line on stderr, no traceback, no
output left behind, and every input file byte-for-byte unchanged (hashed before and after, symlinks included: a
link that became a file or was retargeted counts as modified). Cases run in-process through
:func:`fomm.cli.main.main` (a few hundred of them would take minutes as subprocesses); an exception escaping
``main`` is exactly what a user would see as a traceback, so it fails the case. Cases that need a real process
(signals) use :func:`run_cli`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snapshot(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """``{path: fingerprint}`` of files, links and folders (recursively); compare two snapshots with ``==``."""
    out: dict[str, str] = {}

    def add(p: Path) -> None:
        if p.is_symlink():
            out[str(p)] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[str(p)] = "dir"
            for child in sorted(p.iterdir()):
                add(child)
        elif p.exists():
            out[str(p)] = "file:" + hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(p)] = "missing"

    for path in paths:
        add(Path(path))
    return out


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str


def run_main(argv: Sequence[str]) -> Outcome:
    """``fomm ARGV`` in this process; an exception escaping ``main`` propagates (the test fails with it)."""
    from fomm.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
    return Outcome(int(rc), out.getvalue(), err.getvalue())


def run_cli(argv: Sequence[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """``python -m fomm ARGV`` as a child process using this checkout."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "fomm", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def assert_refused(argv: Sequence[str], inputs: Iterable[str | os.PathLike] = (),
                   outputs: Iterable[str | os.PathLike] = (), match: str | None = None) -> Outcome:
    """Run ``fomm ARGV`` and check the promise: rc 2, one ``fomm: error:`` line (containing ``match``), no
    traceback, each of ``outputs`` absent afterwards (or as it was, if it existed before), ``inputs`` unchanged."""
    inputs = list(inputs)
    outputs = list(outputs)
    before = snapshot(inputs)
    outputs_before = snapshot(outputs)
    res = run_main(argv)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not _is_progress(ln)]
    where = f"fomm {' '.join(map(str, argv))}"
    assert "Traceback" not in res.stderr, f"{where}: traceback:\n{res.stderr}"
    assert res.rc == 2, f"{where}: rc {res.rc}, stderr:\n{res.stderr}"
    assert len(lines) == 1 and lines[0].startswith("fomm: error: "), f"{where}: not one error line:\n{res.stderr}"
    if match is not None:
        assert match in lines[0], f"{where}: {match!r} not in {lines[0]!r}"
    assert snapshot(inputs) == before, f"{where}: an input was modified"
    assert snapshot(outputs) == outputs_before, f"{where}: output left behind or changed"
    return res


# ------------------------------------------------------------------------------------------- decompression bombs
# Images whose header claims a size their data does not hold: a reader that trusts the header allocates the whole
# claimed picture (and then fails on the missing data); one that checks the header first refuses them for free.
# Between fomm's 50 MP limit and Pillow's own 89/179 MP guards (e.g. 8000x8000 = 64 MP) only fomm's check stands.

def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """An 8-bit grey PNG header claiming ``width`` x ``height`` with one row of data (~100 bytes)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 17))
            + _png_chunk(b"IEND", b""))


def bomb_jpeg(width: int, height: int) -> bytes:
    """A real 16x16 JPEG whose frame header (SOF0) is patched to claim ``width`` x ``height``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buf, format="JPEG", quality=90)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def growing_gif(width: int, height: int) -> bytes:
    """A 2-frame 16x16 GIF whose second frame's descriptor claims ``width`` x ``height``: Pillow grows the canvas to
    it when it seeks there (the first frame, all a header check at open sees, is small)."""
    from PIL import Image

    buf = io.BytesIO()
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((200, 30, 30), (30, 30, 200))]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=40)
    data = bytearray(buf.getvalue())
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # after the header and global colour table
    seen = 0
    while data[pos] != 0x3B:
        if data[pos] == 0x21:  # extension: label, then sub-blocks
            pos += 2
        else:  # image descriptor: 9 bytes, local colour table, LZW code size, then sub-blocks
            seen += 1
            if seen == 2:
                data[pos + 5:pos + 9] = struct.pack("<HH", width, height)
                return bytes(data)
            flags = data[pos + 9]
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    raise AssertionError("the GIF Pillow wrote has no second frame")


def big_frame_video(path: str | os.PathLike, side: int, grow: bool = False) -> Path:
    """A one- or two-frame MJPEG ``.mkv`` with a black ``side`` x ``side`` frame (a few hundred KB: black compresses).

    ``grow=False``: the container says ``side`` x ``side``, so a reader can refuse it from the header. ``grow=True``:
    the container and the first frame say 64x64 and the second frame, coded by another encoder, is the big one, as
    in a stream that changes size midway: only a check of each decoded frame catches it."""
    import av
    import numpy as np

    def frame(n: int) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(np.zeros((n, n, 3), np.uint8), format="rgb24").reformat(format="yuvj420p")

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width = stream.height = 64 if grow else side
        stream.pix_fmt = "yuvj420p"
        if not grow:
            container.mux(stream.encode(frame(side)))
        else:
            container.mux(stream.encode(frame(64)))
            big = av.CodecContext.create("mjpeg", "w")
            big.width = big.height = side
            big.pix_fmt = "yuvj420p"
            big.time_base = stream.codec_context.time_base
            second = frame(side)
            second.pts = 1
            for packet in big.encode(second) + big.encode(None):
                packet.stream, packet.pts, packet.dts = stream, 1, 1
                container.mux(packet)
        container.mux(stream.encode(None))
    return path


def _is_progress(line: str) -> bool:
    # tqdm bars are drawn on stderr with carriage returns; they are not messages.
    return "\r" in line or line.lstrip().startswith(("animate:", "preview:"))


def leftovers(folder: str | os.PathLike) -> list[str]:
    """Hidden temporary files our atomic writers use (``.NAME.*``) still present under ``folder``."""
    return sorted(str(p) for p in Path(folder).rglob(".*") if p.name not in (".", ".."))


__all__ = ["Outcome", "assert_refused", "big_frame_video", "bomb_jpeg", "bomb_png", "growing_gif", "leftovers",
           "run_cli", "run_main", "snapshot"]
