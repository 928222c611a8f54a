"""Where live frames go: a preview window, a virtual camera, an MJPEG stream, a recording, or nowhere.

Every output has ``write(result, status)`` (a :class:`~fomm.live.engine.LiveResult` and the one-line status, or
``None`` when statistics are hidden), ``close(ok)`` and optionally ``poll() -> list[str]`` (commands from its user:
window keys, HTTP posts). They run in the runner's caller thread (:mod:`fomm.live.runner`), one after another, so
each must be quick: the JPEG of an MJPEG frame is encoded once and shared by every client (~2 ms at 256x256 here),
and a slow HTTP client only delays itself, never the others or the model.

* ``window``: OpenCV HighGUI (needs a GUI build of OpenCV and a display). The animated frame is enlarged by an
  integer factor (nearest neighbour, so the screenshot test can find the engine's exact pixels), with the camera crop
  inset in a corner and the status on top.
* ``virtualcam``: pyvirtualcam (v4l2loopback on Linux, OBS's virtual camera on Windows/macOS). Without it, or
  without the driver, one line says what to install.
* ``mjpeg:PORT``: ``multipart/x-mixed-replace`` over HTTP on 127.0.0.1 (OBS's browser or media source reads
  ``http://127.0.0.1:PORT/stream``; no kernel module needed). ``/frame.jpg`` is the latest frame,
  ``POST /control/<command>`` the headless controls, ``/`` a page with the stream and buttons.
* ``record:FILE.mp4``: an H.264 file through :class:`fomm.io.writing.VideoWriter` (atomic: a failed or interrupted
  run leaves no file). Live, frames are placed at their capture time at the source's frame rate (a frame that
  covers two slots because its successor was dropped is written twice), so the recording plays in real time;
  with ``--every-frame`` each frame is written once.
* ``null``: nothing (benchmarks).
"""

from __future__ import annotations

import html
import io
import os
import queue
import struct
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fomm.errors import FommError, InputError, OutputError
from fomm.io.image import resize_uint8
from fomm.live.control import COMMANDS, KEY_HELP, KEYS, CommandQueue

OUTPUT_KINDS = ("window", "virtualcam", "mjpeg", "record", "null")


@dataclass(frozen=True)
class OutputSpec:
    """One ``--output`` item: ``kind`` and its argument (the port, the file) or ``None``."""

    kind: str
    arg: str | None = None


def parse_outputs(text: str) -> list[OutputSpec]:
    """``"window,mjpeg:8090,record:out.mp4"`` -> specs; each kind at most once (ports range-checked here)."""
    specs: list[OutputSpec] = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        kind, _, arg = item.partition(":")
        kind = kind.lower()
        if kind not in OUTPUT_KINDS:
            raise InputError(f"unknown output {item!r}; use window, virtualcam, mjpeg:PORT, record:FILE.mp4 or null "
                             f"(several separated by commas)")
        if kind in ("mjpeg", "record") and not arg:
            need = "a port: mjpeg:8090" if kind == "mjpeg" else "a file: record:out.mp4"
            raise InputError(f"output {kind} needs {need}")
        if kind not in ("mjpeg", "record") and arg:
            raise InputError(f"output {kind} takes no argument, got {item!r}")
        if kind == "mjpeg":
            check_port(arg)
        if any(s.kind == kind for s in specs):
            raise InputError(f"output {kind} is given twice")
        specs.append(OutputSpec(kind, arg or None))
    if not specs:
        raise InputError("no output given; use --output window (or virtualcam, mjpeg:PORT, record:FILE.mp4, null)")
    return specs


def check_port(text: str | int) -> int:
    """A TCP port 1-65535 (0 is accepted from Python callers only: pick a free one)."""
    try:
        port = int(text)
    except (TypeError, ValueError):
        raise InputError(f"port must be a number 1-65535, got {text!r}") from None
    if not 0 <= port <= 65535 or (port == 0 and isinstance(text, str)):
        raise InputError(f"port must be a number 1-65535, got {text!r}")
    return port


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """uint8 ``[H, W, 3]`` RGB -> JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


class NullOutput:
    """Discards frames (``--output null``, benchmarks)."""

    def write(self, result: Any, status: str | None) -> None:
        pass

    def close(self, ok: bool) -> None:
        pass


class MemoryOutput:
    """Keeps every result in :attr:`results` (tests and in-process consumers)."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    def write(self, result: Any, status: str | None) -> None:
        self.results.append(result)

    def close(self, ok: bool) -> None:
        pass


