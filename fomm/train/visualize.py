"""PNG grids of training samples: one row per sample, one column per image (source, driving with keypoints,
deformed source, occlusion map, prediction)."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping

import numpy as np
import torch

from fomm.io.image import write_image

COLUMN_ORDER = ("source", "driving", "deformed", "occlusion", "prediction")


def kp_colors(num_kp: int) -> np.ndarray:
    """``[K, 3]`` uint8 colours spread around the hue circle (keypoint k has the same colour in every column)."""
    return np.array([[int(255 * c) for c in colorsys.hsv_to_rgb(k / max(num_kp, 1), 1.0, 1.0)]
                     for k in range(num_kp)], dtype=np.uint8)


def draw_keypoints(image: np.ndarray, kp: np.ndarray, radius: int = 1) -> np.ndarray:
    """Draw ``kp`` ``[K, 2]`` (x, y) in [-1, 1] as filled squares on an ``[H, W, 3]`` uint8 image (copy)."""
    out = image.copy()
    h, w = out.shape[:2]
    for color, (x, y) in zip(kp_colors(len(kp)), kp, strict=True):
        cx = int(round((x + 1) / 2 * (w - 1)))
        cy = int(round((y + 1) / 2 * (h - 1)))
        out[max(cy - radius, 0):cy + radius + 1, max(cx - radius, 0):cx + radius + 1] = color
    return out


def _to_uint8(t: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``[C, h, w]`` in [0, 1] -> ``[H, W, 3]`` uint8 (grey maps repeated; nearest upsampling to ``size``)."""
    t = t.detach().float().clamp(0, 1)
    if t.shape[0] == 1:
        t = t.repeat(3, 1, 1)
    if tuple(t.shape[1:]) != size:
        t = torch.nn.functional.interpolate(t[None], size=size, mode="nearest")[0]
    return (t.permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def make_grid(items: Mapping[str, torch.Tensor], max_rows: int = 4, min_size: int = 128) -> np.ndarray:
    """Compose ``items`` (see :meth:`TrainingObjective.visual_items`) into one ``[H, W, 3]`` uint8 image.

    Images smaller than ``min_size`` are upscaled (nearest) so 64x64 samples stay readable.
    """
    cols = [k for k in COLUMN_ORDER if k in items] + \
        [k for k in items if k not in COLUMN_ORDER and not k.startswith("kp_")]
    ref = items[cols[0]]
    b, _, h, w = ref.shape
    scale = max(1, int(np.ceil(min_size / max(h, 1))))
    size = (h * scale, w * scale)
    rows = []
    for i in range(min(b, max_rows)):
        tiles = []
        for name in cols:
            tile = _to_uint8(items[name][i], size)
            kp_name = {"source": "kp_source", "driving": "kp_driving"}.get(name)
            if kp_name in items:
                tile = draw_keypoints(tile, items[kp_name][i].detach().float().cpu().numpy(), radius=max(scale, 1))
            tiles.append(tile)
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def save_grid(path: str, items: Mapping[str, torch.Tensor], max_rows: int = 4) -> None:
    write_image(path, make_grid(items, max_rows=max_rows))
