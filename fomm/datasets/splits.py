"""A leak-free train/test split of Monkey-Net's Actions clips (Weizmann human actions).

The 72 upstream clips are 36 recordings stored twice (files ``2k`` and ``2k+1`` are one recording and its
left-right mirror); the upstream split puts 13 of the 15 test clips' mirrors in train, and the same people
in both splits. This split:

* keeps every mirror pair on one side (hard guarantee, checked against ``metadata/actions_index.csv``);
* holds out two whole performers: the recordings ``16..19`` (files 32-39) and ``28..31`` (files 56-63).
  Recordings come in blocks of four, one per class (wave two hands, wave one hand, jumping jack, bend). By
  eye on a contact sheet, blocks 4 (a woman in a denim jacket and jeans) and 7 (a man in a purple shirt)
  each show one person in all four recordings, and neither person appears in any other recording. Other
  blocks mix people (e.g. the jumping jack of several blocks shows a different person than its waves), so
  "block = performer" is NOT assumed elsewhere; performers of the training side are not identified.
  A colour-histogram check (foreground colours + background tint) agrees only partly (the nearest other
  recording is in the same block for 20 of 36 recordings, chance is about 3), so the performer claim rests
  on visual inspection; the mirror-pair guarantee does not.

Result: 16 test clips (4 per class, 8 recordings, 2 performers) and 56 train clips.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from fomm.errors import InputError, OutputError
from fomm.io.atomic import atomic_dir, refuse_input_overwrite, write_text_atomic
from fomm.io.safepath import component_problem

SPLITS_DIR = Path(__file__).resolve().parent / "split_files"
ACTIONS_SPLIT = SPLITS_DIR / "actions_leakfree.json"
# Recording r = files 2r and 2r+1; blocks of four recordings; these blocks are held-out performers.
TEST_BLOCKS = (4, 7)


def _clip_number(rel: str) -> int:
    return int(Path(rel).stem)


def read_actions_index(index_csv: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of ``actions_index.csv`` (``file, split, frames, mocogan_category, action, mirror_partner``)."""
    path = Path(index_csv)
    if not path.is_file():
        raise InputError(f"Actions index {path} does not exist; it ships in shared/data/metadata/")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"file", "mirror_partner", "action"}
    if not rows or not need <= set(rows[0]):
        raise InputError(f"{path} is not the Actions index (needs columns {sorted(need)})")
    return rows


