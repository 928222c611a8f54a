"""Overlap decoding, the model and encoding: two bounded hand-offs between threads.

``fomm animate`` used to decode, resize, animate, convert and encode in one thread, so the model sat idle while a
frame was decoded or encoded: on one H100 the networks alone ran at ~200 frames/s at batch 1 while the command
managed ~20 end to end. Here the driving frames are decoded and turned into model inputs in a reader thread
(:func:`prefetch`), and converting, the stages and encoding run in a writer thread (:class:`WriteBehind`), so the
model's thread only runs the model. Both hand-offs are queues of a few items: memory stays flat in the video's
length, and a slow side blocks the other instead of piling up frames. PyAV and torch release the GIL in their heavy
calls, so the threads do run concurrently.

Errors cross threads: an exception in the reader is raised in the consumer at the next item, one in the writer at
the next :meth:`WriteBehind.put` or at exit; when the consumer stops early (an error, Ctrl-C), the reader is told to
stop and is joined, so no thread outlives the call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_S = 0.1  # how often a blocked hand-off checks whether the other side gave up


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 2, name: str = "fomm-reader") -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead of the consumer.

    The order is kept. An exception raised while producing an item is re-raised here, in the consumer. Closing
    the returned generator (or leaving a ``for`` loop early) stops the thread.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    hand_off: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                hand_off.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which re-raises it
            offer(_Failure(err))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = hand_off.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class WriteBehind(Generic[T]):
    """Run ``consume(item)`` for each :meth:`put` item in a background thread, in order, at most ``depth`` items
    behind. Use as a context manager: a clean exit waits for the queue to drain and re-raises the consumer's error,
    if any; an exit by exception tells the thread to stop after the item it is on."""

    def __init__(self, consume: Callable[[T], None], depth: int = 2, name: str = "fomm-writer") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE or self._stop.is_set():
                return
            try:
                self._consume(item)
            except BaseException as err:  # noqa: BLE001 - re-raised in the producer's thread
                self._error = err
                self._stop.set()
                return

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        """Queue ``item`` (blocks while ``depth`` items wait); raises the consumer's error if it failed."""
        while True:
            self._raise_if_failed()
            if self._stop.is_set():
                raise RuntimeError("the writer thread has stopped")
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def __enter__(self) -> WriteBehind[T]:
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.put(_DONE, timeout=_POLL_S)
                break
            except queue.Full:
                continue
        self._thread.join()
        if exc_type is None:
            self._raise_if_failed()


__all__ = ["WriteBehind", "prefetch"]
