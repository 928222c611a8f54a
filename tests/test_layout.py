"""Layout of the test suite and the tree: test modules never import each other, and ruff is clean.

Importing ``test_x`` from ``test_y`` makes pytest collect test_x's module-level fixtures and helpers in two
places and couples files that change independently; shared helpers live in ``tests/helpers.py`` instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _is_test_module(name: str) -> bool:
    """``test_x`` (as seen from tests/ on sys.path), ``tests.test_x`` or the relative ``.test_x``."""
    for prefix in ("tests.", "."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.split(".")[0].startswith("test_")


def imported_test_modules(source: str) -> list[str]:
    """The test modules that ``source`` imports, anywhere in the file (also inside functions)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if _is_test_module(base):
                found.append(base)
            elif base in ("tests", "."):  # `from tests import test_x`, `from . import test_x`
                sep = "" if base == "." else "."
                found += [f"{base}{sep}{alias.name}" for alias in node.names if _is_test_module(alias.name)]
    return found


def test_no_test_module_imports_another():
    files = sorted(TESTS.glob("*.py"))  # the test_* modules, and helpers.py / conftest.py too
    assert sum(f.name.startswith("test_") for f in files) > 10
    offenders = {f.name: hits for f in files if (hits := imported_test_modules(f.read_text(encoding="utf-8")))}
    assert not offenders, f"test modules import other test modules (move shared code to tests/helpers.py): {offenders}"


@pytest.mark.parametrize("source,expected", [
    ("from test_train import make_strips", ["test_train"]),
    ("import test_realtime", ["test_realtime"]),
    ("import os, test_realtime as tr", ["test_realtime"]),
    ("def f():\n    from test_train_baselines import tiny_x2face", ["test_train_baselines"]),
    ("from tests import test_train, helpers", ["tests.test_train"]),
    ("from tests.test_train import tiny_config", ["tests.test_train"]),
    ("from . import test_train", [".test_train"]),
    ("from .test_train import tiny_config", [".test_train"]),
    ("from helpers import make_strips\nimport testing\nfrom fomm.train import trainer\nimport pytest", []),
])
def test_the_check_sees_every_import_form(source, expected):
    assert imported_test_modules(source) == expected


def test_ruff_is_clean():
    """The lint config in pyproject.toml holds for the whole tree (the README's test command runs it too)."""
    import shutil
    import subprocess

    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the dev extra)")
    res = subprocess.run([ruff, "check", "fomm", "tests", "benchmarks"], cwd=TESTS.parent, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout[-4000:]