def build_actions_split(index_csv: str | os.PathLike) -> dict[str, Any]:
    """Build the split (deterministic; no randomness) from the Actions index.

    Returns ``{"train": [paths], "test": [paths], "pairs": [[a, b], ...], ...}`` with paths relative to the
    Actions root as the index writes them (``train/00000000.jpg``).
    """
    rows = read_actions_index(index_csv)
    by_file = {r["file"]: r for r in rows}
    pairs: list[list[str]] = []
    seen: set[str] = set()
    for r in sorted(rows, key=lambda r: _clip_number(r["file"])):
        a, b = r["file"], r["mirror_partner"]
        if a in seen:
            continue
        if b not in by_file or by_file[b]["mirror_partner"] != a:
            raise InputError(f"Actions index: mirror partner of {a} ({b}) does not point back")
        pairs.append(sorted([a, b], key=_clip_number))
        seen.update((a, b))
    train: list[str] = []
    test: list[str] = []
    for pair in pairs:
        recording = min(_clip_number(p) for p in pair) // 2
        (test if recording // 4 in TEST_BLOCKS else train).extend(pair)
    return {
        "dataset": "actions",
        "description": "Leak-free split of Monkey-Net's Actions clips: mirror pairs kept together, two whole "
                       "performers (recording blocks 4 and 7, identified by eye) held out; see "
                       "fomm/datasets/splits.py.",
        "test_blocks": list(TEST_BLOCKS),
        "train": sorted(train, key=_clip_number),
        "test": sorted(test, key=_clip_number),
        "pairs": pairs,
        "actions": {r["file"]: r["action"] for r in rows},
    }


def load_split(path: str | os.PathLike = ACTIONS_SPLIT) -> dict[str, Any]:
    """Read a split JSON (``{"train": [...], "test": [...]}``, paths relative to the data root)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"split file {p} does not exist")
    try:
        with open(p, encoding="utf-8") as fh:
            split = json.load(fh)
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise InputError(f"split file {p} is not readable JSON ({exc}); pass a split JSON file") from None
    if not isinstance(split, dict) or not isinstance(split.get("train"), list) \
            or not isinstance(split.get("test"), list):
        raise InputError(f"split file {p} needs 'train' and 'test' lists")
    if not all(isinstance(rel, str) for rel in split["train"] + split["test"]):
        raise InputError(f"split file {p}: 'train' and 'test' must list paths (text)")
    overlap = set(split["train"]) & set(split["test"])
    if overlap:
        raise InputError(f"split file {p} lists {len(overlap)} clip(s) in both train and test, e.g. {min(overlap)}")
    return split


def _check_relative(rel: object, part: str) -> None:
    """A split entry is a path below the data root (``train/00000032.jpg``): it is joined to the root to read, and
    its last part names the output, so ``..``, an absolute path or a hidden name is refused rather than followed."""
    parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
    bad = next((problem for problem in map(component_problem, parts) if problem), None)
    if not parts or bad:
        raise InputError(f"split entry {rel!r} in {part!r} is not a relative path below the data folder "
                         f"({bad or 'not a plain path'}); fix the split file")


def materialise_split(split: dict[str, Any] | str | os.PathLike, data_root: str | os.PathLike,
                      out_root: str | os.PathLike, mode: str = "symlink", overwrite: bool = False) -> Path:
    """Create ``out_root/train`` and ``out_root/test`` holding the split's clips (symlinks or copies).

    ``data_root`` is the folder the split's paths are relative to (e.g. ``shared/data/actions``). The tree is
    built in a temporary sibling folder and renamed into place, so a failure leaves nothing half-written.
    Returns ``out_root``. Clip basenames are kept (``00000032.jpg``), so the upstream file numbers stay visible.
    """
    if not isinstance(split, dict):
        split = load_split(split)
    if mode not in ("symlink", "copy"):
        raise ValueError(f"mode must be 'symlink' or 'copy', got {mode!r}")
    data_root = Path(data_root).resolve()
    out = Path(out_root)
    for part in ("train", "test"):
        for rel in split[part]:
            _check_relative(rel, part)
    if out.exists():
        if not overwrite:
            raise OutputError(f"{out} already exists; choose another folder or pass --overwrite (overwrite=True)")
    for part in ("train", "test"):
        for rel in split[part]:
            if not (data_root / rel).is_file():
                raise InputError(f"{data_root / rel} (listed in the split) does not exist; is {data_root} the "
                                 f"Actions folder?")
    # The tree replaces OUT whole (and --overwrite deletes what was there): OUT must not be, hold or lie inside
    # the clips it links to, or the data would be deleted, or become links to themselves. Checked once the data
    # folder is known to be one, so a wrong --data gets that message first.
    refuse_input_overwrite(out, data_root, folders=out)
    tree = atomic_dir(out)  # replaces an existing tree (file or symlink too) only once the new one is complete
    try:
        tmp = tree.begin()
    except OSError as exc:
        raise OutputError(f"cannot write to {out.parent}: {exc}") from None
    with tree:
        for part in ("train", "test"):
            (tmp / part).mkdir()
            for rel in split[part]:
                src = data_root / rel
                dst = tmp / part / Path(rel).name
                if dst.exists():
                    raise InputError(f"two clips of the split are both named {dst.name} in {part}")
                if mode == "symlink":
                    os.symlink(src, dst)
                else:
                    shutil.copy2(src, dst)
    return out


def write_split(split: dict[str, Any], path: str | os.PathLike = ACTIONS_SPLIT) -> None:
    """Write a split as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(split, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":  # regenerate the shipped split: python -m fomm.datasets.splits INDEX_CSV
    import sys

    write_split(build_actions_split(sys.argv[1]))
    print(f"wrote {ACTIONS_SPLIT}")
