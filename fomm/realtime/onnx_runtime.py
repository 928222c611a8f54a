"""Animation on ONNX Runtime, from a folder written by :func:`fomm.realtime.export_onnx`.

:class:`OnnxModel` holds the three inference sessions; :class:`OnnxAnimator` has the same API as the torch
:class:`fomm.animate.Animator` (``set_source``, ``set_initial_driving``, ``animate_batch``, ``animate_frames``) and
:func:`fomm.animate.animate_video` accepts an :class:`OnnxModel` in place of a torch model. Keypoint normalisation is
shared with the torch path (it is a few numbers per frame).

Providers: CPU by default; ``device="cuda"`` asks for TensorRT and CUDA (``pip install 'fomm[gpu]'``, which brings
``onnxruntime-gpu``), in that order, with CPU as the fallback for unsupported nodes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fomm.animate.base import KeypointAnimator
from fomm.animate.outputs import FrameOutputs
from fomm.errors import ConfigError, FommError, InputError
from fomm.io.safepath import component_problem
from fomm.realtime.export import FORMAT, GRAPH_FILES, READABLE_FORMAT_VERSIONS, SIDECAR

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise FommError("the ONNX backend needs onnxruntime: pip install 'fomm[onnx]' (or 'fomm[gpu]' for CUDA)"
                        ) from None
    return onnxruntime


def choose_providers(device: str = "cpu", available: Sequence[str] | None = None) -> tuple[list[str], str | None]:
    """Execution providers for ``device`` (``"cpu"`` or ``"cuda"``), best first, and a note when the GPU ones are
    missing and the CPU provider stands in (``None`` otherwise).

    ``cuda`` asks for TensorRT, then CUDA, then the CPU for nodes neither supports. A plain ``onnxruntime``
    (not ``onnxruntime-gpu``) has neither: the run falls back to the CPU with a note rather than failing, since the
    result is the same, only slower. ``available`` overrides what the installed onnxruntime reports (tests).

    Raises:
        FommError: a device other than cpu or cuda.
    """
    from fomm.api import parse_device

    kind = parse_device(device).type
    if kind == "cpu":
        return ["CPUExecutionProvider"], None
    if kind != "cuda":
        raise FommError(f"the ONNX backend runs on cpu or cuda, not '{device}'")
    found = set(available if available is not None else _ort().get_available_providers())
    gpu = [p for p in GPU_PROVIDERS if p in found]
    if not gpu:
        return ["CPUExecutionProvider"], ("this onnxruntime has no CUDA or TensorRT provider, so the ONNX backend runs "
                                          "on the CPU; for the GPU: pip install 'fomm[gpu]'")
    return gpu + ["CPUExecutionProvider"], None


def select_providers(device: str = "cpu") -> list[str]:
    """Execution providers for ``device``, best first (see :func:`choose_providers`).

    Raises:
        FommError: ``cuda`` asked for but this onnxruntime has no GPU provider, or an unknown device.
    """
    providers, note = choose_providers(device)
    if note is not None:
        raise FommError("--device cuda with the ONNX backend needs onnxruntime-gpu: pip install 'fomm[gpu]'")
    return providers


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_sidecar(meta: dict[str, Any], sidecar: Path) -> None:
    """Type- and range-check the sidecar fields the runtime reads, so a hand-edited or damaged file (``image_size:
    "big"``) is one line saying to re-export rather than a ValueError from ``int()`` or a wrong-sized run."""
    size = meta.get("image_size")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v, 16, 8192) for v in size)):
        raise InputError(f"{sidecar}: image_size must be [H, W] with each side an integer from 16 to 8192, got "
                         f"{size!r}; re-export the model")
    if not _is_int(meta.get("num_channels"), 1, 4):
        raise InputError(f"{sidecar}: num_channels must be an integer from 1 to 4, got {meta.get('num_channels')!r}; "
                         "re-export the model")
    if not isinstance(meta.get("has_jacobian"), bool):
        raise InputError(f"{sidecar}: has_jacobian must be true or false, got {meta.get('has_jacobian')!r}; "
                         "re-export the model")
    graphs = meta.get("graphs")
    if not (isinstance(graphs, dict) and graphs and all(isinstance(g, dict) for g in graphs.values())):
        raise InputError(f"{sidecar}: 'graphs' must map each graph name to its files and names; re-export the model")


class OnnxModel:
    """An exported FOMM model on ONNX Runtime.

    Args:
        onnx_dir: folder with ``fomm_onnx.json`` and the three ``.onnx`` files.
        device: ``"cpu"`` or ``"cuda"`` (see :func:`choose_providers`: without GPU providers it runs on the CPU
            and says so in :attr:`provider_note`); ``providers`` overrides it.
        threads: intra-op threads of the CPU provider (default: ORT's choice, one per physical core).
        image_size: the ``(H, W)`` the caller expects; a different exported size is an error.
    Raises:
        InputError: missing folder, sidecar or graph, or a sidecar that is not a fomm export.
        ConfigError: exported for another image size than ``image_size``.
    """

    backend = "onnx"
    model = "fomm"
    backend_label = "the ONNX backend"

    def __init__(self, onnx_dir: str | os.PathLike, device: str = "cpu", providers: Sequence[str] | None = None,
                 threads: int | None = None, image_size: tuple[int, int] | None = None) -> None:
        ort = _ort()
        self.dir = Path(onnx_dir)
        sidecar = self.dir / SIDECAR
        if not sidecar.is_file():
            what = "folder does not exist" if not self.dir.is_dir() else f"no {SIDECAR} in it"
            raise InputError(f"{self.dir}: not an ONNX export ({what}); create one with "
                             f"'fomm export-onnx --config CONFIG --checkpoint PATH -o {self.dir}'")
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{sidecar}: unreadable sidecar ({exc}); re-export the model") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(f"{sidecar}: not a fomm ONNX sidecar (format is not '{FORMAT}'); re-export the model")
        version = meta.get("format_version", 1)
        if version not in READABLE_FORMAT_VERSIONS:
            raise InputError(f"{sidecar}: ONNX export format version {version!r} is not one this fomm reads "
                             f"({', '.join(map(str, READABLE_FORMAT_VERSIONS))}); re-export the model with this fomm")
        _check_sidecar(meta, sidecar)
        self.meta: dict[str, Any] = meta
        self.image_size: tuple[int, int] = (int(meta["image_size"][0]), int(meta["image_size"][1]))
        if image_size is not None and tuple(image_size) != self.image_size:
            h, w = self.image_size
            raise ConfigError(f"{self.dir}: exported for {w}x{h} images, but {image_size[1]}x{image_size[0]} is "
                              f"expected; re-export with the matching config")
        self.has_jacobian = bool(meta["has_jacobian"])
        self.device = torch.device("cpu")  # where the animator keeps its (host) tensors
        #: a one-line note when the GPU providers asked for are missing and the CPU stands in (else None)
        self.provider_note: str | None = None
        if providers is None:
            providers, self.provider_note = choose_providers(device)
        self.providers = list(providers)
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sessions = {}
        for name, path in _graph_paths(self.dir, sidecar, meta).items():
            if not path.is_file():
                raise InputError(f"{path}: ONNX graph '{name}' is missing from the export; re-export the model")
            try:
                self.sessions[name] = ort.InferenceSession(str(path), sess_options=opts, providers=self.providers)
            except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
                raise InputError(f"{path}: cannot load ONNX graph ({type(exc).__name__}: {exc}); "
                                 f"re-export the model") from None
        self.names = {name: meta["graphs"][name] for name in self.sessions}

    def make_animator(self, relative: bool = True, adapt_movement_scale: bool = True,
                      batch_size: int = 4) -> OnnxAnimator:
        """This backend's animator (what :func:`fomm.animate.make_animator` returns for an ONNX model)."""
        return OnnxAnimator(self, relative=relative, adapt_movement_scale=adapt_movement_scale, batch_size=batch_size)

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.sessions[graph].run(self.names[graph]["outputs"], feeds)
        return dict(zip(self.names[graph]["outputs"], outs, strict=True))

    def check_images(self, images: np.ndarray) -> np.ndarray:
        """``[B, 3, H, W]`` float32 at the exported size, else :class:`InputError`."""
        arr = np.ascontiguousarray(images, dtype=np.float32)
        if arr.ndim != 4 or tuple(arr.shape[2:]) != self.image_size or arr.shape[1] != self.meta["num_channels"]:
            h, w = self.image_size
            raise InputError(f"images of shape {tuple(arr.shape)} do not fit the ONNX model, which was exported "
                             f"for [B, {self.meta['num_channels']}, {h}, {w}]")
        return arr

    def keypoints(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``[B, 3, H, W]`` in ``[0, 1]`` -> ``{"value": [B, K, 2], "jacobian"?: [B, K, 2, 2]}``."""
        out = self._run("kp_detector", {"image": self.check_images(images)})
        return {k.removeprefix("kp_"): v for k, v in out.items()}

    def encode_source(self, source: np.ndarray) -> dict[str, np.ndarray]:
        """``[S, 3, H, W]`` -> ``{"source", "kp_source_value", "kp_source_jacobian"?, "features", "source_small"}``."""
        src = self.check_images(source)
        return {"source": src, **self._run("source_stage", {"source": src})}

    def decode(self, encoding: dict[str, np.ndarray], kp_driving: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-frame stage: ``kp_driving`` (normalised, ``[B, K, 2]`` / ``[B, K, 2, 2]``) -> ``{"prediction"
        [B, 3, H, W], "deformed", "mask", "occlusion_map"?, "deformation" [B, h, w, 2] (format version >= 2)}``."""
        feeds = {n: encoding[n] for n in self.names["frame_stage"]["inputs"] if n in encoding}
        feeds["kp_driving_value"] = np.ascontiguousarray(kp_driving["value"], dtype=np.float32)
        if self.has_jacobian:
            feeds["kp_driving_jacobian"] = np.ascontiguousarray(kp_driving["jacobian"], dtype=np.float32)
        return self._run("frame_stage", feeds)


def _graph_paths(folder: Path, sidecar: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """``{graph name: .onnx path}`` from the sidecar's ``graphs`` table, each file checked to be a plain name in
    ``folder``: the sidecar is data, and a crafted ``"file": "../../elsewhere.onnx"`` (or an absolute path, which
    ``Path`` joins by dropping the folder) would load a graph from outside the export.

    Raises:
        InputError: a graph the runtime needs is missing from the table, an entry is not an object with ``inputs``
            and ``outputs`` lists, or a file name is not a plain name.
    """
    graphs = meta.get("graphs")
    if not isinstance(graphs, dict) or any(name not in graphs for name in GRAPH_FILES):
        raise InputError(f"{sidecar}: 'graphs' must list {', '.join(GRAPH_FILES)}; re-export the model")
    paths = {}
    for name in GRAPH_FILES:  # only the graphs the runtime runs; unknown entries are not loaded
        info = graphs[name]
        if not isinstance(info, dict) or not all(isinstance(info.get(k), list) for k in ("inputs", "outputs")):
            raise InputError(f"{sidecar}: graphs.{name} needs 'inputs' and 'outputs' lists; re-export the model")
        file = info.get("file", GRAPH_FILES[name])
        problem = component_problem(file)
        if problem is not None:
            raise InputError(f"{sidecar}: graphs.{name}.file {file!r} {problem}; it must name a file inside "
                             f"{folder}, so re-export the model")
        paths[name] = folder / file
    return paths


def _np(t: torch.Tensor | np.ndarray) -> np.ndarray:
    return t.detach().cpu().float().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float32)


class OnnxAnimator(KeypointAnimator):
    """The FOMM animator on ONNX Runtime (same constructor arguments as :class:`fomm.animate.Animator`, minus the
    torch speed options). Keypoint normalisation is the torch engine's own :class:`KeypointTransfer`."""

    def __init__(self, model: OnnxModel, relative: bool = True, adapt_movement_scale: bool = True,
                 batch_size: int = 4) -> None:
        super().__init__(model, relative, adapt_movement_scale, batch_size)
        self._onnx_encoding: dict[str, np.ndarray] | None = None

    def set_source(self, source: np.ndarray | torch.Tensor) -> None:
        """Run the source stage once. ``source``: uint8 ``[H, W, 3]`` or float ``[1, 3, h, w]`` in ``[0, 1]``."""
        src = self.to_model_input(source) if isinstance(source, np.ndarray) and source.dtype == np.uint8 else source
        enc = self.model.encode_source(_np(src))
        self._onnx_encoding = enc
        kp_source = {"value": torch.from_numpy(enc["kp_source_value"])}
        if "kp_source_jacobian" in enc:
            kp_source["jacobian"] = torch.from_numpy(enc["kp_source_jacobian"])
        self.transfer.set_source(kp_source)

    def keypoints(self, frames: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        """Keypoints of ``[B, 3, h, w]`` frames (torch tensors on the CPU)."""
        return {k: torch.from_numpy(v) for k, v in self.model.keypoints(_np(frames)).items()}

    def animate_outputs(self, frames: torch.Tensor | np.ndarray) -> FrameOutputs:
        """``[B, 3, h, w]`` driving frames in ``[0, 1]`` -> :class:`FrameOutputs` (torch, CPU). ``deformation`` is
        ``None`` for exports made before format version 2, which did not output it."""
        return self.animate_keypoints(self.keypoints(frames))

    def animate_keypoints(self, kp_driving: dict[str, torch.Tensor]) -> FrameOutputs:
        """Decode from driving keypoints the caller detected with :meth:`keypoints` and may have changed (e.g.
        filtered over time, :mod:`fomm.live.smoothing`); as :meth:`fomm.animate.Animator.animate_keypoints`."""
        if self._onnx_encoding is None:
            raise RuntimeError("call set_source() first")
        kp_norm = self.transfer(kp_driving)
        out = self.model.decode(self._onnx_encoding, {k: _np(v) for k, v in kp_norm.items()})

        def tensor(name: str) -> torch.Tensor | None:
            return torch.from_numpy(out[name]) if name in out else None

        return FrameOutputs(prediction=tensor("prediction"), deformation=tensor("deformation"),
                            occlusion_map=tensor("occlusion_map"), kp_driving=kp_norm,
                            kp_source=self.transfer.kp_source, aligned=bool(self.model.meta.get("align_deformation")))


def load_onnx_model(onnx_dir: str | os.PathLike, device: str = "cpu", threads: int | None = None,
                    image_size: tuple[int, int] | None = None) -> OnnxModel:
    """Open an export folder (see :class:`OnnxModel`)."""
    return OnnxModel(onnx_dir, device=device, threads=threads, image_size=image_size)


__all__ = ["OnnxAnimator", "OnnxModel", "choose_providers", "load_onnx_model", "select_providers"]
