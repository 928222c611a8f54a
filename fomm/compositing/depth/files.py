"""Depth files: 16-bit PNG, EXR and NPY, one map or one per frame, each with a JSON sidecar saying what it holds.

* **16-bit PNG** (default): ``round(depth * 65535)`` as grey ``uint16``, so a round trip is within 1/65535 (half a
  step after rounding); every compositor and image viewer opens it. 8-bit PNGs are read too (``/ 255``).
* **EXR**: one float32 channel ``Z`` (lossless ZIP), exact; the header carries ``fommConvention`` because an EXR
  ``Z`` is distance (far = large) by habit, and ours is not. Read back from ``Z``, ``Y``, ``depth``, ``R`` or the
  only channel there is.
* **NPY**: float32 ``[H, W]``, exact. uint8/uint16 arrays are read as ``/ 255`` / ``/ 65535``.

Every value read is checked: finite and inside ``[0, 1]`` (a map in the other convention, or metric distances, is
refused with a line saying how to convert it rather than silently inverted). The sidecar (``OUT.json`` beside one
file, ``depth.json`` inside a frame folder) records the convention, the estimator, the size, the frame count and the
exact frame rate. Everything is written atomically (:mod:`fomm.io.atomic`): a failed run leaves nothing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from fomm.compositing.depth.base import CONVENTION, FAR, NEAR, check_depth
from fomm.errors import InputError, OutputError
from fomm.io.atomic import atomic_dir, atomic_file
from fomm.io.image import check_pixels
from fomm.io.writing import SinkBase

#: Depth file formats by extension.
FORMATS = {".png": "png", ".exr": "exr", ".npy": "npy"}
#: Sidecar name inside a depth frame folder.
SIDECAR = "depth.json"
_FRAME = re.compile(r"^(\d{6})\.(png|exr|npy)$")
_EXR_MAGIC = b"\x76\x2f\x31\x01"
_EXR_CHANNELS = ("Z", "Y", "depth", "R")
_IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp")


def format_of(path: str | os.PathLike) -> str:
    """``png``/``exr``/``npy`` from the extension (an OutputError naming the choices otherwise)."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: unknown depth file extension {Path(path).suffix!r}; use .png (16-bit), .exr "
                          f"or .npy")
    return fmt


def _exr_module():
    try:
        import OpenEXR
    except ImportError:
        raise InputError("EXR depth needs the OpenEXR package: pip install 'fomm[depth]' (or pip install "
                         "OpenEXR)") from None
    return OpenEXR


def _write_to(tmp: Path, depth: np.ndarray, fmt: str) -> None:
    """Write a checked float32 ``[H, W]`` map in ``[0, 1]`` to ``tmp`` as ``fmt``."""
    if fmt == "png":
        from PIL import Image

        q = np.round(depth.astype(np.float64) * 65535.0).astype(np.uint16)
        Image.fromarray(q).save(tmp, format="PNG", compress_level=3)
    elif fmt == "exr":
        exr = _exr_module()
        header = {"compression": exr.ZIP_COMPRESSION, "type": exr.scanlineimage, "fommConvention": CONVENTION}
        with exr.File(header, {"Z": np.ascontiguousarray(depth, np.float32)}) as f:
            f.write(str(tmp))
    else:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(depth, np.float32), allow_pickle=False)


def write_depth(path: str | os.PathLike, depth: np.ndarray, meta: Mapping[str, Any] | None = None) -> Path:
    """Write one depth map (float ``[H, W]`` in ``[0, 1]``) to ``path`` (.png/.exr/.npy) and its sidecar
    ``path + ".json"`` (``meta`` plus the convention and size), both atomically. Returns ``path``.

    Raises:
        OutputError: unknown extension or unwritable path. InputError: ``depth`` not finite or out of range.
    """
    p = Path(path)
    fmt = format_of(p)
    depth = check_depth(depth, "depth to write")
    h, w = depth.shape
    side = sidecar_of(p)
    files = [atomic_file(p, suffix=p.suffix), atomic_file(side, suffix=".json")]
    try:
        tmps = [f.begin() for f in files]
        _write_to(tmps[0], depth, fmt)
        tmps[1].write_text(json.dumps(sidecar(dict(meta or {}), (h, w), fmt=fmt, num_frames=1), indent=2) + "\n")
        for f in files:
            f.commit()
    except OSError as err:
        raise OutputError(f"cannot write {p}: {err.strerror or err}; choose a writable output folder") from None
    finally:
        for f in files:
            f.discard()
    return p


