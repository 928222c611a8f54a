"""Stages: what happens to each animated frame between the model and the output.

A stage is any callable ``stage(frame, outputs) -> frame`` where ``frame`` is uint8 ``[H, W, 3]`` and ``outputs``
is that frame's :class:`~fomm.animate.outputs.FrameOutputs` (a batch of one: the prediction at the model's size,
the deformation, occlusion map and keypoints). It returns the frame to pass on, or a mapping of named views whose
``"frame"`` entry is passed on while the others are kept in ``outputs.views`` for later stages and written to the
``view_sinks`` of :func:`fomm.animate.animate_video` that carry their names (a depth pass, a matte, one eye of a
stereo pair). A stage may also define ``begin(context)`` (called once before the first frame with a
:class:`StageContext`) and ``end(ok)`` (called once after the last frame, ``ok=False`` when the run failed, so a
stage that writes files of its own can commit or discard them with the main output).

:func:`~fomm.animate.animate_video` runs its own stages first, in this order: auto-crop paste-back
(:class:`PasteBackStage`), then resizing to the output size (:class:`ResizeStage`); the caller's stages follow, in
the order given, so they see the frame as it will be written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from fomm.animate.outputs import FrameOutputs
from fomm.errors import InputError
from fomm.io.image import resize_uint8

if TYPE_CHECKING:
    from fomm.crop.paste import PasteBack

StageResult = np.ndarray | Mapping[str, np.ndarray]


@runtime_checkable
class Stage(Protocol):
    """``stage(frame uint8 [H, W, 3], outputs) -> frame`` or ``{"frame": ..., "<view>": ...}`` (see the module
    docstring); ``begin(context)`` and ``end(ok)`` are optional."""

    def __call__(self, frame: np.ndarray, outputs: FrameOutputs) -> StageResult: ...


@dataclass(frozen=True)
class StageContext:
    """What a stage may want to know before the first frame.

    ``model_size`` is the model's ``(H, W)``, ``output_size`` the ``(H, W)`` frames have after the built-in
    stages, ``fps`` the driving video's exact rate and ``num_frames`` how many frames will come (an estimate for
    streams whose length is not stored exactly). ``paste`` is, with auto-crop, the :class:`fomm.crop.PasteBack` the
    built-in paste-back applies to every frame (the photo, the crop box, the feathered mask), else None: a stage
    that makes a view from the model's outputs (which belong to the face crop, not to the frame it is handed) pastes
    that view back with the same geometry, then resizes it to the frame's size as the resize stage did.
    """

    model_size: tuple[int, int]
    output_size: tuple[int, int]
    fps: Fraction
    num_frames: int
    paste: PasteBack | None = None


class PasteBackStage:
    """Auto-crop: paste the animated face crop back into the full-size photo (see :class:`fomm.crop.PasteBack`)."""

    def __init__(self, paste: Callable[[np.ndarray], np.ndarray]) -> None:
        self.paste = paste

    def __call__(self, frame: np.ndarray, outputs: FrameOutputs) -> np.ndarray:
        return self.paste(frame)


class ResizeStage:
    """Resize frames to ``size = (H, W)`` (area-aware for shrinking, see :func:`fomm.io.image.resize_uint8`);
    frames already that size pass through untouched."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, frame: np.ndarray, outputs: FrameOutputs) -> np.ndarray:
        return frame if frame.shape[:2] == self.size else resize_uint8(frame, self.size)


def check_stages(stages: Iterable[Any]) -> list[Stage]:
    """The stages as a list, each checked to be callable (a one-line :class:`InputError` otherwise)."""
    out = []
    for i, stage in enumerate(stages):
        if not callable(stage):
            raise InputError(f"stage {i} ({type(stage).__name__}) is not callable; a stage is "
                             f"stage(frame, outputs) -> frame")
        out.append(stage)
    return out


def run_stages(stages: Sequence[Stage], frame: np.ndarray, outputs: FrameOutputs) -> np.ndarray:
    """Pass ``frame`` through ``stages`` in order; named views land in ``outputs.views``. Returns the final frame."""
    for stage in stages:
        result = stage(frame, outputs)
        if isinstance(result, Mapping):
            if "frame" not in result:
                raise ValueError(f"stage {type(stage).__name__} returned views {sorted(result)} without 'frame'")
            outputs.views.update({k: v for k, v in result.items() if k != "frame"})
            result = result["frame"]
        if not isinstance(result, np.ndarray) or result.dtype != np.uint8 or result.ndim != 3:
            raise ValueError(f"stage {type(stage).__name__} must return a uint8 [H, W, C] frame, got "
                             f"{getattr(result, 'shape', type(result).__name__)}")
        frame = result
    return frame


def begin_stages(stages: Sequence[Stage], context: StageContext) -> None:
    for stage in stages:
        begin = getattr(stage, "begin", None)
        if callable(begin):
            begin(context)


def end_stages(stages: Sequence[Stage], ok: bool) -> None:
    """Tell every stage the run ended; all are told even when one of them raises (the first error is re-raised)."""
    first: BaseException | None = None
    for stage in stages:
        end = getattr(stage, "end", None)
        if callable(end):
            try:
                end(ok)
            except BaseException as err:  # noqa: BLE001 - re-raised below after the other stages were told
                first = first or err
    if first is not None:
        raise first


__all__ = ["PasteBackStage", "ResizeStage", "Stage", "StageContext", "StageResult", "begin_stages", "check_stages",
           "end_stages", "run_stages"]
