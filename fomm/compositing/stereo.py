"""Stereo 3D from one view and its depth: two eye views, packed the way 3D TVs, headsets and glasses expect.

Each eye is the frame seen from a camera moved half the stereo baseline to its side (:func:`eye_cameras`): with
``divergence`` in percent of the width and ``convergence`` the inverse depth that lands on the screen plane, a point
of depth ``d`` moves by ``+/- divergence / 100 * W * (d - convergence) / 2`` pixels, to the right in the left eye
and to the left in the right eye (crossed disparity: nearer than the screen pops out). With W = 200, 2% and
convergence 0, a depth-1 plane moves +2 px in the left eye and -2 px in the right (the known-answer test).

Packings (:data:`STEREO_FORMATS`): ``sbs`` (left | right, 2W wide), ``hsbs`` (each eye squeezed to W/2, the
frame keeps its size; needs an even width), ``tb`` / ``htb`` (left over right; ``htb`` needs an even height),
``cross`` (right | left, for free viewing cross-eyed) and ``anaglyph`` (one frame for red-cyan glasses).
Squeezing averages each pair of columns (rows), an exact 2:1 box filter.

Anaglyphs (:data:`ANAGLYPHS`): ``dubois`` (default) applies Eric Dubois' least-squares red-cyan matrices, which
cut the ghosting and retinal rivalry of the naive mixes; like FFmpeg's ``stereo3d=arcd`` they are applied to the
gamma-encoded values. ``gray`` puts the left eye's luma in red and the right eye's in green and blue; ``color``
takes red from the left eye and green and blue from the right.

Matroska stores the packing in its StereoMode element, which FFmpeg writes from and reads back into the stream
tag ``stereo_mode`` (:data:`MKV_STEREO_MODE`); players (mpv, VLC, Kodi) and headsets use it to show the right eye
to the right eye. SBS is written left first, as the tag ``left_right`` says.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fomm.compositing.render import Camera
from fomm.errors import InputError

STEREO_FORMATS = ("sbs", "hsbs", "tb", "htb", "anaglyph", "cross")
ANAGLYPHS = ("dubois", "gray", "color")

#: The Matroska StereoMode names (FFmpeg's ``stereo_mode`` stream tag) for each packing.
MKV_STEREO_MODE = {"sbs": "left_right", "hsbs": "left_right", "tb": "top_bottom", "htb": "top_bottom",
                   "cross": "right_left", "anaglyph": "anaglyph_cyan_red"}

#: Dubois red-cyan matrices (rows: output R, G, B; columns: input R, G, B), left eye then right eye.
DUBOIS_LEFT = ((0.456, 0.500, 0.176), (-0.040, -0.038, -0.016), (-0.015, -0.021, -0.005))
DUBOIS_RIGHT = ((-0.043, -0.088, -0.002), (0.378, 0.734, -0.018), (-0.072, -0.113, 1.226))
_LUMA = (0.299, 0.587, 0.114)
_ZERO = (0.0, 0.0, 0.0)
ANAGLYPH_MATRICES = {
    "dubois": (DUBOIS_LEFT, DUBOIS_RIGHT),
    "gray": ((_LUMA, _ZERO, _ZERO), (_ZERO, _LUMA, _LUMA)),
    "color": (((1.0, 0.0, 0.0), _ZERO, _ZERO), (_ZERO, (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))),
}


@dataclass(frozen=True)
class StereoConfig:
    """How to make and pack the two eyes.

    Attributes:
        format: one of :data:`STEREO_FORMATS`.
        divergence: the full disparity between the eyes for depth ``convergence + 1``, in percent of the width,
            in ``[0, 10]``.
        convergence: the inverse depth that sits on the screen plane (no disparity), in ``[0, 1]``.
        anaglyph: one of :data:`ANAGLYPHS` (``format="anaglyph"`` only).
    Raises:
        InputError: a value out of range, naming the option.
    """

    format: str = "sbs"
    divergence: float = 2.0
    convergence: float = 0.5
    anaglyph: str = "dubois"

    def __post_init__(self) -> None:
        if self.format not in STEREO_FORMATS:
            raise InputError(f"--stereo must be one of {', '.join(STEREO_FORMATS)}, got {self.format!r}")
        if not (isinstance(self.divergence, (int, float)) and 0.0 <= self.divergence <= 10.0):
            raise InputError(f"--divergence must be between 0 and 10 (percent of the width), got {self.divergence!r}")
        if not (isinstance(self.convergence, (int, float)) and 0.0 <= self.convergence <= 1.0):
            raise InputError(f"--convergence must be a depth between 0 and 1, got {self.convergence!r}")
        if self.anaglyph not in ANAGLYPHS:
            raise InputError(f"--anaglyph must be one of {', '.join(ANAGLYPHS)}, got {self.anaglyph!r}")

    @property
    def mkv_stereo_mode(self) -> str:
        """The Matroska ``stereo_mode`` tag for this packing."""
        return MKV_STEREO_MODE[self.format]


def eye_cameras(config: StereoConfig) -> tuple[Camera, Camera]:
    """``(left, right)`` eye offsets: half the disparity each, in opposite directions (see the module docstring)."""
    half = config.divergence / 100.0 / 2.0
    return Camera(tx=half, pivot=config.convergence), Camera(tx=-half, pivot=config.convergence)


def check_stereo_size(fmt: str, size: tuple[int, int]) -> None:
    """Refuse a frame size the packing cannot hold exactly (``size = (H, W)``): half-SBS squeezes each eye to W/2
    and half-TB to H/2, so those need an even width / height."""
    h, w = size
    if fmt == "hsbs" and w % 2:
        raise InputError(f"--stereo hsbs squeezes each eye to half the width, so the width must be even (it is {w});"
                         f" resize the video (e.g. --size {w + 1}x{h}) or use --stereo sbs")
    if fmt == "htb" and h % 2:
        raise InputError(f"--stereo htb squeezes each eye to half the height, so the height must be even (it is "
                         f"{h}); resize the video (e.g. --size {w}x{h + 1}) or use --stereo tb")


def packed_size(fmt: str, size: tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` of the packed frame for eyes of ``size = (H, W)``."""
    h, w = size
    return {"sbs": (h, 2 * w), "cross": (h, 2 * w), "tb": (2 * h, w), "htb": (h, w), "hsbs": (h, w),
            "anaglyph": (h, w)}[fmt]


