"""Three stages, three threads, two one-slot queues: capture -> inference -> outputs.

::

    capture thread     inference thread                            caller's thread (outputs, window, controls)
    source -> [slot] -> engine.prepare + engine.animate -> [slot] -> window / virtualcam / mjpeg / record

Why one slot where the newest frame wins (:class:`LatestSlot`): a camera delivers frames at its own rate whatever the
model does. With a FIFO queue, a model slower than the camera makes the queue grow without end and the picture lags
further behind every second (Avatarify's "seconds of latency"). With one slot, a frame waits at most until the model
is free, a newer frame replaces it meanwhile (counted as dropped), and the latency stays bounded by
``model time + one frame interval`` (+ the output's own time). The same holds between inference and the outputs,
so a slow output (a stalled virtual camera or MJPEG client) never stalls the model.

The capture thread only reads frames: the crop and the conversion to a model input (:meth:`LiveEngine.prepare`)
run in the inference thread, for the frames that are animated. Preparing every camera frame in the capture thread
cost more than the frames it dropped on this 2-core CPU: at 30 frames/s in and ~8 out, three of four conversions were
thrown away, and the busy capture thread descheduled torch's worker threads (measured: vox-256 bf16 took 575 ms per
frame in the runner against 280 ms alone).

The outputs run in the caller's thread because GUI toolkits (OpenCV's Qt and Cocoa windows) must be driven from the
main thread. Commands (window keys, stdin, HTTP) are collected there; engine commands are handed to the inference
thread, which applies them between frames, so the engine is only touched by one thread at a time.

With ``every_frame`` nothing is dropped: a full slot makes the producer wait (back-pressure), which is how a driving
file is recorded frame for frame (``fomm live --every-frame``; ``tests/test_live.py`` checks the result equals
``fomm animate``).

Measured (``benchmarks/live.py``, row ``slow_100ms``; the README's "Live" section): with the model padded to 100 ms
per frame and a 30 frames/s source, the slots never held more than one frame, 9.7 frames/s came out, and p95
capture-to-output latency was 136 ms (100 ms + at most one 33 ms frame interval + the rest), where a FIFO queue would
have grown by ~0.7 s of backlog every second.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fomm.errors import InputError
from fomm.live.control import CommandQueue


class LatestSlot:
    """A queue of capacity one. :meth:`put` replaces an unclaimed item (counted in :attr:`dropped`), or, with
    ``wait_for_space``, waits until the consumer took it. :meth:`close` ends the stream: :meth:`get` then returns
    what is left, then ``None``."""

    def __init__(self, wait_for_space: bool = False) -> None:
        self.wait_for_space = wait_for_space
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self._closed = False
        self.dropped = 0
        self.max_depth = 0
        self.puts = 0

    def put(self, item: Any) -> bool:
        """Offer ``item``; ``True`` when it replaced an unclaimed one (a drop). Returns ``False`` without storing
        after :meth:`close`."""
        with self._cond:
            if self.wait_for_space:
                while self._full and not self._closed:
                    self._cond.wait(0.1)
            if self._closed:
                return False
            dropped = self._full
            if dropped:
                self.dropped += 1
            self._item, self._full = item, True
            self.puts += 1
            self.max_depth = max(self.max_depth, 1)
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float | None = None) -> Any:
        """The newest item, or ``None`` after ``timeout`` seconds or when closed and empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._full:
                if self._closed:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left if left is not None else 0.1)
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def depth(self) -> int:
        return int(self._full)


#: ``queue``: capture to the start of preparing (waiting in the slot, and for ``fps_cap``); ``prepare``: crop and
#: conversion; ``model``: the animation (for a remote engine the round trip, ``network`` the part not spent in the
#: worker's model); ``output_queue``: waiting for the outputs; ``output``: all outputs' writes.
STAGES = ("queue", "prepare", "model", "network", "output_queue", "output", "capture_to_output")


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": math.nan, "p95_ms": math.nan, "max_ms": math.nan}
    arr = np.asarray(values, dtype=np.float64) * 1000.0
    return {"p50_ms": round(float(np.percentile(arr, 50)), 2), "p95_ms": round(float(np.percentile(arr, 95)), 2),
            "max_ms": round(float(arr.max()), 2)}