class RecordOutput:
    """``record:FILE.mp4`` (see the module docstring). ``realtime=False`` writes each frame once."""

    def __init__(self, path: str | os.PathLike, fps: float, realtime: bool = True) -> None:
        from fomm.io.writing import VideoWriter

        self.writer = VideoWriter(path, fps)  # checks the path now, creates nothing until the first frame
        self.fps = float(fps)
        self.realtime = realtime
        self._t0: float | None = None

    @property
    def path(self) -> Path:
        return self.writer.path

    def write(self, result: Any, status: str | None) -> None:
        repeat = 1
        if self.realtime:
            if self._t0 is None:
                self._t0 = result.t
            slot = int(round((result.t - self._t0) * self.fps))
            repeat = slot - self.writer.frames_written + 1
        for _ in range(max(repeat, 0)):
            self.writer.write(result.frame)

    def close(self, ok: bool) -> None:
        if ok and self.writer.frames_written:
            self.writer.close()
        else:
            self.writer.abort()


# ---------------------------------------------------------------------------------------------------- window
def opencv_gui() -> Any:
    """``cv2`` when it can open windows, else a one-line :class:`FommError` saying what to install."""
    try:
        import cv2
    except ImportError:
        raise FommError("--output window needs OpenCV with GUI support: pip install 'fomm[live]'") from None
    info = cv2.getBuildInformation()
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if not gui or gui.upper() == "NONE":
        raise FommError("--output window: the OpenCV installed has no GUI (opencv-python-headless); "
                        "pip install --force-reinstall opencv-contrib-python (what 'fomm[live]' installs)")
    return cv2


