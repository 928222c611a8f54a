"""Parallax camera moves over time: ``orbit``, ``swing``, ``dolly`` and ``zoom``.

A slow move of a few percent of the width is what makes a still portrait look three-dimensional (the "2.5D" or
"Ken Burns 3D" effect): the background slides behind the face. :func:`camera_at` gives the
:class:`~fomm.compositing.render.Camera` at a time; every move starts and ends each period at the original view,
so a looping clip loops smoothly. With phase ``p = 2 pi t / period`` and ``A = amount``:

* ``swing``: sideways and back, ``tx = A sin p``;
* ``orbit``: around an ellipse through the original view, ``tx = A sin p``, ``ty = A (1 - cos p) / 2``;
* ``dolly``: in and back out, ``scale = A (1 - cos p)``: nearer than ``pivot`` grows, farther shrinks, the
  pivot plane keeps its size (a push-in with the lens re-framing the subject);
* ``zoom``: the dolly zoom ("Vertigo"), ``scale = -A (1 - cos p)``: the subject at ``pivot`` keeps its size
  while what is behind it swells and what is in front shrinks.

``amount`` is a fraction of the width (0.02 moves a point one unit of depth from the pivot by 2% of the width at
the extreme of a swing); the default pivot 0.5 sits between a face (about 0.8-1) and its background (about 0-0.2),
so both move, in opposite directions, and the holes that open behind the face stay about half as wide as with
the background held still.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fomm.compositing.render import Camera
from fomm.errors import InputError

MOVES = ("orbit", "swing", "dolly", "zoom")


@dataclass(frozen=True)
class ParallaxConfig:
    """A parallax camera move.

    Attributes:
        move: one of :data:`MOVES`.
        amount: size of the move as a fraction of the width, in ``[0, 0.25]``.
        pivot: the inverse depth that stays still, in ``[0, 1]``.
        period: seconds per cycle, in ``[0.1, 3600]``.
    Raises:
        InputError: a value out of range, naming the option.
    """

    move: str = "swing"
    amount: float = 0.02
    pivot: float = 0.5
    period: float = 4.0

    def __post_init__(self) -> None:
        if self.move not in MOVES:
            raise InputError(f"--parallax must be one of {', '.join(MOVES)}, got {self.move!r}")
        if not (isinstance(self.amount, (int, float)) and 0.0 <= self.amount <= 0.25):
            raise InputError(f"--parallax-amount must be between 0 and 0.25 (a fraction of the width), got "
                             f"{self.amount!r}")
        if not (isinstance(self.pivot, (int, float)) and 0.0 <= self.pivot <= 1.0):
            raise InputError(f"--pivot must be a depth between 0 and 1, got {self.pivot!r}")
        if not (isinstance(self.period, (int, float)) and 0.1 <= self.period <= 3600):
            raise InputError(f"--period must be between 0.1 and 3600 seconds, got {self.period!r}")


def camera_at(config: ParallaxConfig, seconds: float) -> Camera:
    """The camera of ``config``'s move ``seconds`` after the start (see the module docstring for the paths)."""
    p = 2.0 * math.pi * seconds / config.period
    a = config.amount
    if config.move == "swing":
        return Camera(tx=a * math.sin(p), pivot=config.pivot)
    if config.move == "orbit":
        return Camera(tx=a * math.sin(p), ty=a * (1.0 - math.cos(p)) / 2.0, pivot=config.pivot)
    sign = 1.0 if config.move == "dolly" else -1.0
    return Camera(scale=sign * a * (1.0 - math.cos(p)), pivot=config.pivot)


__all__ = ["MOVES", "ParallaxConfig", "camera_at"]
