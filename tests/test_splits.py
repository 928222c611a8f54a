"""Leak-free Actions split: shipped file matches the builder, no mirror pair across, materialisation."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from fomm.datasets.frames import FramesDataset
from fomm.datasets.splits import ACTIONS_SPLIT, build_actions_split, load_split, materialise_split
from fomm.errors import InputError, OutputError


@pytest.fixture(scope="module")
def index_rows(data_dir: Path) -> list[dict[str, str]]:
    with open(data_dir / "metadata" / "actions_index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_shipped_split_is_reproducible(data_dir: Path) -> None:
    built = build_actions_split(data_dir / "metadata" / "actions_index.csv")
    assert json.loads(json.dumps(built)) == load_split(ACTIONS_SPLIT)


def test_no_mirror_pair_across(index_rows: list[dict[str, str]]) -> None:
    split = load_split(ACTIONS_SPLIT)
    train, test = set(split["train"]), set(split["test"])
    assert train | test == {r["file"] for r in index_rows} and not train & test
    side = {f: "train" for f in train} | {f: "test" for f in test}
    for r in index_rows:
        assert side[r["file"]] == side[r["mirror_partner"]], r["file"]
    actions = {r["file"]: r["action"] for r in index_rows}
    # Balanced: two held-out performers x 4 classes x 2 (mirror) clips.
    assert Counter(actions[f] for f in test) == {a: 4 for a in set(actions.values())}


def test_materialise(tmp_path: Path, data_dir: Path) -> None:
    out = materialise_split(ACTIONS_SPLIT, data_dir / "actions", tmp_path / "actions_lf")
    assert len(list((out / "train").iterdir())) == 56 and len(list((out / "test").iterdir())) == 16
    assert (out / "test" / "00000032.jpg").resolve() == (data_dir / "actions" / "train" / "00000032.jpg").resolve()
    ds = FramesDataset(out, (64, 64, 3), is_train=False)
    assert len(ds) == 16
    with pytest.raises(OutputError, match="already exists"):
        materialise_split(ACTIONS_SPLIT, data_dir / "actions", out)
    copied = materialise_split(load_split(ACTIONS_SPLIT), data_dir / "actions", out, mode="copy", overwrite=True)
    assert not (copied / "train" / "00000000.jpg").is_symlink()
    with pytest.raises(InputError, match="does not exist"):
        materialise_split(ACTIONS_SPLIT, tmp_path, tmp_path / "other")
    assert not (tmp_path / "other").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_split_file(tmp_path: Path) -> None:
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"train": ["a"], "test": ["a"]}))
    with pytest.raises(InputError, match="both train and test"):
        load_split(bad)


def test_cli_actions_split_writes_the_leak_free_layout(tmp_path, data_dir, capsys):
    from fomm.cli.main import main

    out = tmp_path / "actions-leakfree"
    assert main(["actions-split", "--data", str(data_dir / "actions"), "-o", str(out)]) == 0
    split = load_split()
    assert sorted(p.name for p in (out / "test").iterdir()) == sorted(Path(p).name for p in split["test"])
    assert len(list((out / "train").iterdir())) == len(split["train"])
    assert main(["actions-split", "--data", str(data_dir / "actions"), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
