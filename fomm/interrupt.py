"""SIGTERM and SIGHUP stop fomm the way Ctrl-C does.

Every writer cleans up on ``KeyboardInterrupt`` (the atomic writers delete their hidden temporaries, the trainer
saves ``interrupted.pth.tar``, dataset preparation discards its half chunks). Python raises that exception for
SIGINT only; SIGTERM (``kill``, a job scheduler, a container stop) and SIGHUP (a closed terminal or SSH session)
kill the process outright by default, and every temporary stays behind. :func:`signals_as_interrupts` installs
handlers that raise :class:`Terminated`, a ``KeyboardInterrupt`` subclass, so each of those cleanups runs
unchanged, whoever wrote it, and the CLI can still tell which signal it was.

A second SIGTERM/SIGHUP while the first is being handled is ignored: it would interrupt the cleanup itself and
leave exactly the half-written files the handler exists to remove. SIGKILL still stops the process.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: the signals turned into :class:`Terminated` (those a platform lacks, e.g. SIGHUP on Windows, are skipped)
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """The process received ``signum`` (SIGTERM or SIGHUP); cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, frame) -> None:
    # Later signals would interrupt the cleanup the first one started: ignore them from now on.
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread; the previous handlers
    come back afterwards (``fomm.cli.main.main`` also runs inside test processes). Outside the main thread,
    where Python cannot install handlers, the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in _wanted():
        previous[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler installed from C, which Python cannot put back
                signal.signal(sig, handler)


def _wanted() -> list[int]:
    # A signal the process was started with ignored stays ignored: under ``nohup`` SIGHUP must not stop the job.
    return [sig for sig in SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN]


def install_in_worker() -> None:
    """Initializer for worker processes (``ProcessPoolExecutor(initializer=...)``): the parent stops its workers
    with SIGTERM, and they should discard their half-written outputs on the way out as the parent does."""
    for sig in _wanted():
        signal.signal(sig, _raise_terminated)


__all__ = ["SIGNALS", "Terminated", "install_in_worker", "signals_as_interrupts"]
