"""Metadata CSV parsing: the published files' quirks are each handled on purpose."""

from __future__ import annotations

import io

import pytest

from fomm.datasets.metadata import load_metadata, parse_metadata
from fomm.errors import InputError

VOX_HEADER = "video_id,start,end,bbox,fps,width,height,partition,person_id\n"


def _parse(text: str, kind: str = "vox"):
    return parse_metadata(io.StringIO(text), kind)  # type: ignore[arg-type]


def test_duplicates_both_splits_and_out_of_frame_synthetic():
    text = VOX_HEADER + (
        "aaa,0,10,0-0-20-20,25,64,48,train,id1\n"
        "aaa,0,10,0-0-20-20,25,64,48,train,id1\n"   # exact duplicate
        "bbb,5,15,10-10-40-60,25,64,48,train,id2\n"  # past the bottom edge
        "ccc,0,8,1-1-9-9,25,64,48,train,id3\n"
        "ccc,0,8,1-1-9-9,25,64,48,test,id3\n"        # same chunk in both splits
    )
    rep = _parse(text)
    assert rep.rows == 5
    assert rep.duplicates_dropped == 1
    assert [c.name for c in rep.chunks] == ["id1#aaa#000000#000010", "id2#bbb#000005#000015",
                                             "id3#ccc#000000#000008"]
    assert rep.both_splits == ["id3#ccc#000000#000008"]
    assert rep.chunks[2].partition == "test"  # never both: test wins so nothing leaks into training
    assert rep.out_of_frame == 1 and rep.chunks[1].out_of_frame


def test_wrong_columns_is_clear_error(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("video,begin,stop\nx,1,2\n")
    with pytest.raises(InputError, match="missing column.*video_id"):
        load_metadata(bad, "vox")
    # a taichi file read as vox lacks person_id
    with pytest.raises(InputError, match="person_id"):
        _parse("video_id,start,end,bbox,fps,width,height,partition\nx,0,5,0-0-4-4,25,8,8,train\n")
    with pytest.raises(InputError, match="not found"):
        load_metadata(tmp_path / "nope.csv", "vox")


@pytest.mark.parametrize("row,msg", [
    ("x,0,5,0-0-4,25,8,8,train,p", "bbox"),
    ("x,5,5,0-0-4-4,25,8,8,train,p", "frame range"),
    ("x,0,5,0-0-4-4,25,8,8,val,p", "partition"),
    ("x,a,5,0-0-4-4,25,8,8,train,p", "malformed"),
])
def test_malformed_rows(row, msg):
    with pytest.raises(InputError, match=msg):
        _parse(VOX_HEADER + row + "\n")


def test_published_vox_metadata(data_dir):
    rep = load_metadata(data_dir / "metadata" / "vox-metadata.csv", "vox")
    assert rep.rows == 20075
    assert rep.duplicates_dropped == 308
    assert len(rep.chunks) == 20075 - 308 - 3
    assert rep.both_splits == ["id10282#hgB5ziAudzU#008753#008850", "id10282#hgB5ziAudzU#008914#009055",
                               "id10306#ST2JZXcyYkE#018239#018675"]
    names = [c.name for c in rep.chunks]
    assert len(set(names)) == len(names)
    # 866 rows run past the frame; after dropping duplicates 856 distinct chunks do.
    assert rep.out_of_frame == 856
    assert all(min(c.bbox) >= 0 for c in rep.chunks)
    assert len(rep.videos()) == 3442


def test_published_taichi_metadata(data_dir):
    rep = load_metadata(data_dir / "metadata" / "taichi-metadata.csv", "taichi")
    assert (rep.rows, len(rep.chunks), rep.duplicates_dropped, rep.both_splits, rep.out_of_frame) == \
        (3334, 3334, 0, [], 0)
    assert rep.chunks[0].name == "u6rJiF-gPx8#000080#000300" and rep.chunks[0].fps == 29.97
    # names follow the convention of first-order-model's taichi256.csv pair list
    pairs = (data_dir / "metadata" / "first-order-model" / "taichi256.csv").read_text()
    test_names = {c.name + ".mp4" for c in rep.chunks if c.partition == "test"}
    listed = {f for line in pairs.splitlines()[1:] for f in line.split(",")[1:3]}
    assert listed and listed <= test_names
