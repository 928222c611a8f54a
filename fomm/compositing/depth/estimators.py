"""The estimators: Depth-Anything-V2 (weights the user has), the depth the user brings (``file``), and ``auto``.

Depth-Anything-V2 is the model VFX pipelines run today; it is not shipped (about 100 MB for Small, under a
non-commercial licence for Base/Large) and fomm never fetches it on its own: it loads a folder the user gives, or a
Hugging Face id that is already in the local cache, and downloads only an id the user typed. Its preprocessing is
done here (resize so the shorter side is ``input_size`` rounded to the patch size, ImageNet mean/std, as its own
processor does) so that no image-processor extras (torchvision) are needed. Its output is relative disparity
(near = large), min-max normalised per image to fomm's convention; metric checkpoints (distance, far = large) are
inverted first.

The portrait estimator (mediapipe, shipped with the ``eval`` extra, nothing to download) lives in
:mod:`fomm.compositing.depth.portrait`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fomm.compositing.depth.base import ESTIMATOR_NAMES, DepthEstimator, DepthOptions, normalise, resize_depth
from fomm.compositing.depth.files import count_depth_frames, iter_depth_frames, read_depth
from fomm.errors import InputError

#: The Depth-Anything checkpoint ``auto`` looks for in the local Hugging Face cache (never downloaded by ``auto``).
DEFAULT_DEPTH_ANYTHING = "depth-anything/Depth-Anything-V2-Small-hf"
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HOW_TO_GET = ("get it where there is network with `huggingface-cli download {id} --local-dir DIR` and pass "
               "--depth-model DIR")


def _note(text: str) -> None:
    print(f"fomm: note: {text}", file=sys.stderr)


def _cached_snapshot(model_id: str) -> Path | None:
    """The local Hugging Face cache folder holding ``model_id``'s config and weights, or None (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    config = try_to_load_from_cache(model_id, "config.json")
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    return folder if any((folder / w).exists() for w in ("model.safetensors", "pytorch_model.bin")) else None


