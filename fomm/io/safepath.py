"""Path parts taken from file contents (metadata rows, sidecars, split lists) stay inside their folder.

A metadata row, an ONNX sidecar or a split list is data, and data may be crafted: a ``person_id`` of
``../../../home/me/.bashrc`` or an absolute path would make ``out / partition / name`` point anywhere, and
``pathlib`` joins an absolute part by *dropping* everything before it. So every such value is checked to be one
plain path component before it is joined, and joined paths are checked again after resolving (a symlink inside
the folder could still lead out).

The rule, :func:`check_component`: a non-empty name that is not ``.`` or ``..``, holds no ``/``, ``\\`` or NUL,
no control character (newlines would split the one-line messages and listings that name it), and does not start
with ``.`` (fomm's own temporary files are hidden names, and dataset listings skip hidden entries, so a hidden
output would collide with the former or silently vanish from the latter).
"""

from __future__ import annotations

import os
from pathlib import Path

from fomm.errors import InputError


def component_problem(value: object) -> str | None:
    """Why ``value`` is not a safe single path component, or None when it is."""
    if not isinstance(value, str):
        return f"is not a text value ({type(value).__name__})"
    if not value:
        return "is empty"
    if value in (".", ".."):
        return "is a relative folder reference"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "contains a control character"
    if value.startswith("."):
        return "starts with '.' (a hidden name)"
    return None


def check_component(value: object, what: str) -> str:
    """``value`` if it is one plain path component (see the module notes), else :class:`InputError` naming
    ``what`` (e.g. ``"vox.csv line 7: person_id"``)."""
    problem = component_problem(value)
    if problem is not None:
        raise InputError(f"{what} {value!r} {problem}; it must be a plain file name, so fix this entry")
    return value  # type: ignore[return-value]


def inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """True when ``path`` resolves (symlinks followed) to ``root`` or somewhere below it."""
    return Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(root)))


__all__ = ["check_component", "component_problem", "inside"]