def sidecar_of(path: str | os.PathLike) -> Path:
    """The sidecar of one depth file: ``depth.png`` -> ``depth.png.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def sidecar(meta: dict[str, Any], size: tuple[int, int], *, fmt: str, num_frames: int,
            fps: Fraction | None = None) -> dict[str, Any]:
    """The sidecar's content: convention, estimator (from ``meta``), size, frame count, exact fps, format."""
    out = {"convention": CONVENTION, "near": NEAR, "far": FAR, "format": fmt,
           "encoding": {"png": "uint16 grey = round(depth * 65535)", "exr": "float32 channel Z",
                        "npy": "float32 [H, W]"}[fmt],
           "width": int(size[1]), "height": int(size[0]), "num_frames": int(num_frames)}
    if fps is not None:
        out["fps"] = f"{fps.numerator}/{fps.denominator}"
        out["fps_float"] = float(fps)
    out.update({k: v for k, v in meta.items() if k not in out})
    return out


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """Read a sidecar (a depth file's ``.json``, a frame folder's ``depth.json``, or the JSON itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / SIDECAR
    elif p.suffix.lower() != ".json":
        p = sidecar_of(p)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{p}: not a readable depth sidecar ({err})") from None
    if not isinstance(data, dict) or data.get("convention") != CONVENTION:
        raise InputError(f"{p}: not a fomm depth sidecar (no convention {CONVENTION!r})")
    return data


def _read_png(p: Path) -> np.ndarray:
    from fomm.io.image import open_image

    with open_image(p, hint="; a depth file is a grey 8/16-bit PNG, an EXR or an NPY") as img:
        img.load()
        mode = img.mode
        arr = np.asarray(img)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        if arr.min() < 0 or arr.max() > 65535:
            raise InputError(f"{p}: 32-bit integer image with values outside 0..65535; save depth as 16-bit grey")
        return arr.astype(np.float32) / 65535.0
    if mode == "F":
        return check_depth(arr, str(p))
    if mode == "L":
        return arr.astype(np.float32) / 255.0
    if mode in ("RGB", "RGBA") and arr.ndim == 3:
        rgb = arr[:, :, :3]
        if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2]):
            return rgb[:, :, 0].astype(np.float32) / 255.0
        raise InputError(f"{p}: is a colour image; a depth file is grey (a colour-mapped depth picture cannot be "
                         f"read back as depth)")
    raise InputError(f"{p}: image mode {mode} is not a depth map; use grey 8/16-bit PNG, EXR or NPY")


def _read_exr(p: Path) -> np.ndarray:
    exr = _exr_module()
    with open(p, "rb") as fh:
        if fh.read(4) != _EXR_MAGIC:
            raise InputError(f"{p}: not an EXR file (wrong magic number)")
    try:
        # The header first: its data windows say how much the pixels take, checked before they are read.
        with exr.File(str(p), separate_channels=True, header_only=True) as f:
            windows = [part.header["dataWindow"] for part in f.parts]
        for lo, hi in windows:
            check_pixels(str(p), int(hi[0]) - int(lo[0]) + 1, int(hi[1]) - int(lo[1]) + 1)
        with exr.File(str(p), separate_channels=True) as f:
            channels = {name: np.array(ch.pixels) for name, ch in f.channels().items()}
    except (RuntimeError, ValueError, OSError, KeyError, TypeError, IndexError) as err:
        raise InputError(f"{p}: EXR is corrupt or unsupported ({err})") from None
    names = [n for n in _EXR_CHANNELS if n in channels]
    if not names and len(channels) == 1:
        names = list(channels)
    if not names:
        raise InputError(f"{p}: EXR has no usable depth channel (has {', '.join(sorted(channels)) or 'none'}); "
                         f"store depth in a channel named Z, Y, depth or R")
    arr = channels[names[0]]
    if arr.ndim != 2 or arr.dtype.kind not in "fu":
        raise InputError(f"{p}: EXR channel {names[0]} is not a 2-D float image")
    return check_depth(arr.astype(np.float32), f"{p} (channel {names[0]})")


def _npy_shape(p: Path) -> tuple[int, ...] | None:
    """The array shape an NPY header declares (read before the data), or ``None`` when it is not an NPY header
    (``np.load`` then says what it is)."""
    from numpy.lib import format as npy

    with open(p, "rb") as fh:
        try:
            version = npy.read_magic(fh)
            if version == (1, 0):
                shape, _, _ = npy.read_array_header_1_0(fh)
            else:
                shape, _, _ = npy.read_array_header_2_0(fh)
        except (ValueError, OSError, EOFError):
            return None
    return tuple(shape)


def _read_npy(p: Path) -> np.ndarray:
    shape = _npy_shape(p)
    if shape:
        # A header can declare any shape, and np.load allocates it before reading the data: a 2-D map is held to the
        # image pixel limit (any other shape by its element count; check_depth refuses it after).
        check_pixels(str(p), int(np.prod(shape[1:], dtype=np.int64)), int(shape[0]))
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError) as err:
        raise InputError(f"{p}: not a readable NPY array ({err})") from None
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{p}: holds several arrays; save one [H, W] depth array per .npy file")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    elif arr.dtype.kind != "f":
        raise InputError(f"{p}: array dtype {arr.dtype} is not depth; use float32 in [0, 1], uint8 or uint16")
    return check_depth(arr, str(p))


def read_depth(path: str | os.PathLike) -> np.ndarray:
    """Read one depth file (8/16-bit PNG or other grey image, EXR, NPY) as float32 ``[H, W]`` in ``[0, 1]``.

    Raises:
        InputError: missing, empty, not a depth file, no usable channel, NaN/inf, or values outside ``[0, 1]``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: depth file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected one depth file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: depth file is empty (0 bytes)")
    suffix = p.suffix.lower()
    if suffix == ".exr":
        depth = _read_exr(p)
    elif suffix == ".npy":
        depth = _read_npy(p)
    else:
        depth = _read_png(p)
    if min(depth.shape) < 1:
        raise InputError(f"{p}: depth map is empty")
    return np.ascontiguousarray(depth, np.float32)


