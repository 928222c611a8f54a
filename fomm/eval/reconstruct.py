"""Model adapters for the reconstruction protocol: a loaded model -> a :data:`fomm.eval.protocol.Reconstructor`.

The protocol feeds float frames ``[H, W, 3]`` in ``[0, 1]`` at the dataset's size and wants frames of that size
back; the families' streaming animators take model-size tensors. :func:`animator_reconstructor` bridges the two for
any family whose animator follows :class:`fomm.animate.StreamingAnimator` (the registry's ``reconstructor`` part of
every family points here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fomm.animate import make_animator
from fomm.errors import FommError
from fomm.eval.protocol import non_finite_message


def animator_reconstructor(model: Any, relative: bool = False,
                           batch_size: int = 8) -> Callable[[np.ndarray, Iterable[np.ndarray]], Iterator[np.ndarray]]:
    """A reconstructor backed by ``model``'s animator (FOMM, Monkey-Net, X2Face or a backend model).

    Frame 0 of each video is the source (the protocol's caller passes it); absolute keypoints unless ``relative``
    (the papers' protocol), no movement-scale adaptation. Generated frames come back at the input size, float
    ``[H, W, 3]`` in ``[0, 1]``.
    """

    def to_tensor(frame: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).permute(2, 0, 1)[None]
        if t.shape[-2:] != model.image_size:
            t = F.interpolate(t, size=model.image_size, mode="bilinear", align_corners=False, antialias=True)
        return t.to(model.device)

    def reconstruct(source: np.ndarray, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        size = source.shape[:2]
        anim = make_animator(model, relative=relative, adapt_movement_scale=False, batch_size=batch_size)
        anim.set_source(to_tensor(source))

        done = 0

        def flush(batch: list[torch.Tensor]) -> Iterator[np.ndarray]:
            nonlocal done
            pred = anim.animate_batch(torch.cat(batch))
            # Before the clamp, which would turn inf into a white pixel and hide it (NaN would pass through it).
            finite = torch.isfinite(pred).flatten(1).all(dim=1)
            if not bool(finite.all()):
                raise FommError(non_finite_message(done + int((~finite).nonzero()[0, 0])))
            done += len(pred)
            if tuple(pred.shape[-2:]) != tuple(size):
                pred = F.interpolate(pred, size=size, mode="bilinear", align_corners=False, antialias=True)
            yield from pred.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

        batch: list[torch.Tensor] = []
        for frame in driving:
            batch.append(to_tensor(frame))
            if len(batch) == batch_size:
                yield from flush(batch)
                batch = []
        if batch:
            yield from flush(batch)

    return reconstruct


__all__ = ["animator_reconstructor"]
