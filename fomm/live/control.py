"""The live tool's controls: one vocabulary of commands, reached from the window's keys, stdin or HTTP.

Headless runs (a virtual camera or an MJPEG stream feeding OBS, a recording over SSH) have no window to press keys
in, so the same commands are read as lines from stdin (``fomm live --control stdin``) and as
``POST /control/<command>`` on the MJPEG server. Commands are queued and applied by the runner between frames, in the
inference thread, so the engine's state is only ever touched by one thread.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import TextIO

#: What each command does (the window's help line and ``--help`` use the same text).
COMMANDS: dict[str, str] = {
    "calibrate": "the current pose becomes the source photo's pose (relative motion restarts from it)",
    "overlay": "show the source photo over the camera to line up the pose (toggle)",
    "next": "next photo of a --source folder",
    "previous": "previous photo of a --source folder",
    "smooth": "keypoint smoothing on/off",
    "stats": "statistics on/off in the window",
    "quit": "stop",
}

#: Window keys (cv2.waitKey codes) -> command. Space and Esc as Avatarify's users know them.
KEYS: dict[int, str] = {
    ord("c"): "calibrate", ord(" "): "calibrate",
    ord("o"): "overlay",
    ord("n"): "next", ord("]"): "next",
    ord("p"): "previous", ord("["): "previous",
    ord("s"): "smooth",
    ord("i"): "stats",
    ord("q"): "quit", 27: "quit",
}

KEY_HELP = "c calibrate  o overlay  n/p photo  s smooth  i stats  q quit"


def parse_command(text: str) -> str | None:
    """A command name (or its first letter(s): ``cal``, ``q``) -> the command, else ``None``."""
    word = text.strip().lower()
    if not word:
        return None
    if word in COMMANDS:
        return word
    found = [name for name in COMMANDS if name.startswith(word)]
    return found[0] if len(found) == 1 else None


class CommandQueue:
    """Thread-safe queue of commands (from any thread) drained by the runner."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()

    def put(self, command: str) -> None:
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        self._queue.put(command)

    def drain(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out


class StdinControl:
    """Reads one command per line from ``stream`` (default stdin) in a daemon thread (a blocking read cannot be
    interrupted, so the thread is left to end with the process); unknown lines are reported on stderr."""

    def __init__(self, commands: CommandQueue, stream: TextIO | None = None) -> None:
        self.commands = commands
        self.stream = stream if stream is not None else sys.stdin
        self._thread = threading.Thread(target=self._run, name="fomm-live-stdin", daemon=True)

    def start(self) -> StdinControl:
        self._thread.start()
        return self

    def _run(self) -> None:
        for line in self.stream:
            command = parse_command(line)
            if command is not None:
                self.commands.put(command)
            elif line.strip():
                print(f"fomm live: unknown command {line.strip()!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)


__all__ = ["COMMANDS", "KEYS", "KEY_HELP", "CommandQueue", "StdinControl", "parse_command"]
