"""Example inputs offered by the demo: files shipped in ``fomm/assets/examples`` (origins and licences in the
README there). Adding an example is one line in one of the lists below."""

from __future__ import annotations

from pathlib import Path

from fomm.assets import example_path

#: (file name in fomm/assets/examples, label shown in the demo)
SOURCE_EXAMPLES: list[tuple[str, str]] = [
    ("painting.jpg", "painting"),
    ("photo.jpg", "photo"),
    ("source.png", "portrait photo"),
]
DRIVING_EXAMPLES: list[tuple[str, str]] = [
    ("driving.mp4", "talking head (with audio)"),
    ("driving-man.mp4", "talking head"),
    ("driving-child.mp4", "child's face (with audio)"),
]


def example_files(entries: list[tuple[str, str]]) -> list[Path]:
    """Paths of the listed examples that are installed (a missing file is skipped, not an error)."""
    paths = [example_path(name) for name, _ in entries]
    return [p for p in paths if p.is_file()]


def examples_dir() -> Path:
    return example_path("source.png").parent
