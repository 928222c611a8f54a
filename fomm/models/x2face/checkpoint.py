"""Reading and writing X2Face checkpoints in the original container format.

* Identity model (``x2face_model.pth``): ``{'state_dict': ..., 'optimizer': ...}`` as train_model.py saved it.
  The release was written by torch 0.2 and has no BatchNorm ``num_batches_tracked`` entries; they are filled in.
* Pose model (Pose2Face notebook): ``posereg.pth['state_dict']`` provides ``posefrombottle.{weight,bias}``,
  ``posetobottle.pth['state_dict']`` the ``Sequential(Linear(3, 128), BatchNorm1d(128))`` state, and the identity
  weights fill everything else.

Files are read with ``torch.load(map_location="cpu", weights_only=True)``: the originals' storages are tagged
``cuda:0`` and nothing but tensors and plain containers is needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fomm.checkpoint import atomic_save, check_finite, load_container
from fomm.errors import CheckpointError, OutputError
from fomm.models.x2face.model import X2Face, X2FaceConfig

_NGF_KEY = "pix2pixUnwrapped.netG.model.down.0.weight"
_BOTTLENECK_PREFIX = "pix2pixSampler.netG.model" + ".submodule" * 7 + "."
_BOTTLENECK_KEY = _BOTTLENECK_PREFIX + "down.1.weight"
_POSEREG_KEYS = ("posefrombottle.weight", "posefrombottle.bias")
_MAX_NAMED = 4


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` a checkpoint on the CPU with ``weights_only=True``; any failure is a :class:`CheckpointError`."""
    return load_container(path, map_location="cpu")


def state_dict_of(obj: Any, path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint: ``obj['state_dict']`` or ``obj`` itself when it is already one."""
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        top = sorted(map(str, obj.keys()))[:6] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{path} is not an X2Face checkpoint: expected {{'state_dict': {{name: tensor}}, ...}}, "
                              f"found top-level {top}")
    return dict(sd)


def infer_config(state_dict: Mapping[str, torch.Tensor], input_pose: bool = False) -> X2FaceConfig:
    """Recover ``ngf`` and ``inner_nc`` from an identity-model state dict (64 and 128 for the release)."""
    try:
        ngf = int(state_dict[_NGF_KEY].shape[0])
        inner_nc = int(state_dict[_BOTTLENECK_KEY].shape[0])
    except KeyError as exc:
        raise CheckpointError(f"not an X2Face state dict: key {exc.args[0]!r} is missing") from exc
    return X2FaceConfig(ngf=ngf, inner_nc=inner_nc, input_pose=input_pose)


def fill_num_batches_tracked(state_dict: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
                             ) -> dict[str, torch.Tensor]:
    """Add the ``num_batches_tracked`` counters that pre-0.4.1 files lack (value 0, as torch's own upgrade does).

    Only counters whose BatchNorm's ``running_mean`` is present are added, so a wrong file still fails.
    """
    out = dict(state_dict)
    for key in expected:
        if key.endswith(".num_batches_tracked") and key not in out:
            if key[: -len("num_batches_tracked")] + "running_mean" in out:
                out[key] = torch.tensor(0, dtype=torch.long)
    return out


def check_state_dict(state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                     what: str) -> None:
    """Raise a one-line :class:`CheckpointError` naming missing, unexpected and wrongly shaped keys."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k} {tuple(state_dict[k].shape)} != {tuple(expected[k].shape)}"
             for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if not (missing or unexpected or wrong):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" (+{len(items) - _MAX_NAMED} more)" if len(items) > _MAX_NAMED else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:_MAX_NAMED])}{more}")
    raise CheckpointError(f"{what} does not match the X2Face architecture; {'; '.join(parts)}. "
                          f"Check that the file is an X2Face checkpoint for this model")


def _is_pose_key(key: str) -> bool:
    return key.startswith((_BOTTLENECK_PREFIX + "posefrombottle.", _BOTTLENECK_PREFIX + "bottlefrompose."))


