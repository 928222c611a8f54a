"""The FOMM family's animator: keypoints with jacobians, dense motion, occlusion-aware generator.

The source is encoded once (its keypoints, the generator's encoder features and the dense-motion input); each batch
of driving frames then costs one keypoint pass and one :meth:`decode`. The networks run through the exact inference
rewrites of :mod:`fomm.models.fomm.fuse` (folded batch norms, polyphase up blocks) and, on request, the reduced
precision views of :mod:`fomm.models.fomm.precision`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fomm.animate.base import KeypointAnimator
from fomm.animate.normalize import KeypointTransfer, relative_motion
from fomm.animate.outputs import FrameOutputs
from fomm.api import LoadedModel
from fomm.errors import InputError
from fomm.models.fomm.fuse import fused_view
from fomm.models.fomm.generator import SourceEncoding
from fomm.models.fomm.precision import (
    autocast_dtype,
    calibrate_low_precision,
    low_precision_kp_detector,
    low_precision_view,
)

KP = dict[str, torch.Tensor]


class FrameStage(nn.Module):
    """Everything one batch of driving frames costs, as one module with one tensor input:
    ``frames [B, 3, H, W]`` in ``[0, 1]`` -> ``{"prediction", "deformation", "occlusion_map"?, "kp_value",
    "kp_jacobian"?}`` (shapes as in :class:`~fomm.animate.FrameOutputs`).

    The source encoding, the source and reference keypoints, the movement scale and ``inv(J_d0)`` are buffers,
    fixed when the stage is built, so the forward pass is keypoints -> :func:`relative_motion` -> ``decode`` with
    no host round trip and no data-dependent Python branch: ``torch.export.export(stage, (frames,), strict=True)``
    captures it whole (``tests/test_engine.py``), and on CUDA it can be replayed as a CUDA graph.
    """

    def __init__(self, kp_detector: nn.Module, generator: nn.Module, encoding: SourceEncoding,
                 transfer: KeypointTransfer) -> None:
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self.relative = transfer.relative
        self.register_buffer("source", encoding.image)
        self.register_buffer("features", encoding.features)
        self.register_buffer("source_small", encoding.small)
        self.register_buffer("kp_source_value", transfer.kp_source["value"])
        self.register_buffer("kp_source_jacobian", transfer.kp_source.get("jacobian"))
        self.register_buffer("kp_initial_value", transfer.kp_initial["value"])
        self.register_buffer("scale", transfer.scale)
        self.register_buffer("inv_initial_jacobian", transfer.inv_initial_jacobian)

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        kp = self.kp_detector(frames)
        kp_source = {"value": self.kp_source_value}
        if self.kp_source_jacobian is not None:
            kp_source["jacobian"] = self.kp_source_jacobian
        if self.relative:
            kp = relative_motion(kp, kp_source, {"value": self.kp_initial_value}, self.scale,
                                 self.inv_initial_jacobian)
        encoding = SourceEncoding(image=self.source, features=self.features, small=self.source_small)
        out = self.generator.decode(encoding, kp_source=kp_source, kp_driving=kp, with_deformed=False)
        result = {"prediction": out["prediction"], "kp_value": kp["value"]}
        for key, name in (("deformation", "deformation"), ("occlusion_map", "occlusion_map"),
                          ("jacobian", "kp_jacobian")):
            found = out.get(key) if key != "jacobian" else kp.get("jacobian")
            if found is not None:
                result[name] = found
        return result


class _GraphedStage:
    """A :class:`FrameStage` replayed as CUDA graphs, one per input shape: the frames are copied into a static
    buffer, the captured kernels replayed, the outputs cloned (the next replay overwrites the static ones).

    A graph removes the per-kernel launch cost that dominates batch 1 (the live case) on a GPU. Captured after a few
    warm-up runs on a side stream, as CUDA graph capture requires; nothing in the stage copies from the host.
    """

    def __init__(self, stage: FrameStage) -> None:
        self.stage = stage
        self.graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, dict[str, torch.Tensor]]] = {}

    def _capture(self, frames: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, dict[str, torch.Tensor]]:
        static_in = frames.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.stage(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.stage(static_in)
        return graph, static_in, static_out

    def __call__(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        key = tuple(frames.shape)
        if key not in self.graphs:
            self.graphs[key] = self._capture(frames)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(frames, non_blocking=True)
        graph.replay()
        return {k: v.clone() for k, v in static_out.items()}


class Animator(KeypointAnimator):
    """Animates one source image with driving frames (the ``fomm`` family).

    Args:
        model: from :func:`fomm.load_model`.
        relative: relative keypoint motion (recommended when source and driving show different people).
        adapt_movement_scale: scale motion by the ratio of the two faces' keypoint hull sizes (relative only).
        batch_size: driving frames per forward pass (>= 1).
        precision: ``"fp32"``, ``"bf16"`` (CPUs with bf16 support, or GPU) or ``"fp16"`` (GPU) for the generator's
            bottleneck and up blocks and the two hourglass trunks; keypoint heads, masks, the warp and the final conv
            stay fp32 (see :mod:`fomm.models.fomm.precision`).
        channels_last: convert the networks (in place) and frames to channels-last memory, faster for CPU convs.
        cuda_graphs: replay the per-frame stage as CUDA graphs (CUDA devices only; see :class:`_GraphedStage`).
    """

    def __init__(self, model: LoadedModel, relative: bool = True, adapt_movement_scale: bool = True,
                 batch_size: int = 4, precision: str = "fp32", channels_last: bool = False,
                 cuda_graphs: bool = False) -> None:
        super().__init__(model, relative, adapt_movement_scale, batch_size)
        if cuda_graphs and self.device.type != "cuda":
            raise InputError(f"CUDA graphs need a CUDA device; this model runs on {self.device.type}")
        self.cuda_graphs = cuda_graphs
        self._stage: FrameStage | _GraphedStage | None = None
        self.precision = precision
        self._amp_dtype = autocast_dtype(precision, self.device)
        self.channels_last = channels_last
        if channels_last:
            for net in (model.kp_detector, model.generator):
                net.to(memory_format=torch.channels_last)
        # Batch norms folded and up blocks in their exact polyphase form (fomm.models.fomm.fuse): same output, fewer
        # passes over the activations and 2.25x fewer FLOPs in the up blocks. With reduced precision, only the
        # low-precision view of that is kept (its heavy convs hold their weights in the dtype; no autocast), not
        # the fp32 folded copies it was made from.
        generator = fused_view(model.generator)
        if self._amp_dtype is not None:
            generator = low_precision_view(generator, self._amp_dtype)
        self._generator = generator
        self._kp_detector = (low_precision_kp_detector(model.kp_detector, self._amp_dtype)
                             if self._amp_dtype is not None else fused_view(model.kp_detector))
        self._encoding = None
        # The generator resizes its deformation this way (FrameOutputs.warp must match it).
        self._aligned = bool(getattr(model.generator, "align_deformation", False))

    # ------------------------------------------------------------------------------------------------------ setup
    def to_model_input(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 ``[H, W, 3]`` -> float ``[1, 3, h, w]`` in ``[0, 1]`` at the model's size, on the model's device."""
        t = super().to_model_input(frame)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    @torch.inference_mode()
    def set_source(self, source: np.ndarray | torch.Tensor) -> None:
        """Encode the source once. ``source``: uint8 ``[H, W, 3]`` or float ``[1, 3, h, w]`` in ``[0, 1]``."""
        src = self._as_input(source)
        # The driving frames' detector, so equal frames give equal keypoints.
        self.transfer.set_source(self.keypoints(src))
        self._encoding = self.model.generator.encode_source(src)
        self._stage = None
        if self._amp_dtype is not None:
            calibrate_low_precision(self._generator, self._encoding, self.transfer.kp_source)

    @torch.inference_mode()
    def keypoints(self, frames: torch.Tensor) -> KP:
        """Keypoints of ``[B, 3, h, w]`` frames: ``value [B, K, 2]`` in ``[-1, 1]``, ``jacobian [B, K, 2, 2]``."""
        return self._kp_detector(frames)

    def set_initial_driving(self, frame: np.ndarray | torch.Tensor) -> None:
        super().set_initial_driving(frame)
        self._stage = None  # its buffers hold the old reference

    # ---------------------------------------------------------------------------------------------------- running

    def frame_stage(self) -> FrameStage:
        """The per-frame stage for the current source and reference (needs both: :meth:`set_source`, then
        :meth:`set_initial_driving` or one animated batch)."""
        if self._encoding is None or self.transfer.kp_initial is None:
            raise RuntimeError("call set_source() and set_initial_driving() (or animate a batch) first")
        stage = self._stage
        if stage is None:
            stage = FrameStage(self._kp_detector, self._generator, self._encoding, self.transfer).eval()
            self._stage = _GraphedStage(stage) if self.cuda_graphs else stage
        return stage.stage if isinstance(stage, _GraphedStage) else stage

    @torch.inference_mode()
    def animate_outputs(self, frames: torch.Tensor) -> FrameOutputs:
        """``[B, 3, h, w]`` driving frames in ``[0, 1]`` -> :class:`FrameOutputs` with the prediction, the
        deformation ``[B, h, w, 2]``, the occlusion map ``[B, 1, h, w]`` (when the config estimates it) and the
        normalised keypoints."""
        if self._encoding is None:
            raise RuntimeError("call set_source() first")
        if self.transfer.kp_initial is None:
            # The first frame seen is the reference; taken from the whole batch's keypoints (as before the
            # stage existed), since a batch of one may round differently in some kernels.
            self.transfer.set_initial({k: v[:1] for k, v in self.keypoints(frames).items()})
            self._stage = None
        self.frame_stage()
        out = self._stage(frames)
        kp = {"value": out["kp_value"]}
        if "kp_jacobian" in out:
            kp["jacobian"] = out["kp_jacobian"]
        return FrameOutputs(prediction=out["prediction"], deformation=out.get("deformation"),
                            occlusion_map=out.get("occlusion_map"), kp_driving=kp,
                            kp_source=self.transfer.kp_source, aligned=self._aligned)

    @torch.inference_mode()
    def animate_keypoints(self, kp_driving: KP) -> FrameOutputs:
        """Decode from driving keypoints the caller detected with :meth:`keypoints` (``value [B, K, 2]``,
        ``jacobian [B, K, 2, 2]``) and may have changed: the seam between keypoint detection and the generator,
        where a live tool filters them over time (:mod:`fomm.live.smoothing`). Unchanged keypoints give what
        :meth:`animate_outputs` gives for the same frames (the same relative motion and decode, outside the
        fused :class:`FrameStage`, which detects the keypoints itself)."""
        if self._encoding is None:
            raise RuntimeError("call set_source() first")
        if self.transfer.kp_initial is None:
            self.transfer.set_initial({k: v[:1] for k, v in kp_driving.items()})
            self._stage = None
        kp = self.transfer(kp_driving)
        out = self._generator.decode(self._encoding, kp_source=self.transfer.kp_source, kp_driving=kp,
                                     with_deformed=False)
        return FrameOutputs(prediction=out["prediction"], deformation=out.get("deformation"),
                            occlusion_map=out.get("occlusion_map"), kp_driving=kp,
                            kp_source=self.transfer.kp_source, aligned=self._aligned)


__all__ = ["Animator", "FrameStage"]
