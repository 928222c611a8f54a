"""The one place that picks an animator for a loaded model.

A torch model (:class:`fomm.api.LoadedModel`) gets its family's animator from the registry
(:mod:`fomm.families`: ``fomm`` -> :class:`fomm.animate.fomm.Animator`, ``monkeynet`` -> ``MonkeyNetAnimator``,
``x2face`` -> ``X2FaceAnimator``). A model from another backend brings its own: any object with a
``make_animator(relative=, adapt_movement_scale=, batch_size=)`` method (the ONNX Runtime model,
:class:`fomm.realtime.OnnxModel`, is one), so this package never imports a backend. Nothing else in
:mod:`fomm.animate` imports this module; the pipeline (:mod:`fomm.animate.pipeline`) and the tools above use it.
"""

from __future__ import annotations

from typing import Any

from fomm.animate.base import StreamingAnimator
from fomm.errors import InputError
from fomm.families import get_family


def make_animator(model: Any, relative: bool = True, adapt_movement_scale: bool = True, batch_size: int = 4,
                  precision: str = "fp32", channels_last: bool = False) -> StreamingAnimator:
    """The streaming animator for ``model``: a loaded ``fomm``, ``monkeynet`` or ``x2face`` model, or a backend
    model that provides ``make_animator`` (ONNX). ``precision`` and ``channels_last`` are torch FOMM speed options
    (see :class:`fomm.animate.Animator`); ``channels_last`` is a hint the other engines ignore, while a reduced
    ``precision`` they cannot honour is an :class:`InputError` rather than a silent fp32 run."""
    backend = str(getattr(model, "backend", "torch"))
    own = getattr(model, "make_animator", None)
    if backend != "torch" or callable(own):
        if precision != "fp32":
            what = "the ONNX backend" if backend == "onnx" else f"the {backend} backend"
            raise InputError(f"precision {precision!r} is a torch FOMM option; {what} run in fp32 (drop --precision)")
        if not callable(own):
            raise InputError(f"a {backend} model must provide make_animator(); {type(model).__name__} does not")
        return own(relative=relative, adapt_movement_scale=adapt_movement_scale, batch_size=batch_size)
    family = get_family(getattr(model, "model", "fomm"))
    if precision != "fp32" and family.name != "fomm":
        raise InputError(f"precision {precision!r} is a torch FOMM option; {family.name} models run in fp32 "
                         f"(drop --precision)")
    animator_cls = family.resolve("animator")
    if family.name == "fomm":
        return animator_cls(model, relative=relative, adapt_movement_scale=adapt_movement_scale,
                            batch_size=batch_size, precision=precision, channels_last=channels_last)
    return animator_cls(model, relative=relative, adapt_movement_scale=adapt_movement_scale, batch_size=batch_size)


__all__ = ["make_animator"]