def depth_anything_available(model: str | None = None) -> bool:
    """Whether Depth-Anything could run without a download: transformers installed and ``model`` (a folder, or an
    id, default :data:`DEFAULT_DEPTH_ANYTHING`) on disk."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    if model is not None and Path(model).is_dir():
        return True
    return _cached_snapshot(model or DEFAULT_DEPTH_ANYTHING) is not None


def _check_model_folder(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: has no config.json, so it is not a Depth-Anything model folder; "
                         + _HOW_TO_GET.format(id=DEFAULT_DEPTH_ANYTHING))
    if not any((folder / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")) and \
            not list(folder.glob("model-*.safetensors")):
        raise InputError(f"{folder}: has a config.json but no weights (model.safetensors); "
                         + _HOW_TO_GET.format(id=DEFAULT_DEPTH_ANYTHING))


def _resolve(model: str | None) -> tuple[str, bool]:
    """``(what to pass to from_pretrained, may it download)`` for a folder, an id, or nothing (the default id)."""
    if model is None:
        snap = _cached_snapshot(DEFAULT_DEPTH_ANYTHING)
        if snap is None:
            raise InputError(f"no Depth-Anything weights: {DEFAULT_DEPTH_ANYTHING} is not in the local Hugging Face "
                             f"cache and fomm does not download behind your back; "
                             + _HOW_TO_GET.format(id=DEFAULT_DEPTH_ANYTHING)
                             + f", or pass --depth-model {DEFAULT_DEPTH_ANYTHING} to download it")
        return str(snap), False
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{path}: --depth-model must be a model folder (with config.json) or a Hugging Face id")
        _check_model_folder(path)
        return str(path), False
    if _HF_ID.match(model) and not model.startswith((".", "/", "~")):
        snap = _cached_snapshot(model)
        return (str(snap), False) if snap is not None else (model, True)
    raise InputError(f"{model}: folder not found (and not a Hugging Face id such as {DEFAULT_DEPTH_ANYTHING})")


class DepthAnythingEstimator:
    """Depth-Anything(-V2) through ``transformers.AutoModelForDepthEstimation``.

    ``model``: a folder (``save_pretrained`` layout), a Hugging Face id (downloaded only if not cached; the user
    named it), or None for :data:`DEFAULT_DEPTH_ANYTHING` from the cache. ``input_size``: the network's shorter
    side in pixels (rounded down to the patch size, at least one patch). ``__call__(image uint8 [H, W, 3])`` ->
    float32 ``[H, W]`` in ``[0, 1]``, near = 1, min-max normalised per image.

    Raises:
        InputError: transformers missing, the folder is empty / not a model, or the id cannot be had.
    """

    name = "depth-anything"

    def __init__(self, model: str | None = None, device: str = "cpu", input_size: int = 518) -> None:
        try:
            from transformers import AutoModelForDepthEstimation
        except ImportError:
            raise InputError("the depth-anything estimator needs transformers: pip install 'fomm[depth]'") from None
        source, may_download = _resolve(model)
        try:
            net = AutoModelForDepthEstimation.from_pretrained(source, local_files_only=not may_download)
        except (OSError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if may_download:
                raise InputError(f"could not get Depth-Anything {model!r}: not in the local Hugging Face cache and the "
                                 f"download failed ({first[:200]}); " + _HOW_TO_GET.format(id=model)) from None
            raise InputError(f"{source}: cannot load a depth model from it ({first[:200]}); "
                             + _HOW_TO_GET.format(id=DEFAULT_DEPTH_ANYTHING)) from None
        self.source = source
        self.model_id = model or DEFAULT_DEPTH_ANYTHING
        try:
            self.device = torch.device(device)
        except RuntimeError as err:
            raise InputError(f"unknown torch device {device!r} ({err})") from None
        self.net = net.to(self.device).eval()
        cfg = net.config
        self.metric = getattr(cfg, "depth_estimation_type", "relative") == "metric"
        backbone = getattr(cfg, "backbone_config", None)
        self.patch = int(getattr(backbone, "patch_size", None) or getattr(cfg, "patch_size", 14) or 14)
        self.input_size = max(self.patch, input_size // self.patch * self.patch)
        self.mean, self.std = self._normalisation(Path(source))

    @staticmethod
    def _normalisation(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet, what Depth-Anything trained with
        proc = folder / "preprocessor_config.json"
        if proc.is_file():
            try:
                data = json.loads(proc.read_text())
                mean, std = data.get("image_mean", mean), data.get("image_std", std)
            except ValueError:
                pass
        return torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def _input_hw(self, h: int, w: int) -> tuple[int, int]:
        # Shorter side to input_size keeping the aspect ratio, both sides multiples of the patch size.
        scale = self.input_size / min(h, w)
        return (max(self.patch, round(h * scale / self.patch) * self.patch),
                max(self.patch, round(w * scale / self.patch) * self.patch))

    @torch.inference_mode()
    def raw(self, image: np.ndarray) -> torch.Tensor:
        """The network's output at the image's size, ``[H, W]`` float (disparity, near = large)."""
        h, w = image.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255.0)
        x = F.interpolate(x, size=self._input_hw(h, w), mode="bicubic", align_corners=False, antialias=True)
        x = ((x.clamp_(0, 1) - self.mean) / self.std).to(self.device)
        pred = self.net(pixel_values=x).predicted_depth.float()
        pred = F.interpolate(pred[:, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0].cpu()
        if self.metric:
            pred = 1.0 / pred.clamp(min=1e-3)
        return pred

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return normalise(self.raw(image))


class FileDepth:
    """Depth the user brings, one map per call: one file (the same map every frame), a folder or a video of them.

    ``__call__(image)`` returns the next depth frame resized to the image's size (bilinear; a note is printed once
    when sizes differ). ``expect_frames(n)`` checks up front that a folder or video has at least ``n`` frames.

    Raises:
        InputError: unreadable depth, a missing frame, or fewer depth frames than images.
    """

    name = "file"

    def __init__(self, path: str | os.PathLike, note: Callable[[str], None] = _note) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: depth file not found")
        self.count, self.exact = count_depth_frames(self.path)
        self.single = not self.path.is_dir() and self.count == 1 and self._is_map_file()
        self._fixed = read_depth(self.path) if self.single else None
        self._frames: Iterator[np.ndarray] | None = None
        self._index = 0
        self._note = note
        self._noted = False

    def _is_map_file(self) -> bool:
        from fomm.compositing.depth.files import FORMATS

        return self.path.suffix.lower() in FORMATS or self.path.suffix.lower() in (".tif", ".tiff", ".jpg", ".jpeg")

    def expect_frames(self, n: int) -> None:
        if not self.single and self.exact and self.count < n:
            raise InputError(f"{self.path}: has {self.count} depth frames but the video has {n}; give one depth "
                             f"frame per video frame")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.single:
            depth = self._fixed
        else:
            if self._frames is None:
                self._frames = iter_depth_frames(self.path)
            depth = next(self._frames, None)
            if depth is None:
                raise InputError(f"{self.path}: depth ends after {self._index} frames but the video has more; give "
                                 f"one depth frame per video frame")
        self._index += 1
        size = image.shape[:2]
        if depth.shape != size:
            if not self._noted:
                self._note(f"{self.path}: depth is {depth.shape[1]}x{depth.shape[0]}, resized to the frames' "
                           f"{size[1]}x{size[0]}")
                self._noted = True
            depth = resize_depth(depth, size)
        return depth


def _make_depth_anything(opts: DepthOptions) -> DepthEstimator:
    return DepthAnythingEstimator(opts.model, opts.device, opts.input_size)


def _make_file(opts: DepthOptions) -> DepthEstimator:
    return FileDepth(opts.depth_file)


def _make_portrait(opts: DepthOptions) -> DepthEstimator:
    from fomm.compositing.depth.portrait import PortraitEstimator

    return PortraitEstimator()


def _make_auto(opts: DepthOptions) -> DepthEstimator:
    if opts.depth_file is not None:
        return _make_file(opts)
    if opts.model is not None or depth_anything_available():
        return _make_depth_anything(opts)
    return _make_portrait(opts)


#: name -> factory; a plain table rather than registration on import, so which estimators exist never depends on
#: which modules happened to be imported first
ESTIMATORS: dict[str, Callable[[DepthOptions], DepthEstimator]] = {
    "auto": _make_auto, "depth-anything": _make_depth_anything, "file": _make_file, "portrait": _make_portrait,
}


def estimator_names() -> list[str]:
    """The estimator names (``auto`` first)."""
    return list(ESTIMATOR_NAMES)


def make_estimator(options: DepthOptions | None = None, **values) -> DepthEstimator:
    """Build the estimator ``options`` names (or pass :class:`DepthOptions` fields as keywords)."""
    opts = options if options is not None else DepthOptions(**values)
    return ESTIMATORS[opts.estimator](opts)


__all__ = ["DEFAULT_DEPTH_ANYTHING", "ESTIMATORS", "DepthAnythingEstimator", "FileDepth", "depth_anything_available",
           "estimator_names", "make_estimator"]