class WindowOutput:
    """The preview window (see the module docstring), shown by a child process (:mod:`fomm.live._window_main`
    explains why: PyAV and OpenCV's Qt clash in one process). ``display``: the longer side the frame is enlarged
    towards (by an integer factor). :attr:`last_display` is the last image sent (RGB) and :attr:`rect` the window's
    image area on the screen ``(x, y, w, h)`` as last reported, for screenshots and tests.

    Raises:
        InputError: no display, or the window cannot be opened; FommError: OpenCV without GUI support.
    """

    def __init__(self, title: str = "fomm live", display: int = 512, timeout: float = 30.0) -> None:
        import subprocess

        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError("no display to open a window on ($DISPLAY is not set); use --output mjpeg:PORT, "
                             "virtualcam or record:FILE.mp4, or run in a desktop session")
        self.cv2 = opencv_gui()
        self.title = title
        self.display = int(display)
        self.last_display: np.ndarray | None = None
        self.rect: tuple[int, int, int, int] | None = None
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        script = Path(__file__).with_name("_window_main.py")
        self._proc = subprocess.Popen([sys.executable, str(script), title], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, name="fomm-live-window", daemon=True).start()
        try:
            first = self._lines.get(timeout=timeout)
        except queue.Empty:
            first = "error the window process did not start in time"
        if first != "ready":
            self._stop()
            reason = first.removeprefix("error ").strip() or "the window process exited"
            raise InputError(f"cannot open a window: {reason}; use --output mjpeg:PORT or record:FILE.mp4")
        self._open = True

    def _read(self) -> None:
        for raw in self._proc.stdout:
            self._lines.put(raw.decode(errors="replace").strip())
        self._lines.put("exited")

    def compose(self, result: Any, status: str | None) -> np.ndarray:
        """The window's picture, uint8 RGB: the frame enlarged, the camera inset bottom-right, text on top."""
        cv2 = self.cv2
        frame = result.frame
        h, w = frame.shape[:2]
        k = max(1, self.display // max(h, w))
        big = np.repeat(np.repeat(frame, k, axis=0), k, axis=1) if k > 1 else frame.copy()
        H, W = big.shape[:2]
        side = max(16, min(H, W) // 4)
        inset = resize_uint8(result.driving, (side, side))
        big[H - side - 2:H, W - side - 2:W] = 255
        big[H - side:H, W - side:W] = inset
        lines = []
        if status is not None:
            smooth = "smooth on" if result.smoothed else "smooth off"
            lines = [status, f"{smooth}  photo {result.source_index + 1}" + ("  OVERLAY" if result.overlay else "")]
        for i, text in enumerate(lines):
            org = (6, 18 + 18 * i)
            cv2.putText(big, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(big, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        if status is not None and H >= 200:
            cv2.putText(big, KEY_HELP, (6, H - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 2, cv2.LINE_AA)
            cv2.putText(big, KEY_HELP, (6, H - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        return big

    def write(self, result: Any, status: str | None) -> None:
        if not self._open:
            return
        image = np.ascontiguousarray(self.compose(result, status))
        self.last_display = image
        try:
            self._proc.stdin.write(struct.pack(">II", *image.shape[:2]) + image.tobytes())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._open = False  # the window process ended (closed): poll() reports it

    def poll(self) -> list[str]:
        commands = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return commands
            kind, _, rest = line.partition(" ")
            if kind == "key" and rest.isdigit() and int(rest) in KEYS:
                commands.append(KEYS[int(rest)])
            elif kind == "rect":
                x, y, w, h = (int(v) for v in rest.split())
                self.rect = (x, y, w, h)
            elif kind in ("closed", "exited"):  # closed with the window manager's button
                self._open = False
                commands.append("quit")

    def wait_shown(self, timeout: float = 5.0) -> bool:
        """Wait until the window process reports having shown the last frame sent (tests, screenshots)."""
        import time

        self.rect = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if self.rect is not None:
                return True
            time.sleep(0.02)
        return False

    def _stop(self) -> None:
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - it must not outlive us whatever happened
            self._proc.kill()
            self._proc.wait()

    def close(self, ok: bool) -> None:
        self._open = False
        self._stop()


# ---------------------------------------------------------------------------------------------------- virtual camera
def virtual_camera_hint() -> str:
    if sys.platform.startswith("linux"):
        return ("install and load v4l2loopback: sudo apt install v4l2loopback-dkms && "
                "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=fomm")
    return "install OBS Studio (28 or later) and start its virtual camera once"


class VirtualCamOutput:
    """A virtual camera other programs (Zoom, Meet, OBS) pick like a webcam (pyvirtualcam)."""

    def __init__(self, size: tuple[int, int], fps: float, device: str | None = None) -> None:
        try:
            import pyvirtualcam
        except ImportError:
            raise FommError("--output virtualcam needs pyvirtualcam: pip install 'fomm[live]' (and a virtual "
                            f"camera driver: {virtual_camera_hint()})") from None
        h, w = size
        try:
            self.camera = pyvirtualcam.Camera(width=w, height=h, fps=float(fps), fmt=pyvirtualcam.PixelFormat.RGB,
                                              device=device)
        except (RuntimeError, ValueError, OSError) as err:
            reason = " ".join(str(err).split()) or type(err).__name__
            raise InputError(f"no virtual camera available ({reason}); {virtual_camera_hint()}") from None
        self.size = (h, w)

    def write(self, result: Any, status: str | None) -> None:
        self.camera.send(np.ascontiguousarray(resize_uint8(result.frame, self.size)))

    def close(self, ok: bool) -> None:
        self.camera.close()


# ---------------------------------------------------------------------------------------------------- MJPEG
_BOUNDARY = "fommframe"


class _MjpegServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False  # a port in use must be refused, not shared


class MjpegOutput:
    """The MJPEG-over-HTTP stream on 127.0.0.1 (see the module docstring). ``port=0`` picks a free port
    (:attr:`port` says which). Each part carries ``X-Frame-Index`` (the driving frame's number)."""

    def __init__(self, port: int, host: str = "127.0.0.1", quality: int = 90) -> None:
        if not 1 <= int(quality) <= 100:
            raise InputError(f"JPEG quality must be 1-100, got {quality!r}")
        self.quality = int(quality)
        self.commands = CommandQueue()
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._index = -1
        self._seq = 0
        self._closing = False
        handler = _handler_for(self)
        try:
            self.server = _MjpegServer((host, int(port)), handler)
        except OSError as err:
            raise InputError(f"cannot serve MJPEG on {host}:{port} ({err.strerror or err}: another program "
                             f"uses that port?); choose another with --output mjpeg:PORT") from None
        self.host, self.port = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fomm-live-mjpeg", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/stream"

    def write(self, result: Any, status: str | None) -> None:
        jpeg = encode_jpeg(result.frame, self.quality)
        with self._cond:
            self._jpeg, self._index = jpeg, int(result.index)
            self._seq += 1
            self._cond.notify_all()

    def next_frame(self, seen: int, timeout: float = 1.0) -> tuple[int, int, bytes] | None:
        """``(seq, frame index, jpeg)`` newer than ``seen``, or ``None`` on timeout / shutdown."""
        with self._cond:
            if self._seq <= seen and not self._closing:
                self._cond.wait(timeout)
            if self._closing or self._seq <= seen or self._jpeg is None:
                return None
            return self._seq, self._index, self._jpeg

    @property
    def closing(self) -> bool:
        return self._closing

    def poll(self) -> list[str]:
        return self.commands.drain()

    def close(self, ok: bool) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def _page() -> bytes:
    buttons = "".join(f'<form method="post" action="/control/{name}" style="display:inline">'
                      f'<button title="{html.escape(text)}">{name}</button></form> '
                      for name, text in COMMANDS.items())
    return (f"<!doctype html><title>fomm live</title><img src='/stream' style='max-width:100%'><p>{buttons}</p>"
            ).encode()


def _handler_for(out: MjpegOutput) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fomm-live"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # one line per request would drown the terminal

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(200, _page(), "text/html; charset=utf-8")
            elif path == "/frame.jpg":
                got = out.next_frame(-1, timeout=0)
                if got is None:
                    self._send(503, b"no frame yet\n", "text/plain")
                else:
                    self._send(200, got[2], "image/jpeg")
            elif path == "/stream":
                self._stream()
            else:
                self._send(404, b"not found\n", "text/plain")

        def do_POST(self) -> None:  # noqa: N802
            name = self.path.split("?", 1)[0].removeprefix("/control/")
            if self.path.startswith("/control/") and name in COMMANDS:
                out.commands.put(name)
                self._send(200, f"{name}\n".encode(), "text/plain")
            else:
                self._send(404, f"unknown command; one of: {', '.join(COMMANDS)}\n".encode(), "text/plain")

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            seen = 0
            try:
                while not out.closing:
                    got = out.next_frame(seen)
                    if got is None:
                        continue
                    seen, index, jpeg = got
                    self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                                     f"X-Frame-Index: {index}\r\n\r\n".encode() + jpeg + b"\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away

    return Handler


def open_outputs(specs: list[OutputSpec], size: tuple[int, int], fps: float, every_frame: bool = False) -> list[Any]:
    """The outputs for ``specs``, opened now so a missing driver, a port in use or an unwritable file fails before
    the camera starts. On failure, those already opened are closed (nothing left behind)."""
    outputs: list[Any] = []
    try:
        for spec in specs:
            if spec.kind == "null":
                outputs.append(NullOutput())
            elif spec.kind == "record":
                outputs.append(RecordOutput(spec.arg, fps, realtime=not every_frame))
            elif spec.kind == "mjpeg":
                outputs.append(MjpegOutput(check_port(spec.arg)))
            elif spec.kind == "virtualcam":
                outputs.append(VirtualCamOutput(size, fps))
            elif spec.kind == "window":
                outputs.append(WindowOutput())
            else:  # pragma: no cover - parse_outputs rejects it
                raise OutputError(f"unknown output {spec.kind}")
    except BaseException:
        for out in outputs:
            out.close(False)
        raise
    return outputs


__all__ = ["OUTPUT_KINDS", "MemoryOutput", "MjpegOutput", "NullOutput", "OutputSpec", "RecordOutput",
           "VirtualCamOutput", "WindowOutput", "check_port", "encode_jpeg", "open_outputs", "opencv_gui",
           "parse_outputs", "virtual_camera_hint"]
