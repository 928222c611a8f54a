"""ONNX export of a FOMM model in three graphs, split by how often each one has to run.

* ``kp_detector.onnx``: ``image [B, 3, H, W]`` in ``[0, 1]`` -> ``kp_value [B, K, 2]`` (+ ``kp_jacobian [B, K, 2, 2]``).
  Run on every driving frame.
* ``source_stage.onnx``: ``source [S, 3, H, W]`` -> the source keypoints, the generator's encoder ``features``
  ``[S, F, H/2**n, W/2**n]`` and the dense-motion network's downsampled copy ``source_small [S, 3, h, w]``.
  Run once per source image (a fifth of the generator's FLOPs at vox-256, plus one keypoint pass).
* ``frame_stage.onnx``: the source stage's outputs, the source image and *normalised* driving keypoints
  ``[B, K, 2]`` (+ jacobians) -> ``prediction [B, 3, H, W]`` in ``[0, 1]``, ``deformed [B, 3, H, W]``,
  ``mask [B, K+1, h, w]``, ``occlusion_map [B, 1, h, w]`` (when estimated) and, from format version 2 on,
  ``deformation [B, h, w, 2]`` (the sampling grid, see :class:`fomm.animate.FrameOutputs`). ``S`` may be 1
  (broadcast) or ``B``. Exports of version 1 (no ``deformation``) still load and run.

Keypoint normalisation (relative motion, the convex-hull movement scale) stays outside the graphs: it is a few dozen
numbers per frame and needs a convex hull.

The graphs use opset 17 by default (16-19 accepted): GridSample exists from 16 on, and TensorRT's parser maps opset
>= 20 GridSample to nearest sampling. 2x2 inverses are already closed-form in the model (:func:`fomm.ops.inverse_2x2`).
A JSON sidecar (``fomm_onnx.json``) records the config, opset, image size and every graph's input/output names; it is
written last, so a folder with a sidecar is a complete export.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fomm.errors import ConfigError, FommError, OutputError
from fomm.io.atomic import atomic_file, write_text_atomic
from fomm.models.fomm.fuse import fused_view

SIDECAR = "fomm_onnx.json"
FORMAT = "fomm-onnx"
FORMAT_VERSION = 2
#: versions the runtime reads: 1 lacks the frame stage's ``deformation`` output (and ``align_deformation``)
READABLE_FORMAT_VERSIONS = (1, 2)
DEFAULT_OPSET = 17
SUPPORTED_OPSETS = range(16, 20)
GRAPH_FILES = {"kp_detector": "kp_detector.onnx", "source_stage": "source_stage.onnx",
               "frame_stage": "frame_stage.onnx"}


class KeypointGraph(nn.Module):
    """``image [B, 3, H, W] -> (kp_value [B, K, 2], kp_jacobian [B, K, 2, 2]?)``."""

    def __init__(self, kp_detector: nn.Module) -> None:
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kp = self.kp_detector(image)
        return (kp["value"], kp["jacobian"]) if "jacobian" in kp else (kp["value"],)


class SourceStage(nn.Module):
    """``source [S, 3, H, W] -> (kp_source_value, kp_source_jacobian?, features, source_small)``."""

    def __init__(self, kp_detector: nn.Module, generator: nn.Module) -> None:
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator

    def forward(self, source: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kp = self.kp_detector(source)
        enc = self.generator.encode_source(source)
        kp_out = (kp["value"], kp["jacobian"]) if "jacobian" in kp else (kp["value"],)
        return (*kp_out, enc.features, enc.small)


class FrameStage(nn.Module):
    """Per driving frame: dense motion, warping, bottleneck and decoder (see the module docstring for names)."""

    def __init__(self, generator: nn.Module, has_jacobian: bool) -> None:
        super().__init__()
        self.generator = generator
        self.has_jacobian = has_jacobian

    def forward(self, source: torch.Tensor, features: torch.Tensor, source_small: torch.Tensor,
                *kps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from fomm.models.fomm.generator import SourceEncoding

        if self.has_jacobian:
            kp_source = {"value": kps[0], "jacobian": kps[1]}
            kp_driving = {"value": kps[2], "jacobian": kps[3]}
        else:
            kp_source, kp_driving = {"value": kps[0]}, {"value": kps[1]}
        enc = SourceEncoding(image=source, features=features, small=source_small)
        out = self.generator.decode(enc, kp_source=kp_source, kp_driving=kp_driving)
        outputs = (out["prediction"], out["deformed"], out["mask"])
        # Appended after the version-1 outputs, so their positions do not move.
        return outputs + ((out["occlusion_map"],) if "occlusion_map" in out else ()) + (out["deformation"],)


def graph_names(has_jacobian: bool, has_occlusion: bool) -> dict[str, dict[str, list[str]]]:
    """Input/output names of the three graphs (what the sidecar records and the runtime feeds)."""
    kp = ["kp_value", "kp_jacobian"] if has_jacobian else ["kp_value"]
    src_kp = ["kp_source_value", "kp_source_jacobian"] if has_jacobian else ["kp_source_value"]
    drv_kp = ["kp_driving_value", "kp_driving_jacobian"] if has_jacobian else ["kp_driving_value"]
    frame_out = ["prediction", "deformed", "mask"] + (["occlusion_map"] if has_occlusion else []) + ["deformation"]
    return {
        "kp_detector": {"inputs": ["image"], "outputs": kp},
        "source_stage": {"inputs": ["source"], "outputs": src_kp + ["features", "source_small"]},
        "frame_stage": {"inputs": ["source", "features", "source_small"] + src_kp + drv_kp, "outputs": frame_out},
    }


def _dynamic_axes(names: dict[str, list[str]], axis_name: dict[str, str]) -> dict[str, dict[int, str]]:
    return {n: {0: axis_name.get(n, "batch")} for n in names["inputs"] + names["outputs"]}


def _export_one(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, names: dict[str, list[str]],
                opset: int, source_batch_inputs: tuple[str, ...] = ()) -> None:
    axes = _dynamic_axes(names, {n: "source_batch" for n in source_batch_inputs})
    # A fresh wrapper is in training mode, and the exporter restores that mode recursively afterwards, which would
    # leave the caller's networks with batch-statistics BatchNorm.
    module.eval()
    # Validated before it replaces an older export: a graph that fails the checker never takes the final name.
    with atomic_file(path, suffix=".partial") as tmp:
        with warnings.catch_warnings():
            # The legacy exporter warns about Python-side shape checks (traced as constants) and its own deprecation;
            # the shapes involved are covered by the dynamic-batch checks in the tests.
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(tmp), input_names=names["inputs"], output_names=names["outputs"],
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
        import onnx

        onnx.checker.check_model(str(tmp), full_check=True)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise FommError("ONNX export needs the 'onnx' package: pip install 'fomm[onnx]'") from None


def check_export_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as a Path; :class:`OutputError` when it names an existing file. mkdir would say only "File
    exists", which does not tell the user that ``-o`` names the export's folder rather than a file."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, but an ONNX export is a folder (three .onnx graphs and a sidecar): "
                          "pass a folder path to -o")
    return out


def export_onnx(model: Any, out_dir: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Export ``model`` (a FOMM :class:`~fomm.api.LoadedModel`) into ``out_dir`` and return the sidecar path.

    Graphs are traced on CPU in fp32 with a dynamic batch axis; every file is validated with ``onnx.checker``
    before it replaces an older one, and the sidecar is written last.

    Raises:
        ConfigError: not a FOMM model, or a generator without a dense-motion network.
        OutputError: ``out_dir`` cannot be created or written.
        FommError: ``opset`` outside 16-19, or the ``onnx`` package is missing.
    """
    if opset not in SUPPORTED_OPSETS:
        raise FommError(f"opset {opset} is not supported: use 16-19 (GridSample needs >= 16; TensorRT samples "
                        f"opset >= 20 GridSample with nearest neighbours)")
    if getattr(model, "model", "fomm") != "fomm" or model.kp_detector is None:
        raise ConfigError(f"ONNX export supports FOMM models only, not '{model.model}'")
    if model.generator.dense_motion_network is None:
        raise ConfigError("ONNX export needs a generator with a dense-motion network (dense_motion_params in the "
                          "config); every released FOMM config has one")
    _require_onnx()
    out = check_export_dir(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".probe", delete=True)
        probe.close()
    except OSError as exc:
        raise OutputError(f"cannot write ONNX files to {out}: {exc.strerror or exc}") from None
    sidecar = out / SIDECAR
    if sidecar.exists():
        sidecar.unlink()  # an interrupted re-export must not look complete

    # Copies: tracing happens on CPU in fp32 whatever the caller's device, dtype or memory format.
    kp_det = copy.deepcopy(model.kp_detector).float().cpu().to(memory_format=torch.contiguous_format).eval()
    gen = copy.deepcopy(model.generator).float().cpu().to(memory_format=torch.contiguous_format).eval()
    cfg = model.config
    h, w = model.image_size
    common = cfg.model_params.common_params
    has_jac = bool(common.estimate_jacobian)
    has_occ = bool(gen.estimate_occlusion_map)
    names = graph_names(has_jac, has_occ)

    gen_ = torch.Generator().manual_seed(0)
    image = torch.rand(2, common.num_channels, h, w, generator=gen_)
    with torch.no_grad():
        source_out = SourceStage(kp_det, gen)(image[:1])
        kp_drv = KeypointGraph(kp_det)(image)
    _export_one(KeypointGraph(kp_det), (image,), out / GRAPH_FILES["kp_detector"], names["kp_detector"], opset)
    _export_one(SourceStage(kp_det, gen), (image[:1],), out / GRAPH_FILES["source_stage"], names["source_stage"],
                opset)
    # Traced with one source against two driving frames so the broadcast (expand) of the source is in the graph;
    # expanding a batch of S=B to B is a no-op, so the same graph serves per-frame sources too.
    n_kp = 2 if has_jac else 1
    frame_args = (image[:1], source_out[n_kp], source_out[n_kp + 1], *source_out[:n_kp], *kp_drv)
    src_inputs = tuple(names["frame_stage"]["inputs"][:3 + n_kp])
    # The per-frame graph decodes with the exact inference rewrites (fomm.models.fomm.fuse: folded batch norms,
    # polyphase up blocks, merged heads): fewer FLOPs, same output.
    _export_one(FrameStage(fused_view(gen), has_jac), frame_args, out / GRAPH_FILES["frame_stage"],
                names["frame_stage"], opset, source_batch_inputs=src_inputs)

    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "opset": opset, "torch": torch.__version__,
        "image_size": [h, w], "num_channels": common.num_channels, "num_kp": common.num_kp,
        "has_jacobian": has_jac, "has_occlusion": has_occ, "checkpoint": model.checkpoint,
        "align_deformation": bool(getattr(gen, "align_deformation", False)),
        "config_name": getattr(cfg, "name", None), "config": cfg.to_dict(),
        # A shipped model's name travels with its export, so `fomm animate --example --backend onnx` picks the
        # example pair that model was trained for, as the torch backend does.
        "pretrained": (getattr(model, "meta", None) or {}).get("pretrained"),
        "graphs": {k: {"file": GRAPH_FILES[k], **v} for k, v in names.items()},
    }
    write_text_atomic(sidecar, json.dumps(meta, indent=2) + "\n")
    return sidecar


__all__ = ["DEFAULT_OPSET", "FORMAT_VERSION", "READABLE_FORMAT_VERSIONS", "SIDECAR", "FrameStage", "KeypointGraph",
           "SourceStage", "export_onnx", "graph_names"]
