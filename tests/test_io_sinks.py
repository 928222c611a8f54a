"""One sink protocol: VideoWriter, FrameFolderWriter and MemorySink are interchangeable FrameSinks."""

from __future__ import annotations

import numpy as np
import pytest

from fomm.io.reading import iter_frames
from fomm.io.writing import FrameFolderWriter, FrameSink, MemorySink, VideoWriter, open_writer


def _frames(n: int = 3, h: int = 16, w: int = 24) -> list[np.ndarray]:
    return [np.full((h, w, 3), 40 * i, np.uint8) for i in range(n)]


def _sinks(tmp_path):
    out = tmp_path / "out"
    return {
        "video": lambda: VideoWriter(out / "v.mp4", 25, preset="ultrafast"),
        "folder": lambda: FrameFolderWriter(out / "frames/", 25),
        "memory": lambda: MemorySink(25),
    }


@pytest.mark.parametrize("kind", ["video", "folder", "memory"])
def test_each_writer_is_a_frame_sink(tmp_path, kind):
    sink = _sinks(tmp_path)[kind]()
    assert isinstance(sink, FrameSink)
    assert sink.has_audio is False
    with sink as entered:
        assert entered is sink
        for f in _frames():
            sink.write(f)
    result = sink.close()  # a second close is a no-op that gives the same answer
    if kind == "memory":
        assert result is None and len(sink.frames) == 3
        assert all(np.array_equal(a, b) for a, b in zip(sink.frames, _frames(), strict=True))
    else:
        assert result.exists() and len(list(iter_frames(result))) == 3


@pytest.mark.parametrize("kind", ["video", "folder", "memory"])
def test_abort_leaves_nothing_behind(tmp_path, kind):
    sink = _sinks(tmp_path)[kind]()
    for f in _frames():
        sink.write(f)
    sink.abort()
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []
    if kind == "memory":
        assert sink.frames == []
    with pytest.raises(RuntimeError, match="closed"):
        sink.write(_frames(1)[0])


@pytest.mark.parametrize("kind", ["video", "folder", "memory"])
def test_error_in_with_block_aborts(tmp_path, kind):
    sink = _sinks(tmp_path)[kind]()
    with pytest.raises(KeyError):
        with sink:
            sink.write(_frames(1)[0])
            raise KeyError("boom")
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []
    assert getattr(sink, "frames", []) == []


def test_memory_sink_copies_and_checks_frames():
    sink = MemorySink()
    buf = np.zeros((8, 8, 3), np.uint8)
    sink.write(buf)
    buf[:] = 255  # the producer reuses its buffer
    assert sink.frames[0].max() == 0 and sink.frames_written == 1 and sink.fps is None
    with pytest.raises(ValueError, match="uint8"):
        sink.write(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="first frame"):
        sink.write(np.zeros((4, 8, 3), np.uint8))


def test_open_writer_returns_a_sink(tmp_path):
    for target in (tmp_path / "a.mp4", str(tmp_path / "frames") + "/"):
        w = open_writer(target, 25)
        assert isinstance(w, FrameSink)
        w.abort()
    assert list(tmp_path.iterdir()) == []
