"""Reading and writing checkpoints in the authors' container format, safely.

The released files are legacy (pre-1.6) ``torch.save`` pickles whose storages are tagged ``cuda:0``. They are read
with ``torch.load(..., map_location=..., weights_only=True)``: tensors, dicts, lists, tuples and numbers only, never
arbitrary objects. Saving writes the same container (``generator``, ``kp_detector``, ``discriminator``, optimizer
states, ``epoch``) atomically.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fomm.errors import CheckpointError, OutputError
from fomm.io.atomic import atomic_file


def load_container(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file into a plain dict without executing pickled code.

    Raises:
        CheckpointError: missing, empty, not a torch file, or containing objects other than plain data.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} (pass the path of a .pth/.pth.tar file you downloaded "
                              f"or trained; fomm never downloads weights by itself)")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols before failing on a bad file: the error below says it all.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError,
            KeyError, TypeError, IndexError) as exc:
        text = str(exc)
        found = re.search(r"GLOBAL\s+([\w.]+)", text)
        if found is not None and "unsupported" in text.lower():
            # A real pickle that references Python classes/functions: never executed. torch's own message opens
            # with a paragraph of advice to re-run with weights_only=False, which is exactly what must not happen.
            raise CheckpointError(f"{path}: refusing to load: the file contains Python objects other than tensors "
                                  f"and plain data ({found.group(1)}), and fomm never runs code from a checkpoint; "
                                  "use a checkpoint saved as plain state dicts") from None
        raise CheckpointError(f"{path}: cannot read it as a PyTorch checkpoint ({_reason(text, exc)})") from None
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found {type(data).__name__}")
    return dict(data)


def _reason(text: str, exc: BaseException, limit: int = 200) -> str:
    """The line of torch's error that says what is wrong, shortened at a word boundary (never mid-word)."""
    if "WeightsUnpickler error:" in text:  # torch's long preamble hides the actual reason
        text = text[text.index("WeightsUnpickler error:") + len("WeightsUnpickler error:"):]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0].rstrip(" .,;:") + " ..."


def _shape(v: Any) -> tuple[int, ...] | None:
    return tuple(v.shape) if isinstance(v, torch.Tensor) else None


def state_dict_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any], limit: int = 3) -> list[str]:
    """Human-readable differences between two state dicts (keys and shapes), at most ``limit`` items."""
    problems: list[str] = []
    for key, value in expected.items():
        if key not in found:
            problems.append(f"missing '{key}'")
        elif _shape(found[key]) != _shape(value):
            problems.append(f"'{key}' has shape {list(_shape(found[key]) or ())}, "
                            f"expected {list(_shape(value) or ())}")
        if len(problems) >= limit:
            return problems
    for key in found:
        if key not in expected:
            problems.append(f"unexpected '{key}'")
            if len(problems) >= limit:
                break
    return problems


def first_non_finite(state: Mapping[str, Any]) -> str | None:
    """Name of the first floating-point tensor in ``state`` holding a NaN or an infinity (None when all are finite)."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return str(key)
    return None


def check_finite(state: Mapping[str, Any], part: str, path: str | os.PathLike) -> None:
    """Refuse weights holding NaN or inf, naming the first such tensor.

    A diverged training run saves such checkpoints without complaint, and they load fine: every output is then
    NaN, which becomes an all-black video with no warning (or an average that is NaN everywhere). Checking costs
    one pass over the weights, far less than loading them.
    """
    bad = first_non_finite(state)
    if bad is not None:
        raise CheckpointError(f"{path}: '{part}' holds non-finite weights (NaN or inf), first in '{bad}'; the "
                              "checkpoint is broken (a diverged training run?): use an earlier one")


def require_finite(container: Mapping[str, Any], parts: Sequence[str], path: str | os.PathLike) -> None:
    """:func:`check_finite` for each state dict ``container[part]`` (parts that are absent or not dicts are skipped)."""
    for part in parts:
        state = container.get(part)
        if isinstance(state, Mapping):
            check_finite(state, part, path)


def load_state_dict_strict(module: nn.Module, state: Mapping[str, Any], part: str, path: str | os.PathLike,
                           hint: Callable[[], str] | None = None) -> None:
    """``module.load_state_dict(state, strict=True)`` with a user-level error naming the first mismatches; weights
    holding NaN or inf are refused (:func:`check_finite`)."""
    expected = module.state_dict()
    problems = state_dict_mismatch(expected, state)
    if problems:
        extra = hint() if hint is not None else ""
        raise CheckpointError(f"{path}: '{part}' does not fit the chosen config: {'; '.join(problems)}"
                              + (f". {extra}" if extra else ""))
    check_finite(state, part, path)
    module.load_state_dict(state, strict=True)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path`` and rename it into place (no partial files).

    Raises:
        OutputError: the checkpoint cannot be written (unwritable folder, the target is a folder, a full disk).
    """
    path = Path(path)
    try:
        with atomic_file(path) as tmp, open(tmp, "wb") as fh:
            # A file object, not the name: torch.save names the archive's top folder after a file name, which
            # would be the random temporary one.
            torch.save(obj, fh)
    except OSError as exc:  # one line, not a traceback
        raise OutputError(f"cannot write checkpoint to {path}: {exc.strerror or exc}") from None
    return path


def save_checkpoint(path: str | os.PathLike, models: Mapping[str, nn.Module | None],
                    optimizers: Mapping[str, torch.optim.Optimizer | None] | None = None,
                    epoch: int = 0, **extra: Any) -> Path:
    """Write ``{name: module.state_dict(), optimizer_<name>: opt.state_dict(), 'epoch': epoch, **extra}``.

    ``models`` keys are ``generator``, ``kp_detector``, ``discriminator`` (any may be ``None`` and is then skipped).
    DDP/compiled wrappers are unwrapped so keys never carry a ``module.`` prefix.
    """
    container: dict[str, Any] = {}
    for name, module in models.items():
        if module is None:
            continue
        while hasattr(module, "module"):
            module = module.module  # DistributedDataParallel
        module = getattr(module, "_orig_mod", module)  # torch.compile
        container[name] = module.state_dict()
    for name, opt in (optimizers or {}).items():
        if opt is not None:
            container[name if name.startswith("optimizer_") else f"optimizer_{name}"] = opt.state_dict()
    container["epoch"] = int(epoch)
    container.update(extra)
    return atomic_save(container, path)