class LiveStats:
    """Per-frame timings of a live run. The first ``warmup`` output frames (first-call allocations, the bf16
    calibration) are left out of the summary."""

    def __init__(self, warmup: int = 0) -> None:
        self.warmup = max(0, int(warmup))
        self._lock = threading.Lock()
        self.capture_times: list[float] = []
        self.frames: list[dict[str, float]] = []  # one dict of stage seconds per output frame (+ "t_out", "index")
        self.recent: deque[dict[str, float]] = deque(maxlen=30)

    def captured(self, t: float) -> None:
        with self._lock:
            self.capture_times.append(t)

    def output(self, record: dict[str, float]) -> None:
        with self._lock:
            self.frames.append(record)
            self.recent.append(record)

    def line(self) -> str:
        """A one-line status for the window: output fps and median latency over the last 30 frames."""
        with self._lock:
            recent = list(self.recent)
        if len(recent) < 2:
            return "starting..."
        span = recent[-1]["t_out"] - recent[0]["t_out"]
        fps = (len(recent) - 1) / span if span > 0 else 0.0
        lat = float(np.median([r["capture_to_output"] for r in recent])) * 1000
        return f"{fps:4.1f} fps  latency {lat:4.0f} ms"

    def summary(self, dropped_capture: int = 0, dropped_output: int = 0, max_depth: int = 0,
                extra: dict | None = None) -> dict:
        """The JSON the benchmark prints: frames and fps in and out, drops, p50/p95/max per stage (ms)."""
        with self._lock:
            frames = self.frames[self.warmup:]
            captures = list(self.capture_times)
        out: dict[str, Any] = {"frames_out": len(frames), "warmup_frames": min(self.warmup, len(self.frames))}
        if len(frames) >= 2:
            t0, t1 = frames[0]["t_out"], frames[-1]["t_out"]
            span = t1 - t0
            inside = sum(1 for t in captures if t0 < t <= t1)
            out["seconds"] = round(span, 3)
            out["fps_out"] = round((len(frames) - 1) / span, 2) if span > 0 else math.nan
            out["fps_in"] = round(inside / span, 2) if span > 0 else math.nan
        out["frames_in"] = len(captures)
        out["dropped"] = {"before_model": dropped_capture, "before_output": dropped_output,
                          "total": dropped_capture + dropped_output}
        out["max_queue_depth"] = max_depth
        out["latency"] = {stage: _percentiles([f[stage] for f in frames if stage in f]) for stage in STAGES
                          if any(stage in f for f in frames)}
        out["timestamps_increasing"] = all(b["t"] > a["t"] and b["t_out"] > a["t_out"]
                                           for a, b in zip(frames, frames[1:], strict=False))
        if extra:
            out.update(extra)
        return out


