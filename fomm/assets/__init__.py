"""Files shipped inside the package (example inputs)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def example_path(name: str) -> Path:
    """Path of a bundled example file (``source.png``, ``driving.mp4``)."""
    return Path(str(resources.files("fomm.assets").joinpath("examples", name)))