def load_x2face(checkpoint: str | os.PathLike[str], *, posereg: str | os.PathLike[str] | None = None,
                posetobottle: str | os.PathLike[str] | None = None, config: X2FaceConfig | None = None,
                device: torch.device | str = "cpu") -> X2Face:
    """Build X2Face from the original files, in eval mode.

    Args:
        checkpoint: identity model file (``x2face_model.pth`` / ``x2face_model_forpython3.pth``), or a pose model
            written by :func:`save_x2face` (its pose heads are then read from it).
        posereg: with ``posetobottle``, builds the pose model (``config.input_pose``): file whose
            ``state_dict`` holds ``posefrombottle.weight [3, 128]`` and ``posefrombottle.bias [3]`` (other keys
            are ignored, as in the Pose2Face notebook).
        posetobottle: file whose ``state_dict`` is ``Sequential(Linear(3, 128, bias=False), BatchNorm1d(128))``.
        config: architecture; inferred from the file (``ngf``, ``inner_nc``) when omitted.
        device: where to put the model.
    Returns:
        :class:`X2Face` in eval mode with every weight loaded strictly (wrong files raise
        :class:`CheckpointError` naming the mismatching keys).
    """
    if (posereg is None) != (posetobottle is None):
        raise CheckpointError("the X2Face pose model needs both the posereg and the posetobottle files")
    sd = state_dict_of(read_checkpoint(checkpoint), checkpoint)
    has_pose_heads = any(_is_pose_key(k) for k in sd)
    if has_pose_heads and posereg is not None:
        raise CheckpointError(f"{checkpoint} already holds pose heads; give either it or posereg/posetobottle")
    input_pose = posereg is not None or has_pose_heads
    if config is None:
        try:
            config = infer_config(sd, input_pose=input_pose)
        except CheckpointError as exc:
            raise CheckpointError(f"{checkpoint}: {exc}") from exc
    elif config.input_pose != input_pose:
        raise CheckpointError(f"config.input_pose={config.input_pose} but the files given describe "
                              f"{'a pose' if input_pose else 'an identity'} model")

    model = X2Face(config)
    expected = model.state_dict()
    full = fill_num_batches_tracked(sd, expected)
    if posereg is not None and posetobottle is not None:
        # Identity part first, so a wrong main file is reported as such.
        check_state_dict(full, {k: v for k, v in expected.items() if not _is_pose_key(k)}, str(checkpoint))
        reg = state_dict_of(read_checkpoint(posereg), posereg)
        missing = [k for k in _POSEREG_KEYS if k not in reg]
        if missing:
            raise CheckpointError(f"{posereg} is not an X2Face pose regressor file: missing {', '.join(missing)}")
        for k in _POSEREG_KEYS:
            full[_BOTTLENECK_PREFIX + k] = reg[k]
        prefix = _BOTTLENECK_PREFIX + "bottlefrompose."
        bottle_expected = {k[len(prefix):]: v for k, v in expected.items() if k.startswith(prefix)}
        to_bottle = fill_num_batches_tracked(state_dict_of(read_checkpoint(posetobottle), posetobottle),
                                             bottle_expected)
        check_state_dict(to_bottle, bottle_expected, str(posetobottle))
        full.update({prefix + k: v for k, v in to_bottle.items()})
        check_state_dict(full, expected, f"{posereg} (posefrombottle)")
    else:
        check_state_dict(full, expected, str(checkpoint))
    check_finite(full, "state_dict", checkpoint)
    model.load_state_dict(full, strict=True)
    return model.to(device).eval()


def save_x2face(model: X2Face, path: str | os.PathLike[str], optimizer: torch.optim.Optimizer | None = None) -> None:
    """Write ``{'state_dict', 'optimizer'}`` like the original train_model.py, atomically (temp file + rename).

    The ``optimizer`` entry is ``optimizer.state_dict()``, or ``None`` without an optimizer. A pose model's file
    includes its pose heads and loads back with :func:`load_x2face` alone.
    """
    p = Path(path)
    if not p.parent.is_dir():
        raise OutputError(f"cannot write {p}: folder {p.parent} does not exist")
    payload = {"state_dict": model.state_dict(),
               "optimizer": optimizer.state_dict() if optimizer is not None else None}
    atomic_save(payload, p)