@dataclass(frozen=True)
class RunOptions:
    """How a live run is paced and when it stops (range-checked here).

    Attributes:
        every_frame: drop nothing: each stage waits for the next (for recording a file frame for frame).
        fps_cap: animate at most this many frames per second (0.1-1000), e.g. to leave a GPU or CPU some room.
        max_frames: stop after this many output frames (>= 1); default: until the source ends or ``quit``.
        warmup: output frames left out of the statistics (>= 0).
    """

    every_frame: bool = False
    fps_cap: float | None = None
    max_frames: int | None = None
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.fps_cap is not None and not (isinstance(self.fps_cap, (int, float)) and math.isfinite(self.fps_cap)
                                             and 0.1 <= self.fps_cap <= 1000):
            raise InputError(f"--fps-cap must be between 0.1 and 1000 frames/s, got {self.fps_cap!r}")
        if self.max_frames is not None and (isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int)
                                            or not 1 <= self.max_frames <= 10_000_000):
            raise InputError(f"the number of frames must be 1-10000000, got {self.max_frames!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or not 0 <= self.warmup <= 10_000:
            raise InputError(f"warm-up frames must be 0-10000, got {self.warmup!r}")


class LiveRunner:
    """Runs ``source`` through ``engine`` into ``outputs`` (see the module docstring) until the source ends,
    ``max_frames`` are out, or a ``quit`` command.

    Args:
        engine: a :class:`~fomm.live.engine.LiveEngine` or anything with ``prepare(frame, t, index)``,
            ``animate(prepared) -> LiveResult | None`` (``None``: nothing this time, e.g. a worker reconnecting)
            and ``command(name)``.
        source: an iterable of ``(frame uint8 [H, W, 3], capture time)`` (:mod:`fomm.live.sources`).
        outputs: objects with ``write(result, status)``, optional ``poll() -> list[str]`` (commands) and
            ``close(ok)`` (:mod:`fomm.live.outputs`).
        commands: a queue other controls (stdin) put commands into.
    """

    def __init__(self, engine: Any, source: Iterable, outputs: Sequence[Any], options: RunOptions | None = None,
                 commands: CommandQueue | None = None) -> None:
        self.engine = engine
        self.source = source
        self.outputs = list(outputs)
        self.options = options or RunOptions()
        self.commands = commands or CommandQueue()
        self.stats = LiveStats(self.options.warmup)
        self.show_stats = True
        self._engine_commands = CommandQueue()
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._inputs = LatestSlot(wait_for_space=self.options.every_frame)
        self._results = LatestSlot(wait_for_space=self.options.every_frame)

    def stop(self) -> None:
        """Ask the run to end (from any thread)."""
        self._stop.set()
        self._inputs.close()

    # ------------------------------------------------------------------------------------------------ threads
    def _fail(self, err: BaseException) -> None:
        self._errors.append(err)
        self.stop()
        self._results.close()

    def _capture(self) -> None:
        try:
            for index, (frame, t) in enumerate(self.source):
                if self._stop.is_set():
                    break
                self.stats.captured(t)
                self._inputs.put((index, frame, t))
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            self._fail(err)
        finally:
            self._inputs.close()

    def _infer(self) -> None:
        cap = self.options.fps_cap
        next_start = 0.0
        try:
            while not self._stop.is_set():
                item = self._inputs.get(timeout=0.1)
                if item is None:
                    if self._inputs.closed:
                        break
                    continue
                index, frame, t = item
                for name in self._engine_commands.drain():
                    self.engine.command(name)
                if cap is not None:
                    wait = next_start - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                begin = time.perf_counter()
                next_start = begin + 1.0 / cap if cap is not None else 0.0
                prepared = self.engine.prepare(frame, t, index)
                start = time.perf_counter()
                result = self.engine.animate(prepared)
                if result is None:
                    continue
                end = time.perf_counter()
                result.timings.update(t_begin=begin, t_start=start, t_end=end)
                self._results.put(result)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            self._fail(err)
        finally:
            self._results.close()

    # ------------------------------------------------------------------------------------------------ caller
    def _handle(self, name: str) -> None:
        if name == "quit":
            self.stop()
        elif name == "stats":
            self.show_stats = not self.show_stats
        else:
            self._engine_commands.put(name)

    def _poll(self) -> None:
        for name in self.commands.drain():
            self._handle(name)
        for out in self.outputs:
            poll = getattr(out, "poll", None)
            if poll is not None:
                for name in poll():
                    self._handle(name)

    def _emit(self, result: Any) -> None:
        status = self.stats.line() if self.show_stats else None
        start = time.perf_counter()
        for out in self.outputs:
            out.write(result, status)
        end = time.perf_counter()
        tm = result.timings
        record = {"index": result.index, "t": result.t, "t_out": end, "queue": tm["t_begin"] - result.t,
                  "prepare": tm["t_start"] - tm["t_begin"], "model": tm["t_end"] - tm["t_start"],
                  "output_queue": start - tm["t_end"], "output": end - start, "capture_to_output": end - result.t}
        if "network" in tm:
            record["network"] = tm["network"]
        self.stats.output(record)

    def run(self) -> dict:
        """Run to the end; returns :meth:`LiveStats.summary`. Errors from any stage are raised here, after every
        thread has stopped; outputs are closed (``close(ok)``: a recording is kept only when ``ok``)."""
        threads = [threading.Thread(target=self._capture, name="fomm-live-capture", daemon=True),
                   threading.Thread(target=self._infer, name="fomm-live-inference", daemon=True)]
        for th in threads:
            th.start()
        written = 0
        ok = False
        try:
            while not self._stop.is_set() or self._results.depth:
                self._poll()
                result = self._results.get(timeout=0.02)
                if result is None:
                    if self._results.closed:
                        break
                    continue
                self._emit(result)
                written += 1
                if self.options.max_frames is not None and written >= self.options.max_frames:
                    break
            ok = not self._errors
        except KeyboardInterrupt:
            ok = not self._errors  # Ctrl+C is how a live run ends: keep what was recorded
        finally:
            self.stop()
            self._results.close()
            for th in threads:
                th.join(timeout=10)
            for out in self.outputs:
                close = getattr(out, "close", None)
                if close is not None:
                    close(ok and not self._errors)
        if self._errors:
            raise self._errors[0]
        extra = getattr(self.engine, "stats_extra", None)
        return self.stats.summary(self._inputs.dropped, self._results.dropped,
                                  max(self._inputs.max_depth, self._results.max_depth),
                                  extra() if callable(extra) else None)


__all__ = ["STAGES", "LatestSlot", "LiveRunner", "LiveStats", "RunOptions"]
