"""Example inputs offered by the demo: files shipped in ``fomm/assets/examples`` (origins and licences in the
README there). Adding an example is one line in one of the lists below.

Each example names the subject it shows (``faces``, ``bodies``, ``shapes``; see :data:`fomm.pretrained.SUBJECTS`),
and the demo's gallery offers the examples of the selected model's subject: a face clip through the 64x64
full-body model gives a blurred 64x64 face, which told a first-time user nothing about what the model is for.
"""

from __future__ import annotations

from pathlib import Path

from fomm.assets import example_path

#: (file name in fomm/assets/examples, label shown in the demo, subject)
SOURCE_EXAMPLES: list[tuple[str, str, str]] = [
    ("painting.jpg", "painting", "faces"),
    ("photo.jpg", "photo", "faces"),
    ("source.png", "portrait photo", "faces"),
    ("body-source.png", "person (64x64)", "bodies"),
    ("shapes-source.png", "shape (64x64)", "shapes"),
]
DRIVING_EXAMPLES: list[tuple[str, str, str]] = [
    ("driving.mp4", "talking head (with audio)", "faces"),
    ("driving-man.mp4", "talking head", "faces"),
    ("driving-child.mp4", "child's face (with audio)", "faces"),
    ("body-driving.mp4", "jumping jacks (64x64)", "bodies"),
    ("shapes-driving.mp4", "moving shape (64x64)", "shapes"),
]


def example_files(entries: list[tuple[str, ...]], subject: str | None = None) -> list[Path]:
    """Paths of the listed examples that are installed (a missing file is skipped, not an error); with
    ``subject``, only those of that subject, or all of them when none has it (a model for robot arms still gets
    something to try)."""
    chosen = [e for e in entries if subject is None or e[2] == subject] or list(entries)
    paths = [example_path(e[0]) for e in chosen]
    return [p for p in paths if p.is_file()]


def examples_dir() -> Path:
    return example_path("source.png").parent
