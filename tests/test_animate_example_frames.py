"""`fomm animate --example` must keep writing the very same frames through refactors of the animation engine.

``fixtures/animate_example_frames.npz`` holds the 55 lossless frames the engine wrote before it was split into
per-family modules, stages and sinks (commit "Fixture: the frames ..."), so any change in numerics shows up here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fomm.cli.main import main

FIXTURE = Path(__file__).parent / "fixtures" / "animate_example_frames.npz"


def test_example_frames_are_byte_identical_to_the_fixture(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    assert main(["animate", "--example", "--quiet", "-o", f"{out}/"]) == 0
    written = np.stack([np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))])
    expected = np.load(FIXTURE)["frames"]
    assert written.shape == expected.shape
    diff = np.abs(written.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() == 0, f"{int((diff > 0).sum())} pixel values differ (max {int(diff.max())})"
