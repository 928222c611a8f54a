from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    env = os.environ.get("FOMM_SHARED")
    if env:
        return Path(env)
    # CI and developer checkouts keep shared/ beside the repository (worktrees one level deeper).
    for cand in (REPO.parent / "shared", REPO.parent.parent / "shared", REPO / "shared"):
        if cand.is_dir():
            return cand
    return REPO.parent / "shared"


SHARED = _shared_dir()
GOLDEN = SHARED / "golden"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN.is_dir():
        pytest.fail(f"golden fixtures not found at {GOLDEN}; set FOMM_SHARED to the shared/ folder")
    return GOLDEN


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"shared data not found at {DATA}; set FOMM_SHARED to the shared/ folder")
    return DATA