def anaglyph(left: torch.Tensor, right: torch.Tensor, mode: str = "dubois") -> torch.Tensor:
    """Red-cyan anaglyph ``clip(ML @ left + MR @ right)`` of two ``[B, 3, H, W]`` eyes in 0-255 (any float
    range works; the result is clipped to ``[0, 255]``)."""
    ml, mr = (torch.tensor(m, dtype=left.dtype, device=left.device) for m in ANAGLYPH_MATRICES[mode])
    out = torch.einsum("oc,bchw->bohw", ml, left) + torch.einsum("oc,bchw->bohw", mr, right)
    return out.clamp(0.0, 255.0)


def _halve(x: torch.Tensor, dim: int) -> torch.Tensor:
    """2:1 box squeeze along ``dim`` (mean of each pair of columns or rows)."""
    return (x.narrow(dim, 0, x.shape[dim] // 2 * 2).unflatten(dim, (-1, 2))).mean(dim + 1)


def pack_stereo(left: torch.Tensor, right: torch.Tensor, config: StereoConfig) -> torch.Tensor:
    """Pack two eyes ``[B, 3, H, W]`` into one frame (see the module docstring for the layouts); shape
    ``[B, 3, *packed_size(...)]``."""
    fmt = config.format
    check_stereo_size(fmt, tuple(left.shape[-2:]))
    if fmt == "sbs":
        return torch.cat([left, right], dim=3)
    if fmt == "cross":
        return torch.cat([right, left], dim=3)
    if fmt == "hsbs":
        return torch.cat([_halve(left, 3), _halve(right, 3)], dim=3)
    if fmt == "tb":
        return torch.cat([left, right], dim=2)
    if fmt == "htb":
        return torch.cat([_halve(left, 2), _halve(right, 2)], dim=2)
    return anaglyph(left, right, config.anaglyph)


__all__ = ["ANAGLYPHS", "ANAGLYPH_MATRICES", "DUBOIS_LEFT", "DUBOIS_RIGHT", "MKV_STEREO_MODE", "STEREO_FORMATS",
           "StereoConfig", "anaglyph", "check_stereo_size", "eye_cameras", "pack_stereo", "packed_size"]
