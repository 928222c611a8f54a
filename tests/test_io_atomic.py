"""fomm.io.atomic: outputs appear whole or not at all, with plain-open permissions; inputs are never outputs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fomm.errors import OutputError
from fomm.io.atomic import (
    atomic_dir,
    atomic_file,
    current_umask,
    refuse_input_overwrite,
    write_bytes_atomic,
    write_text_atomic,
)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_atomic_file_commits_with_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "out.png"
    with atomic_file(target, suffix=".png") as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.png.") and tmp.suffix == ".png"
        assert tmp.exists() and not target.exists()
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o666 & ~current_umask()
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(3)])
def test_atomic_file_failure_keeps_previous_file(tmp_path, exc):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(type(exc)):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise exc
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_file_replace_failure_removes_temporary(tmp_path):
    (tmp_path / "out").mkdir()  # a folder where the file should go: the final rename fails
    with pytest.raises(IsADirectoryError):
        with atomic_file(tmp_path / "out") as tmp:
            tmp.write_text("x")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_streaming_use_begin_commit_discard(tmp_path):
    target = tmp_path / "v.mp4"
    a = atomic_file(target, suffix=".part.mp4")
    tmp = a.begin()
    tmp.write_bytes(b"abc")
    a.discard()
    assert list(tmp_path.iterdir()) == []
    a.begin().write_bytes(b"abc")
    assert a.commit() == target and target.read_bytes() == b"abc"


def test_atomic_dir_replaces_existing_folder_and_file(tmp_path):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.png").write_bytes(b"old")
    with atomic_dir(target) as tmp:
        assert tmp.is_dir() and tmp.name.startswith(".frames.") and not any(tmp.iterdir())
        (tmp / "000000.png").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["000000.png"]
    assert _mode(target) == 0o777 & ~current_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]  # no temporary or old folder left
    target2 = tmp_path / "was_a_file"
    target2.write_text("x")
    with atomic_dir(target2) as tmp:
        (tmp / "a").write_text("a")
    assert (target2 / "a").read_text() == "a"


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_dir_failure_keeps_previous_folder(tmp_path, exc):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "keep.png").write_bytes(b"old")
    with pytest.raises(type(exc)):
        with atomic_dir(target) as tmp:
            (tmp / "000000.png").write_bytes(b"new")
            raise exc
    assert [p.name for p in target.iterdir()] == ["keep.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_atomic_dir_check_existing_can_refuse(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("mine")

    def refuse(p: Path) -> None:
        raise OutputError(f"{p}: not mine to replace")

    with pytest.raises(OutputError, match="not mine"):
        with atomic_dir(target, check_existing=refuse) as tmp:
            (tmp / "a").write_text("a")
    assert (target / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["precious"]


def test_atomic_dir_puts_the_old_target_back_when_the_swap_fails(tmp_path, monkeypatch):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "keep.png").write_bytes(b"old")
    real_replace = os.replace

    def flaky(src, dst):
        if Path(src).name.endswith(".part"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="No space"):
        with atomic_dir(target) as tmp:
            (tmp / "new.png").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["keep.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_write_text_and_bytes(tmp_path):
    p = write_text_atomic(tmp_path / "a" / "t.csv", "x,y\r\n1,2\n")
    assert p.read_bytes() == b"x,y\r\n1,2\n"  # newlines kept as given
    write_bytes_atomic(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputError, match="cannot write .*dir"):
        write_text_atomic(tmp_path / "dir", "x")
    assert [p.name for p in (tmp_path / "dir").iterdir()] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "dir"]


# ---------------------------------------------------------------------------------------- refuse_input_overwrite


def test_refuse_same_file(tmp_path):
    src = tmp_path / "driving.mp4"
    src.write_bytes(b"video")
    with pytest.raises(OutputError, match="is the input") as info:
        refuse_input_overwrite(tmp_path / "driving.mp4", [tmp_path / "source.png", src])
    assert "\n" not in str(info.value)
    # The same file by another spelling of the path.
    (tmp_path / "x").mkdir()
    with pytest.raises(OutputError, match="is the input"):
        refuse_input_overwrite([tmp_path / "x" / ".." / "driving.mp4"], [src])


def test_refuse_through_symlinks(tmp_path):
    src = tmp_path / "driving.mp4"
    src.write_bytes(b"video")
    link = tmp_path / "link.mp4"
    link.symlink_to(src)
    with pytest.raises(OutputError, match="is the input"):
        refuse_input_overwrite(link, src)  # output is a symlink to the input
    with pytest.raises(OutputError, match="is the input"):
        refuse_input_overwrite(src, link)  # input given through a symlink
    hard = tmp_path / "hard.mp4"
    os.link(src, hard)
    with pytest.raises(OutputError, match="is the input"):
        refuse_input_overwrite(hard, src)


def test_refuse_output_folder_holding_an_input(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    src = out / "sub" / "source.png"
    src.write_bytes(b"img")
    with pytest.raises(OutputError, match="holds the input"):
        refuse_input_overwrite(str(out) + "/", [src])
    linked = tmp_path / "frames_link"
    linked.symlink_to(out, target_is_directory=True)
    with pytest.raises(OutputError, match="holds the input"):
        refuse_input_overwrite(linked, src)
    # A frame-folder input that is the output folder itself.
    with pytest.raises(OutputError, match="is the input"):
        refuse_input_overwrite(out, out)


def test_refuse_allows_distinct_paths(tmp_path):
    src = tmp_path / "in" / "driving.mp4"
    src.parent.mkdir()
    src.write_bytes(b"video")
    (tmp_path / "old.mp4").write_bytes(b"previous output")
    refuse_input_overwrite([tmp_path / "old.mp4", tmp_path / "new.mp4", None], [src, tmp_path / "missing.png"])
    refuse_input_overwrite(tmp_path / "out_frames", src)  # not there yet
    refuse_input_overwrite(tmp_path / "in" / "other.mp4", src)  # a sibling of the input is fine
    refuse_input_overwrite(None, src)
    dangling = tmp_path / "dangling.mp4"
    dangling.symlink_to(tmp_path / "nowhere.mp4")
    refuse_input_overwrite(dangling, src)


def test_entering_after_begin_keeps_the_temporary(tmp_path):
    out = atomic_dir(tmp_path / "frames")
    tmp = out.begin()
    with out as same:
        assert same == tmp
        (same / "a").write_text("a")
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]
