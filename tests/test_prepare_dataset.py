"""prepare_dataset on synthetic raw videos built to match metadata rows."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from fomm.datasets.prepare import prepare_dataset
from fomm.errors import InputError

VOX = "video_id,start,end,bbox,fps,width,height,partition,person_id\n"
TAICHI = "video_id,start,end,bbox,fps,width,height,partition\n"
W, H, N = 64, 48, 30


def _frames(seed: int, n: int = N, w: int = W, h: int = H) -> np.ndarray:
    """Distinct noise frames, so a wrong frame or a shifted box cannot match by accident."""
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _write_lossless(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    # libx264rgb at qp 0 is lossless RGB, so decoded frames equal `frames` bit for bit.
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb", rate=fps, options={"qp": "0"})
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _png_clip(folder: Path) -> np.ndarray:
    files = sorted(folder.glob("*.png"))
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


@pytest.fixture()
def raw(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    vids = tmp_path / "raw"
    vids.mkdir()
    frames = {"vidA": _frames(1), "vidB": _frames(2)}
    for name, f in frames.items():
        _write_lossless(vids / f"{name}.mkv", f)
    return vids, frames


def test_known_box_gives_exact_crop(tmp_path, raw):
    vids, frames = raw
    meta = tmp_path / "m.csv"
    meta.write_text(VOX + "vidA,5,15,10-8-42-40,25,64,48,train,id1\n"
                          "vidA,5,15,10-8-42-40,25,64,48,train,id1\n"      # duplicate row
                          "vidA,20,30,30-20-62-56,25,64,48,train,id1\n"    # past the bottom edge
                          "vidB,0,6,0-0-16-16,25,64,48,train,id2\n"
                          "vidB,0,6,0-0-16-16,25,64,48,test,id2\n")        # in both splits
    out = tmp_path / "out"
    s = prepare_dataset("vox", meta, vids, out, format="png", size=None, workers=1, progress=False)
    assert s.failed == {} and s.missing_videos == [] and s.duplicates_dropped == 1
    assert sorted(s.written) == ["id1#vidA#000005#000015", "id1#vidA#000020#000030", "id2#vidB#000000#000006"]
    a = frames["vidA"]
    assert np.array_equal(_png_clip(out / "train" / "id1#vidA#000005#000015"), a[5:15, 8:40, 10:42])
    # clamped like numpy slicing: rows 20..47 only
    assert np.array_equal(_png_clip(out / "train" / "id1#vidA#000020#000030"), a[20:30, 20:48, 30:62])
    assert not (out / "train" / "id2#vidB#000000#000006").exists()
    assert np.array_equal(_png_clip(out / "test" / "id2#vidB#000000#000006"), frames["vidB"][0:6, 0:16, 0:16])
    assert s.both_splits == ["id2#vidB#000000#000006"]
    assert not list(out.rglob(".partial-*"))

    # pad mode keeps the box geometry and fills the outside with black
    out2 = tmp_path / "out2"
    s2 = prepare_dataset("vox", meta, vids, out2, format="png", size=None, out_of_frame="pad", progress=False)
    clip = _png_clip(out2 / "train" / "id1#vidA#000020#000030")
    assert clip.shape == (10, 36, 32, 3) and not clip[:, 28:].any()
    assert np.array_equal(clip[:, :28], a[20:30, 20:48, 30:62]) and "pad" in s2.format()


def test_fps_and_resolution_mismatch_map_to_same_content(tmp_path, raw):
    vids, frames = raw
    meta = tmp_path / "t.csv"
    # listed at 50 fps and twice the resolution: frames 10..20 @50 = 5..10 @25, box halves to 4-6-20-22
    meta.write_text(TAICHI + "vidA,10,20,8-12-40-44,50.0,128,96,test\n")
    s = prepare_dataset("taichi", meta, vids, tmp_path / "o", format="png", size=None, progress=False)
    assert s.written == ["vidA#000010#000020"]
    got = _png_clip(tmp_path / "o" / "test" / "vidA#000010#000020")
    assert np.array_equal(got, frames["vidA"][5:10, 6:22, 4:20])


def test_mp4_resized_resume_and_failures(tmp_path, raw):
    from fomm.io.reading import probe_video

    vids, _ = raw
    meta = tmp_path / "t.csv"
    meta.write_text(TAICHI + "vidA,0,12,0-0-48-48,25.0,64,48,train\n"
                             "vidA,20,40,0-0-48-48,25.0,64,48,train\n"     # runs past the 30-frame video
                             "vidB,0,10,100-0-140-40,25.0,64,48,test\n"   # box outside the frame
                             "vidB,10,20,16-0-64-48,25.0,64,48,test\n"
                             "gone,0,10,0-0-10-10,25.0,64,48,train\n")    # no raw video
    out = tmp_path / "o"
    s = prepare_dataset("taichi", meta, vids, out, format="mp4", size=32, workers=2, progress=False)
    assert sorted(s.written) == ["vidA#000000#000012", "vidB#000010#000020"]
    assert set(s.failed) == {"vidA#000020#000040", "vidB#000000#000010"}
    assert "only 30 frames" in s.failed["vidA#000020#000040"]
    assert "outside" in s.failed["vidB#000000#000010"]
    assert s.missing_videos == ["gone"] and s.missing_chunks == 1 and not s.ok
    assert "gone" in s.format()
    info = probe_video(out / "train" / "vidA#000000#000012.mp4")
    assert (info.width, info.height, info.num_frames) == (32, 32, 12)
    assert not (out / "train" / "vidA#000020#000040.mp4").exists()
    assert not list(out.rglob(".partial-*")) and not list(out.rglob("*.tmp*"))

    # resume: finished chunks are skipped untouched; a leftover partial file does not count as finished
    done = out / "test" / "vidB#000010#000020.mp4"
    stamp = (out / "train" / "vidA#000000#000012.mp4").stat().st_mtime_ns
    done.unlink()
    (out / "test" / ".partial-vidB#000010#000020.mp4").write_bytes(b"half a file")
    s2 = prepare_dataset("taichi", meta, vids, out, format="mp4", size=32, workers=1, progress=False)
    assert s2.skipped == ["vidA#000000#000012"]
    assert s2.written == ["vidB#000010#000020"] and done.is_file()
    assert (out / "train" / "vidA#000000#000012.mp4").stat().st_mtime_ns == stamp
    assert not (out / "test" / ".partial-vidB#000010#000020.mp4").exists()


def test_bad_arguments(tmp_path, raw):
    vids, _ = raw
    meta = tmp_path / "m.csv"
    meta.write_text("id,from,to\nx,1,2\n")
    with pytest.raises(InputError, match="missing column"):
        prepare_dataset("vox", meta, vids, tmp_path / "o", progress=False)
    meta.write_text(TAICHI + "vidA,0,12,0-0-48-48,25.0,64,48,train\n")
    with pytest.raises(InputError, match="videos folder"):
        prepare_dataset("taichi", meta, tmp_path / "nope", tmp_path / "o", progress=False)
    with pytest.raises(InputError, match="format"):
        prepare_dataset("taichi", meta, vids, tmp_path / "o", format="gif", progress=False)  # type: ignore[arg-type]


def test_real_taichi_row_on_downscaled_synthetic_video(tmp_path, data_dir):
    """The first published TaiChi row, against a synthetic quarter-resolution stand-in of its video."""
    lines = (data_dir / "metadata" / "taichi-metadata.csv").read_text().splitlines()
    row = lines[1]
    assert row == "u6rJiF-gPx8,80,300,118-82-508-472,29.97,640,480,train"
    meta = tmp_path / "one.csv"
    meta.write_text(lines[0] + "\n" + row + "\n")
    # smooth, frame-dependent content compresses well even losslessly; 160x120 = the listed 640x480 / 4
    yy, xx = np.mgrid[0:120, 0:160]
    frames = np.stack([np.stack([(xx + t) % 256, (yy * 2) % 256, np.full_like(xx, t % 256)], -1)
                       for t in range(310)]).astype(np.uint8)
    vids = tmp_path / "raw"
    vids.mkdir()
    with av.open(str(vids / "u6rJiF-gPx8.mkv"), "w") as c:
        s = c.add_stream("libx264rgb", rate=Fraction(30000, 1001), options={"qp": "0"})
        s.width, s.height, s.pix_fmt = 160, 120, "rgb24"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    s = prepare_dataset("taichi", meta, vids, tmp_path / "o", format="png", size=None, progress=False)
    assert s.written == ["u6rJiF-gPx8#000080#000300"]
    got = _png_clip(tmp_path / "o" / "train" / "u6rJiF-gPx8#000080#000300")
    # box 118-82-508-472 at 1/4 scale, truncated: 29-20-127-118
    assert np.array_equal(got, frames[80:300, 20:118, 29:127])
