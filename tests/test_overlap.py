"""The threads that overlap decoding, the model and encoding (fomm.animate.overlap): order, bounded depth, errors
crossing threads, no thread left behind, and the same frames as the single-thread path."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fomm.animate.overlap import WriteBehind, prefetch


def _threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def test_prefetch_keeps_order_and_stays_bounded():
    produced = []

    def items():
        for i in range(20):
            produced.append(i)
            yield i

    got = []
    for item in prefetch(items(), depth=2, name="fomm-test-reader"):
        time.sleep(0.005)
        # At most `depth` items queued plus one the producer is blocked on, beyond what was consumed.
        assert len(produced) - len(got) <= 4
        got.append(item)
    assert got == list(range(20))
    assert not _threads("fomm-test-reader")


def test_prefetch_raises_the_producers_error_in_the_consumer():
    def items():
        yield 1
        raise ValueError("bad frame")

    it = prefetch(items(), name="fomm-test-reader")
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad frame"):
        next(it)
    assert not _threads("fomm-test-reader")


def test_prefetch_stops_its_thread_when_the_consumer_stops_early():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    it = prefetch(endless(), depth=1, name="fomm-test-reader")
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert not _threads("fomm-test-reader")


def test_write_behind_consumes_in_order_and_reraises():
    seen = []
    with WriteBehind(seen.append, depth=2, name="fomm-test-writer") as wb:
        for i in range(10):
            wb.put(i)
    assert seen == list(range(10)) and not _threads("fomm-test-writer")

    def fail_at_3(i):
        if i == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), WriteBehind(fail_at_3, name="fomm-test-writer") as wb:
        for i in range(100):
            wb.put(i)
    assert not _threads("fomm-test-writer")


def test_write_behind_stops_when_the_producer_fails():
    seen = []

    def slow(i):
        time.sleep(0.01)
        seen.append(i)

    with pytest.raises(KeyboardInterrupt), WriteBehind(slow, depth=2, name="fomm-test-writer") as wb:
        for i in range(50):
            wb.put(i)
            if i == 5:
                raise KeyboardInterrupt
    assert len(seen) < 50 and not _threads("fomm-test-writer")


def test_pipelined_and_single_thread_runs_write_the_same_frames(golden_dir):
    import fomm
    from fomm.animate import AnimationOptions, animate_video
    from fomm.assets import example_path
    from fomm.io import MemorySink

    model = fomm.load_model(golden_dir / "fomm_small_main.yaml", golden_dir / "fomm_small_main_cpk.pth.tar")
    runs = []
    for pipelined in (True, False):
        sink = MemorySink()
        animate_video(model, example_path("source.png"), example_path("driving.mp4"), sink,
                      AnimationOptions(max_frames=9, batch_size=4, progress=False, pipelined=pipelined))
        runs.append(np.stack(sink.frames))
    assert runs[0].shape == (9, 128, 128, 3) and np.array_equal(runs[0], runs[1])
    assert not _threads("fomm-reader") and not _threads("fomm-writer")
