"""Depth-driven effects: fog, depth of field and a new background plate.

All take float images ``[B, 3, H, W]`` in 0-255 and inverse depth ``[B, 1, H, W]`` in ``[0, 1]`` (near = 1) and
are torch ops, so they run wherever the frame is.

* :func:`fog`: Beer-Lambert attenuation ``T = exp(-density * (1 - d))`` (``1 - d`` is the distance proxy that
  inverse depth gives), ``out = T * image + (1 - T) * colour``: depth 1 is untouched bit for bit, depth 0 tends
  to the fog colour as the density grows.
* :func:`depth_of_field`: each pixel is blurred by its circle of confusion ``coc = aperture / 100 * W *
  |d - focus|`` pixels. The frame is blurred at radii 1, 2, 4, ... (box filters from running sums, so the cost
  does not grow with the radius) and each pixel blends the two levels around its own radius; pixels at the
  focus depth keep their values bit for bit. A level of radius ``r`` averages only pixels whose own circle is
  at least ``r / 2`` (any blur at all for ``r = 1``; a normalised convolution), so a sharp foreground is never
  smeared onto the blurred background behind it: the halo that a plain depth-weighted blur leaves around an
  in-focus face does not appear.
* :func:`over_plate`: the person (a soft matte from near depth, or any matte) over a new background plate placed
  at its own depth, so a later parallax move slides the plate at that depth.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def fog(image: torch.Tensor, depth: torch.Tensor, density: float,
        color: tuple[float, float, float] = (255.0, 255.0, 255.0)) -> torch.Tensor:
    """Exponential depth fog (see the module docstring); ``color`` in 0-255. Returns ``[B, 3, H, W]``."""
    if density == 0:
        return image
    t = torch.exp(-density * (1.0 - depth))
    c = torch.tensor(color, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return image * t + c * (1.0 - t)


def box_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Sum (not mean) over the ``(2r + 1)^2`` square around each pixel, zeros outside the frame: two running
    sums, so the cost is the same for every radius. ``[B, C, H, W] -> [B, C, H, W]``."""
    if radius <= 0:
        return x
    k = 2 * radius + 1
    for dim in (3, 2):
        pad = [0, 0, 0, 0]
        pad[(3 - dim) * 2:(3 - dim) * 2 + 2] = [radius + 1, radius]
        c = F.pad(x, pad).cumsum(dim)
        n = x.shape[dim]
        x = c.narrow(dim, k, n) - c.narrow(dim, 0, n)
    return x


def circle_of_confusion(depth: torch.Tensor, focus: float, aperture: float) -> torch.Tensor:
    """Blur radius in pixels, ``aperture / 100 * W * |depth - focus|``: ``[B, 1, H, W]``."""
    return (depth - focus).abs() * (aperture / 100.0 * depth.shape[-1])


def depth_of_field(image: torch.Tensor, depth: torch.Tensor, focus: float, aperture: float,
                   max_radius: int = 64) -> torch.Tensor:
    """Depth-dependent blur that keeps the focus plane exact and never bleeds a sharp foreground onto a blurred
    background (see the module docstring).

    Args:
        image: ``[B, 3, H, W]`` 0-255; depth ``[B, 1, H, W]`` in ``[0, 1]``.
        focus: the inverse depth in focus, ``[0, 1]``.
        aperture: blur radius in percent of the width at one unit of depth from the focus, ``>= 0``.
        max_radius: largest blur radius in pixels (circles are clipped to it).
    Returns:
        ``[B, 3, H, W]``.
    """
    coc = circle_of_confusion(depth, focus, aperture).clamp(max=max_radius)
    top = float(coc.max())
    if top <= 0:
        return image
    radii = [0] + [2 ** i for i in range(int(math.ceil(math.log2(max(top, 1.0)))) + 1)]
    levels = [image]
    for prev, r in zip(radii[:-1], radii[1:], strict=True):
        # Only pixels blurred at least as much as this level's band starts (any blur at all for the first).
        weight = ((coc > 0) & (coc >= prev)).to(image.dtype)
        num = box_blur(torch.cat([image * weight, weight], 1), r)
        den = num[:, 3:]
        levels.append(torch.where(den > 0, num[:, :3] / den.clamp(min=1e-12), image))
    out = torch.zeros_like(image)
    for lo, hi, a, b in zip(radii[:-1], radii[1:], levels[:-1], levels[1:], strict=True):
        t = ((coc - lo) / (hi - lo)).clamp(0.0, 1.0)
        band = (coc >= lo) & ((coc < hi) | (hi == radii[-1]))
        out = torch.where(band, a + (b - a) * t, out)
    return torch.where(coc > 0, out, image)


def depth_matte(depth: torch.Tensor, threshold: float = 0.5, softness: float = 0.1) -> torch.Tensor:
    """Soft person matte from near depth: 0 below ``threshold - softness / 2``, 1 above ``threshold + softness /
    2``, a smoothstep between. ``[B, 1, H, W]`` in ``[0, 1]``."""
    x = ((depth - threshold) / max(softness, 1e-6) + 0.5).clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def over_plate(image: torch.Tensor, depth: torch.Tensor, plate: torch.Tensor, plate_depth: float,
               matte: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``matte * image + (1 - matte) * plate``, and the depth the same way with the plate at ``plate_depth``.

    Args:
        image, plate: ``[B, 3, H, W]``; depth, matte: ``[B, 1, H, W]`` (matte 1 = keep the person).
    Returns:
        ``(image, depth)``.
    """
    return plate + (image - plate) * matte, plate_depth + (depth - plate_depth) * matte


__all__ = ["box_blur", "circle_of_confusion", "depth_matte", "depth_of_field", "fog", "over_plate"]
