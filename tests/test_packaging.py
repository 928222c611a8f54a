"""Packaging: fomm's extras agree on ONE OpenCV distribution.

opencv-python, opencv-python-headless, opencv-contrib-python and opencv-contrib-python-headless all install the same
``cv2`` package; with two of them installed, whichever came last silently overwrites the other's files (and
uninstalling one breaks the other). ``pip install -e ".[dev,eval,crop,onnx,demo]"`` did exactly that: mediapipe
(eval) requires opencv-contrib-python while crop asked for opencv-python-headless.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
OPENCV = {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}
#: What mediapipe 0.10.14 (pinned by the eval extra) requires, for environments where it is not installed.
MEDIAPIPE_OPENCV = "opencv-contrib-python"


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9._-]+)", requirement).group(1)).lower()


def _applies(requirement: str) -> bool:
    """Requirements behind an extra of the dependency are not installed with it; other markers are evaluated."""
    if ";" not in requirement:
        return True
    marker = requirement.split(";", 1)[1]
    if "extra" in marker:
        return False
    try:
        from packaging.markers import Marker  # noqa: PLC0415 - pip's own dependency, nearly always present
    except ImportError:
        return True
    return Marker(marker).evaluate()


def opencv_required_by_extras() -> dict[str, list[str]]:
    """``{opencv distribution: [chains that require it]}`` over every extra of pyproject.toml, following the
    requirements of installed distributions (importlib.metadata), e.g. ``eval -> mediapipe -> opencv-contrib-python``.
    """
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    found: dict[str, list[str]] = {}
    for extra, reqs in extras.items():
        todo = [(_name(r), f"{extra} -> {_name(r)}") for r in reqs if _applies(r)]
        seen: set[str] = set()
        while todo:
            name, chain = todo.pop()
            if name in OPENCV:
                found.setdefault(name, []).append(chain)
            if name in seen:
                continue
            seen.add(name)
            try:
                sub = [r for r in (md.requires(name) or []) if _applies(r)]
            except md.PackageNotFoundError:
                sub = [MEDIAPIPE_OPENCV] if name == "mediapipe" else []
            todo += [(_name(r), f"{chain} -> {_name(r)}") for r in sub]
    return found


def test_extras_require_one_opencv():
    found = opencv_required_by_extras()
    assert len(found) <= 1, "fomm's extras pull in several OpenCV distributions that overwrite each other's cv2: " + (
        "; ".join(f"{name} via {', '.join(sorted(set(chains)))}" for name, chains in sorted(found.items())))
    assert set(found) <= {MEDIAPIPE_OPENCV}, "the eval extra's mediapipe needs opencv-contrib-python"


def test_the_check_sees_a_conflict(monkeypatch, tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\nname = "x"\n[project.optional-dependencies]\n'
                   'crop = ["opencv-python-headless>=4.8"]\neval = ["mediapipe==0.10.14; python_version < \'3.13\'"]\n')
    monkeypatch.setattr(sys.modules[__name__], "PYPROJECT", bad)
    assert set(opencv_required_by_extras()) == {"opencv-python-headless", "opencv-contrib-python"}
