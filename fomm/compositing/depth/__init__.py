"""Depth for animated results and any video, offline: estimators, depth files, and depth that does not flicker.

Convention (every file says it): float32 ``[H, W]`` in ``[0, 1]``, relative inverse depth, near = 1, far = 0.

* Estimators (:func:`make_estimator`, by name): ``depth-anything`` (Depth-Anything-V2 weights the user has),
  ``portrait`` (mediapipe, offline default), ``file`` (depth the user brings), ``auto``.
* Files (:mod:`.files`): 16-bit PNG, EXR (channel ``Z``), NPY, each with a JSON sidecar.
* Temporal consistency (:mod:`.temporal`): :class:`DepthPassStage` moves the source's depth with the animation;
  :class:`VideoDepthAligner` steadies per-frame estimates of any video.
* :func:`export_depth`: what ``fomm depth INPUT -o OUT`` runs (streaming, memory flat in the video's length).
"""

from __future__ import annotations

from fomm.compositing.depth.base import (
    CONVENTION,
    FAR,
    NEAR,
    DepthEstimator,
    DepthOptions,
    check_depth,
    normalise,
    resize_depth,
)
from fomm.compositing.depth.estimators import (
    DEFAULT_DEPTH_ANYTHING,
    ESTIMATORS,
    DepthAnythingEstimator,
    FileDepth,
    depth_anything_available,
    estimator_names,
    make_estimator,
)
from fomm.compositing.depth.export import DepthExportResult, export_depth, source_depth_stage
from fomm.compositing.depth.files import (
    DepthFolderWriter,
    read_depth,
    read_sidecar,
    sidecar_of,
    write_depth,
)
from fomm.compositing.depth.portrait import PortraitConfig, PortraitEstimator
from fomm.compositing.depth.temporal import (
    AlignConfig,
    DepthPassStage,
    FillConfig,
    VideoDepthAligner,
    fill_disoccluded,
    warp_depth,
)

__all__ = [
    "ESTIMATORS",
    "CONVENTION", "DEFAULT_DEPTH_ANYTHING", "FAR", "NEAR", "AlignConfig", "DepthAnythingEstimator",
    "DepthEstimator", "DepthExportResult", "DepthFolderWriter", "DepthOptions", "DepthPassStage", "FileDepth",
    "FillConfig", "PortraitConfig", "PortraitEstimator", "VideoDepthAligner", "check_depth",
    "depth_anything_available", "estimator_names", "export_depth", "fill_disoccluded", "make_estimator", "normalise",
    "read_depth", "read_sidecar", "resize_depth", "sidecar_of", "source_depth_stage",
    "warp_depth", "write_depth",
]