def _natural_key(name: str) -> list:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def depth_folder_files(folder: str | os.PathLike) -> list[Path]:
    """The depth frames of a folder (PNG/EXR/NPY/TIFF, natural order), checked for gaps in their numbering.

    Raises:
        InputError: no depth frames, or a frame number missing (``000001.png`` absent between 0 and 2).
    """
    p = Path(folder)
    files = [f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
             and (f.suffix.lower() in (".exr", ".npy") or f.suffix.lower() in _IMAGE_EXTENSIONS)]
    if not files:
        raise InputError(f"{p}: folder has no depth frames (.png, .exr, .npy)")
    files.sort(key=lambda f: _natural_key(f.name))
    numbers = [re.findall(r"\d+", f.stem) for f in files]
    if all(numbers):
        idx = [int(n[-1]) for n in numbers]
        for a, b in zip(idx, idx[1:], strict=False):
            if b != a + 1:
                raise InputError(f"{p}: depth frame {a + 1} is missing (frames go from {a} to {b}); give one depth "
                                 f"file per video frame")
    return files


def iter_depth_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Depth frames of a folder of depth files or of a video (grey, ``/ 255``), one float32 ``[H, W]`` at a time."""
    p = Path(path)
    if p.is_dir():
        for f in depth_folder_files(p):
            yield read_depth(f)
        return
    from fomm.io.reading import iter_frames

    for frame in iter_frames(p):
        yield frame[:, :, 0].astype(np.float32) / 255.0


def count_depth_frames(path: str | os.PathLike) -> tuple[int, bool]:
    """``(frames, exact)`` of a depth source: 1 for one file, the count of a folder, a video's (estimated) length."""
    p = Path(path)
    if p.is_dir():
        return len(depth_folder_files(p)), True
    if p.suffix.lower() in (".exr", ".npy") or p.suffix.lower() in _IMAGE_EXTENSIONS:
        return 1, True
    from fomm.io.reading import probe_video

    info = probe_video(p)
    return info.num_frames, info.num_frames_exact


