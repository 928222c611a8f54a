"""The preview window's own process (started by :class:`fomm.live.outputs.WindowOutput`; not a public module).

Why a process: PyAV's wheels bundle a private libxcb, and once ``av`` is loaded (``import fomm`` loads it) OpenCV's
Qt window hangs at 100% CPU on its first ``namedWindow`` (PyAV issues #978 and #1050; measured here: opencv-contrib
5.1 + av 18 hang, the same calls with ``cv2`` imported before ``av`` work). Only the load order matters, and a fresh
interpreter that imports nothing but OpenCV and numpy has the right one, whatever the parent imported.

Run by path (``python _window_main.py TITLE``), never as ``-m fomm...`` (that would import the fomm package, and
PyAV with it). Protocol: stdin carries frames (``>II`` height, width, then ``h * w * 3`` RGB bytes); stdout carries
lines: ``ready``, ``rect X Y W H`` after each new frame, ``key CODE``, ``closed``, or ``error MESSAGE``. EOF on stdin
closes the window.
"""

import os
import struct
import sys
import threading

# Running by path puts this folder first on sys.path, where fomm's module names could shadow others'.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    title = sys.argv[1] if len(sys.argv) > 1 else "fomm live"
    try:
        import cv2
        import numpy as np
    except ImportError as err:
        _say(f"error needs OpenCV with GUI support ({err}): pip install 'fomm[live]'")
        return 1
    try:
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
    except cv2.error as err:
        _say("error cannot open a window (" + " ".join(str(err).split())[-200:] + ")")
        return 1
    _say("ready")
    latest = {"frame": None, "seq": 0, "eof": False}
    lock = threading.Lock()
    stdin = sys.stdin.buffer

    def read() -> None:
        head = struct.Struct(">II")
        while True:
            data = stdin.read(head.size)
            if len(data) < head.size:
                break
            h, w = head.unpack(data)
            body = stdin.read(h * w * 3)
            if len(body) < h * w * 3:
                break
            frame = np.frombuffer(body, dtype=np.uint8).reshape(h, w, 3)
            with lock:
                latest["frame"], latest["seq"] = frame, latest["seq"] + 1
        with lock:
            latest["eof"] = True

    threading.Thread(target=read, daemon=True).start()
    shown = 0
    while True:
        with lock:
            frame, seq, eof = latest["frame"], latest["seq"], latest["eof"]
        if eof:
            break
        if seq != shown and frame is not None:
            cv2.imshow(title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            shown = seq
            cv2.waitKey(1)
            x, y, w, h = cv2.getWindowImageRect(title)
            _say(f"rect {x} {y} {w} {h}")
        key = cv2.waitKey(10)
        if key != -1:
            _say(f"key {key & 0xFF}")
        if shown and cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) < 1:
            _say("closed")
            return 0
    cv2.destroyAllWindows()
    cv2.waitKey(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
