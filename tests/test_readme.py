"""README's two set-up commands and .ci/run stay in sync."""

from __future__ import annotations

import re

from conftest import REPO


def _commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)[:2]


def test_readme_starts_with_two_setup_commands():
    text = (REPO / "README.md").read_text()
    first_blocks = re.findall(r"```bash\n(.+?)\n```", text.split("## ")[0])
    assert len(first_blocks) == 2
    run_cmd, test_cmd = _commands()
    assert "pip install" in run_cmd and "fomm animate" in run_cmd
    assert "pip install" in test_cmd and "pytest" in test_cmd


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in ci


def test_example_assets_exist():
    from fomm.assets import example_path

    assert example_path("source.png").is_file() and example_path("driving.mp4").is_file()
