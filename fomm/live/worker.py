"""Remote inference: ``fomm live-worker`` runs the model on a GPU machine, ``fomm live --remote`` sends it frames.

Why: the people who want live puppeteering most often have a laptop without a usable GPU (Avatarify's most asked
feature). The client keeps everything cheap (capture, face crop, outputs, window, controls) and sends the worker
only the model-size crop as a JPEG (~15 KB at 256x256, quality 90), which it animates and returns as a JPEG.

Protocol (TCP, one message each way per frame, ``TCP_NODELAY``): every message is
``MAGIC | header length (u32 BE) | payload length (u32 BE) | JSON header | payload``. The client says ``hello``
(its motion and smoothing options; the worker answers with the model's size), sends ``source`` (the photo as PNG),
then one ``frame`` per camera frame (the JPEG crop, its index, capture time, smoothing on/off, calibrate) and gets
one ``result`` (the JPEG frame and the worker's model time). Sizes are range-checked before anything is allocated
(header <= 64 KiB, payload <= 64 MiB), and every image in a payload goes through fomm's checked reader
(:func:`fomm.io.image.read_image`: 50 MP at most, read from the header before decoding), so a decompression bomb
costs the worker nothing: an image it refuses gets an ``error`` reply saying why, that connection ends, and the worker
waits for the next client. The worker serves one client at a time and binds 127.0.0.1 unless told
otherwise; there is no authentication, so expose it only on a trusted network (or through an SSH tunnel).

Reconnects: when the connection breaks (the worker restarted, Wi-Fi dropped) the client's :meth:`RemoteEngine.animate`
returns ``None`` (the runner shows nothing new) and retries at most every half second; on reconnect it sends the
photo and the calibration frame it kept, so the animation resumes in the same reference pose.

Latency stats include the network: the runner times capture to output on the client; the ``model`` stage of a remote
run is the round trip, and ``network`` is that round trip minus the worker's own model time.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from fomm.errors import FommError, InputError
from fomm.io.image import read_image, resize_uint8
from fomm.live.crop import CameraCrop
from fomm.live.engine import LiveEngine, LiveOptions, LiveResult, Prepared, SourcePhoto, as_sources
from fomm.live.outputs import check_port, encode_jpeg
from fomm.live.smoothing import OneEuroConfig

MAGIC = b"FOMMLIV1"
VERSION = 1
MAX_HEADER = 64 * 1024
MAX_PAYLOAD = 64 * 1024 * 1024
_PREFIX = struct.Struct(">8sII")


class ProtocolError(ConnectionError):
    """The peer is not a fomm live worker/client or sent something out of range."""


def send_message(sock: socket.socket, header: dict, payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    sock.sendall(_PREFIX.pack(MAGIC, len(head), len(payload)) + head + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def recv_message(sock: socket.socket) -> tuple[dict, bytes]:
    magic, head_len, payload_len = _PREFIX.unpack(_recv_exact(sock, _PREFIX.size))
    if magic != MAGIC:
        raise ProtocolError("not a fomm live peer (bad magic)")
    if head_len > MAX_HEADER or payload_len > MAX_PAYLOAD:
        raise ProtocolError(f"message too large ({head_len} + {payload_len} bytes)")
    try:
        header = json.loads(_recv_exact(sock, head_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"bad header ({err})") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad header (not an object)")
    return header, _recv_exact(sock, payload_len)


class BadImage(ProtocolError):
    """The peer sent image data fomm refuses (not an image, truncated, or above the pixel limit)."""


def decode_image(data: bytes, what: str = "image") -> np.ndarray:
    """JPEG/PNG bytes -> uint8 ``[H, W, 3]`` RGB through fomm's checked reader (:func:`fomm.io.image.read_image`:
    the pixel limit is read from the header before anything is decoded, so a peer's decompression bomb costs
    nothing). :class:`BadImage` (a ``ProtocolError``) when the bytes are refused; ``what`` names them."""
    try:
        return read_image(data, min_size=1, name=what)
    except InputError as err:
        raise BadImage(str(err)) from None


def encode_png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> ``(host, port)``."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host:
        raise InputError(f"--remote must be HOST:PORT (e.g. 127.0.0.1:9000), got {text!r}")
    return host.strip("[]"), check_port(port)


def _options_header(opts: LiveOptions) -> dict:
    e = opts.one_euro
    return {"relative": opts.relative, "adapt_movement_scale": opts.adapt_movement_scale,
            "one_euro": [e.min_cutoff, e.beta, e.d_cutoff]}


def _options_from_header(header: dict, base: LiveOptions) -> LiveOptions:
    try:
        min_cutoff, beta, d_cutoff = (float(v) for v in header.get("one_euro", []))
        return LiveOptions(relative=bool(header.get("relative", True)),
                           adapt_movement_scale=bool(header.get("adapt_movement_scale", True)),
                           one_euro=OneEuroConfig(min_cutoff, beta, d_cutoff), crop="none",
                           precision=base.precision, channels_last=base.channels_last)
    except (TypeError, ValueError, FommError) as err:
        raise ProtocolError(f"bad options ({err})") from None


class LiveWorker:
    """Serves the model to ``fomm live --remote`` clients, one at a time (see the module docstring).

    Args:
        model: a loaded model or backend model (as :meth:`LiveEngine.for_model` takes).
        port: TCP port (0: a free one; :attr:`port` says which).
        host: address to bind (default loopback only).
        options: precision / channels-last for the animator (motion options come from each client).
    Raises:
        InputError: the port is in use.
    """

    def __init__(self, model: Any, port: int, host: str = "127.0.0.1", options: LiveOptions | None = None) -> None:
        self.model = model
        self.options = options or LiveOptions()
        self._listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        # SO_REUSEADDR lets a restarted worker bind while the old connection sits in TIME_WAIT; on Linux it still
        # refuses a port another process listens on.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, int(port)))
            self._listener.listen(1)
        except OSError as err:
            self._listener.close()
            raise InputError(f"cannot listen on {host}:{port} ({err.strerror or err}: another program uses that "
                             f"port?); choose another --port") from None
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._conn: socket.socket | None = None
        self.frames = 0

    def serve_forever(self) -> None:
        """Accept clients until :meth:`stop`; a client's error ends its connection only."""
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break  # the listener was closed by stop()
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
            try:
                self._serve(conn)
            except BadImage as err:  # refused before decoding: say why, drop this client, keep serving
                try:
                    send_message(conn, {"type": "error", "message": str(err)})
                except OSError:
                    pass
            except (ConnectionError, OSError):
                pass  # the client left or broke the protocol; wait for the next one
            finally:
                self._conn = None
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        engine: LiveEngine | None = None
        opts = self.options
        while not self._stop.is_set():
            header, payload = recv_message(conn)
            kind = header.get("type")
            if kind == "hello":
                if header.get("version") != VERSION:
                    send_message(conn, {"type": "error", "message": f"worker speaks protocol {VERSION}"})
                    return
                opts = _options_from_header(header, self.options)
                engine = None
                send_message(conn, {"type": "hello", "version": VERSION,
                                    "image_size": list(self.model.image_size)})
            elif kind == "source":
                photo = SourcePhoto(str(header.get("name", "photo")), decode_image(payload, "source photo"))
                if engine is None:
                    engine = LiveEngine.for_model(self.model, [photo], opts)
                else:
                    engine.set_sources([photo])
                send_message(conn, {"type": "ok"})
            elif kind == "reference" and engine is not None:
                engine.set_reference(decode_image(payload, "reference frame"))
                send_message(conn, {"type": "ok"})
            elif kind == "frame" and engine is not None:
                send_message(conn, *self._frame(engine, header, payload))
            else:
                send_message(conn, {"type": "error", "message": f"unexpected message {kind!r}"})
                return

    def _frame(self, engine: LiveEngine, header: dict, payload: bytes) -> tuple[dict, bytes]:
        image = decode_image(payload, "frame")
        if image.shape[:2] != tuple(engine.image_size):
            image = resize_uint8(image, engine.image_size)
        engine.smoothing = bool(header.get("smooth", True)) and engine.can_smooth
        if header.get("calibrate"):
            engine.calibrate()
        try:
            index, t = int(header["index"]), float(header["t"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("frame without index/t") from None
        result = engine.animate(Prepared(index=index, t=t, driving=image,
                                         input=engine.animator.to_model_input(image)))
        self.frames += 1
        return ({"type": "result", "index": index, "model_s": result.timings["model"],
                 "smoothed": result.smoothed}, encode_jpeg(result.frame))

    def stop(self) -> None:
        """Stop serving (from any thread): the listener and the current connection are closed."""
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class RemoteEngine:
    """The client side: the :class:`LiveEngine` interface (``prepare``/``animate``/``command``) with the model on a
    worker. Crop, overlay and outputs stay local.

    Raises:
        InputError: the worker cannot be reached at start.
    """

    def __init__(self, address: str, sources: Sequence[SourcePhoto] | Sequence[np.ndarray],
                 options: LiveOptions | None = None, timeout: float = 10.0, retry_every: float = 0.5) -> None:
        self.host, self.port = parse_address(address)
        self.options = options or LiveOptions()
        self.sources = as_sources(sources)
        self.source_index = 0
        self.timeout = float(timeout)
        self.retry_every = float(retry_every)
        self.crop = CameraCrop(self.options.crop)
        self.smoothing = bool(self.options.smooth)
        self.can_smooth = True
        self.overlay = False
        self.reconnects = 0
        self.failed_frames = 0
        self._sock: socket.socket | None = None
        self._reference: np.ndarray | None = None
        self._calibrate = False
        self._next_try = 0.0
        self._source_sent = False
        try:
            self._connect()
        except (OSError, ConnectionError) as err:
            raise InputError(f"cannot reach the worker at {self.host}:{self.port} ({err}); start "
                             f"'fomm live-worker --port {self.port}' there, or check --remote") from None
        self.output_size = self.options.output_size or self.image_size

    # ------------------------------------------------------------------------------------------------ connection
    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            send_message(sock, {"type": "hello", "version": VERSION, **_options_header(self.options)})
            header, _ = recv_message(sock)
            if header.get("type") != "hello":
                raise ProtocolError(str(header.get("message", "the worker refused the connection")))
            size = header.get("image_size")
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and 16 <= v <= 8192
                                                                      for v in size)):
                raise ProtocolError(f"bad model size {size!r}")
            self.image_size: tuple[int, int] = (size[0], size[1])
            self._sock = sock
            self._send_source()
            if self._reference is not None:
                self._request({"type": "reference"}, encode_png(self._reference))
        except BaseException:
            sock.close()
            self._sock = None
            raise

    def _request(self, header: dict, payload: bytes = b"") -> tuple[dict, bytes]:
        send_message(self._sock, header, payload)
        reply, data = recv_message(self._sock)
        if reply.get("type") == "error":
            raise ProtocolError(str(reply.get("message")))
        return reply, data

    def _send_source(self) -> None:
        photo = self.sources[self.source_index]
        self._request({"type": "source", "name": photo.name}, encode_png(photo.image))

    def _disconnect(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._next_try = time.monotonic() + self.retry_every

    def _ensure_connected(self) -> bool:
        if self._sock is not None:
            return True
        if time.monotonic() < self._next_try:
            return False
        try:
            self._connect()
        except (OSError, ConnectionError):
            self._disconnect()
            return False
        self.reconnects += 1
        return True

    # ------------------------------------------------------------------------------------------------ engine API
    def command(self, name: str) -> bool:
        if name == "calibrate":
            self._calibrate = True
        elif name == "overlay":
            self.overlay = not self.overlay
        elif name in ("next", "previous"):
            self.source_index = (self.source_index + (1 if name == "next" else -1)) % len(self.sources)
            if self._sock is not None:
                try:
                    self._send_source()
                except (OSError, ConnectionError):
                    self._disconnect()
        elif name == "smooth":
            self.smoothing = not self.smoothing
        else:
            return False
        return True

    def prepare(self, frame: np.ndarray, t: float | None = None, index: int | None = None) -> Prepared:
        t = time.perf_counter() if t is None else float(t)
        crop = self.crop(frame, t)
        return Prepared(index=0 if index is None else index, t=t, driving=resize_uint8(crop, self.image_size))

    def animate(self, prepared: Prepared) -> LiveResult | None:
        """Send the frame, return the worker's result; ``None`` while the worker cannot be reached."""
        start = time.perf_counter()
        result = LiveResult(index=prepared.index, t=prepared.t, frame=prepared.driving, driving=prepared.driving,
                            source_index=self.source_index, smoothed=self.smoothing, overlay=self.overlay)
        if self.overlay:
            a = self.options.overlay_alpha
            photo = resize_uint8(self.sources[self.source_index].image, self.output_size).astype(np.float32)
            camera = resize_uint8(prepared.driving, self.output_size).astype(np.float32)
            result.frame = np.clip(np.rint(a * photo + (1 - a) * camera), 0, 255).astype(np.uint8)
            result.timings["model"] = time.perf_counter() - start
            return result
        if not self._ensure_connected():
            self.failed_frames += 1
            return None
        calibrate = self._calibrate or self._reference is None
        header = {"type": "frame", "index": prepared.index, "t": prepared.t, "smooth": self.smoothing,
                  "calibrate": calibrate}
        try:
            reply, data = self._request(header, encode_jpeg(prepared.driving))
            end = time.perf_counter()
            frame = decode_image(data, "the worker's frame")  # checked like anything off the network
        except (OSError, ConnectionError):
            self._disconnect()
            self.failed_frames += 1
            return None
        if calibrate:
            self._reference, self._calibrate = prepared.driving, False
        result.frame = resize_uint8(frame, self.output_size)
        result.smoothed = bool(reply.get("smoothed", self.smoothing))
        worker = float(reply.get("model_s", 0.0))
        result.timings.update(model=end - start, network=max(0.0, end - start - worker), worker=worker)
        return result

    def stats_extra(self) -> dict:
        return {"remote": f"{self.host}:{self.port}", "reconnects": self.reconnects,
                "frames_without_worker": self.failed_frames}

    def close(self) -> None:
        self._disconnect()


def serve(worker: LiveWorker, quiet: bool = False) -> None:
    """Run ``worker`` in this thread until Ctrl+C."""
    if not quiet:
        h, w = worker.model.image_size
        print(f"fomm live-worker: listening on {worker.host}:{worker.port} ({w}x{h} model); connect with "
              f"fomm live --remote {worker.host}:{worker.port}", file=sys.stderr)
    try:
        worker.serve_forever()
    finally:
        worker.stop()


__all__ = ["LiveWorker", "ProtocolError", "RemoteEngine", "parse_address", "recv_message", "send_message", "serve"]