def _check_replaceable(p: Path) -> None:
    if not p.is_dir() or not all(_FRAME.match(f.name) or f.name == SIDECAR for f in p.iterdir()):
        raise OutputError(f"{p}: is not empty and not a depth folder fomm wrote; give an empty or new folder")


def check_depth_folder(path: str | os.PathLike) -> Path:
    """Fail fast when ``path`` cannot become a depth frame folder (a file, or a folder with other files in it)."""
    p = Path(os.fspath(path).rstrip("/" + os.sep) or os.fspath(path))
    if p.exists():
        if not p.is_dir():
            raise OutputError(f"{p}: exists and is not a folder; give a folder for the depth frames")
        _check_replaceable(p)
    return p


class DepthFolderWriter(SinkBase):
    """A sink for depth frames: ``write(depth float [H, W] in [0, 1])`` -> ``DIR/000000.png`` ... (or ``.exr``,
    ``.npy``) and ``DIR/depth.json``; the folder appears whole on :meth:`close` (or not at all on :meth:`abort`).

    Usable as a ``view_sinks`` entry of :func:`fomm.animate.animate_video` (its context manager, from
    :class:`~fomm.io.writing.SinkBase`, commits on a clean exit and aborts otherwise). ``meta`` goes into the
    sidecar (estimator, source, ...).
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction | float | int | str | None = None, fmt: str = "png",
                 meta: Mapping[str, Any] | None = None) -> None:
        from fomm.io.writing import to_fraction

        if fmt not in FORMATS.values():
            raise OutputError(f"unknown depth format {fmt!r}; choose png (16-bit), exr or npy")
        if fmt == "exr":
            _exr_module()
        self.path = check_depth_folder(path)
        self.fps = to_fraction(fps) if fps is not None else None
        self.fmt = fmt
        self.meta = dict(meta or {})
        self.frames_written = 0
        self.size: tuple[int, int] | None = None
        self._out = atomic_dir(self.path, check_existing=_check_replaceable)
        self._tmp: Path | None = None
        self._closed = False

    @property
    def has_audio(self) -> bool:
        return False

    def write(self, depth: np.ndarray) -> None:
        """Append one depth frame (every frame the first frame's size)."""
        if self._closed:
            raise RuntimeError("DepthFolderWriter is closed")
        depth = check_depth(depth, f"depth frame {self.frames_written}")
        if self._tmp is None:
            try:
                self._tmp = self._out.begin()
            except OSError as err:
                raise OutputError(f"{self.path}: cannot write here ({err.strerror or err})") from None
            self.size = depth.shape
        elif depth.shape != self.size:
            raise ValueError(f"depth frame {self.frames_written} is {depth.shape}, the first was {self.size}")
        try:
            _write_to(self._tmp / f"{self.frames_written:06d}.{self.fmt}", depth, self.fmt)
        except OSError as err:
            raise OutputError(f"{self.path}: writing depth frame {self.frames_written} failed "
                              f"({err.strerror or err})") from None
        self.frames_written += 1

    def close(self) -> Path:
        """Write ``depth.json`` and move the folder into place; returns its path."""
        return self._commit(self._tmp is not None, "no depth frames were written, so no folder was created",
                            self._write_sidecar)

    def _write_sidecar(self) -> None:
        content = sidecar(self.meta, self.size, fmt=self.fmt, num_frames=self.frames_written, fps=self.fps)
        (self._tmp / SIDECAR).write_text(json.dumps(content, indent=2) + "\n")

    def abort(self) -> None:
        """Discard every frame written; nothing is left on disk."""
        self._closed = True
        self._out.discard()
        self._tmp = None



__all__ = ["FORMATS", "SIDECAR", "DepthFolderWriter", "check_depth_folder", "count_depth_frames",
           "depth_folder_files", "format_of", "iter_depth_frames", "read_depth", "read_sidecar", "sidecar",
           "sidecar_of", "write_depth"]
