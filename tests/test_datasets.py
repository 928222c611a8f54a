"""FramesDataset / DatasetRepeater / PairedDataset on the shared Shapes/Actions data and synthetic videos."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from fomm.datasets.frames import DatasetRepeater, FramesDataset, PairedDataset, identity_of
from fomm.datasets.sources import ContainerSource, UnreadableVideo
from fomm.errors import ConfigError, InputError

FLIP_JITTER = {"flip_param": {"horizontal_flip": True, "time_flip": True},
               "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1}}


def _level(frame: np.ndarray) -> int:
    """Frame index encoded as a flat grey level 40 + 3 * i."""
    return int(round((float(frame.mean()) - 40) / 3))


def make_mp4(path: Path, n: int = 60, size: tuple[int, int] = (48, 64), gop: int = 10) -> Path:
    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"g": str(gop)}
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 + 3 * i, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def make_png_folder(path: Path, n: int, size: int = 32) -> Path:
    path.mkdir(parents=True)
    for i in range(n):
        img = np.full((size, size, 3), 40 + 3 * i, np.uint8)
        img[0, 0] = (255, 0, 0)  # a marker pixel to check horizontal flips
        Image.fromarray(img).save(path / f"{i:05d}.png")
    return path


# ---------------------------------------------------------------------------------------------------------
def test_shapes_train_items(data_dir: Path) -> None:
    ds = FramesDataset(data_dir / "shapes", (64, 64, 3), is_train=True, augmentation_params=FLIP_JITTER)
    assert len(ds) == 6400
    item = ds[7]
    assert item["source"].shape == (3, 64, 64) and item["driving"].shape == (3, 64, 64)
    assert item["source"].dtype == torch.float32
    assert 0.0 <= float(item["source"].min()) and float(item["source"].max()) <= 1.0
    assert item["name"].endswith(".png")
    # Shapes have a black background and one coloured shape: most pixels are near 0, some are bright.
    assert float((item["source"].amax(0) > 0.3).float().mean()) > 0.01


def test_strip_frames_match_columns(data_dir: Path) -> None:
    ds = FramesDataset(data_dir / "actions", (64, 64, 3), is_train=True, augmentation_params=None)
    item = ds[3]
    strip = np.asarray(Image.open(ds.folder / item["name"]).convert("RGB"))
    for key, t in zip(("source", "driving"), item["frame_idx"].tolist(), strict=True):
        expected = torch.from_numpy(strip[:, 64 * t: 64 * t + 64].copy()).permute(2, 0, 1).float() / 255
        assert torch.equal(item[key], expected)


def test_decoded_strips_are_cached_within_a_bound(data_dir: Path, monkeypatch) -> None:
    """A strip is decoded once per dataset while it fits the cache; frames equal the uncached ones; the cache
    evicts the least recently used strip beyond its bound; 0 MB turns it off."""
    from fomm.datasets import sources

    decodes: list[str] = []
    real = sources.StripSource._decode

    def counting(self):
        decodes.append(self.path.name)
        return real(self)
    monkeypatch.setattr(sources.StripSource, "_decode", counting)
    cached = FramesDataset(data_dir / "actions", (64, 64, 3), is_train=True, augmentation_params=None)
    plain = FramesDataset.from_config({"root_dir": str(data_dir / "actions"), "frame_shape": [64, 64, 3],
                                       "decoded_cache_mb": 0})
    name = cached.videos[3]
    for draw in range(4):  # the same video, different pairs
        a, b = cached.get(3, draw=draw), plain.get(3, draw=draw)
        assert a["name"] == b["name"] == name
        assert torch.equal(a["source"], b["source"]) and torch.equal(a["driving"], b["driving"])
    assert decodes.count(name) == 1 + 4  # once for the cached dataset, every time for the uncached one
    assert cached.decoded_cache.hits == 3 and cached.decoded_cache.misses == 1

    one = cached.decoded_cache.bytes
    small = sources.DecodedCache(int(one * 1.5))  # room for one strip of this size, not two
    for key in ("a", "b", "a"):
        small.get(key, lambda: np.zeros(one, np.uint8))
    assert small.misses == 3 and small.hits == 0 and small.bytes <= small.max_bytes
    for bad in (-1, "lots", None):
        with pytest.raises(ConfigError, match="decoded_cache_mb must be a number"):
            FramesDataset.from_config({"root_dir": str(data_dir / "actions"), "frame_shape": [64, 64, 3],
                                       "decoded_cache_mb": bad})
    too_big = sources.DecodedCache(10)
    too_big.get("x", lambda: np.zeros(100, np.uint8))
    assert too_big.bytes == 0  # larger than the whole cache: returned, not kept


def test_actions_test_videos(data_dir: Path) -> None:
    ds = FramesDataset(data_dir / "actions", (64, 64, 3), is_train=False)
    assert len(ds) == 15
    item = ds[0]
    width = Image.open(ds.folder / item["name"]).width
    assert item["video"].shape == (3, width // 64, 64, 64)


def test_determinism_and_epochs(data_dir: Path) -> None:
    a = FramesDataset(data_dir / "actions", (64, 64, 3), augmentation_params=FLIP_JITTER, seed=3)
    b = FramesDataset(data_dir / "actions", (64, 64, 3), augmentation_params=FLIP_JITTER, seed=3)
    for i in (0, 5, 20):
        x, y = a[i], b[i]
        assert torch.equal(x["source"], y["source"]) and torch.equal(x["driving"], y["driving"])
    # Order of access does not matter (worker-independent).
    first = [a[i]["frame_idx"].tolist() for i in range(10)]
    again = [a[i]["frame_idx"].tolist() for i in reversed(range(10))][::-1]
    assert first == again
    other_seed = FramesDataset(data_dir / "actions", (64, 64, 3), seed=4)
    assert [other_seed[i]["frame_idx"].tolist() for i in range(10)] != first
    a.set_epoch(1)
    assert [a[i]["frame_idx"].tolist() for i in range(10)] != first


def test_dataloader_workers_reproducible(data_dir: Path) -> None:
    ds = FramesDataset(data_dir / "actions", (64, 64, 3), augmentation_params=FLIP_JITTER, seed=1)
    ref = torch.stack([ds[i]["driving"] for i in range(8)])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    got = torch.cat([b["driving"] for i, b in zip(range(2), loader, strict=False)])
    assert torch.equal(ref, got)


def test_repeater_draws_new_pairs(data_dir: Path) -> None:
    ds = FramesDataset(data_dir / "actions", (64, 64, 3), seed=0)
    rep = DatasetRepeater(ds, 3)
    assert len(rep) == 3 * len(ds)
    n = len(ds)
    names = {rep[i]["name"] for i in (2, 2 + n, 2 + 2 * n)}
    assert names == {ds.videos[2]}
    pairs = [tuple(rep[i]["frame_idx"].tolist()) for i in (2, 2 + n, 2 + 2 * n)]
    assert len(set(pairs)) > 1
    with pytest.raises(ConfigError):
        DatasetRepeater(ds, 0)


def test_mp4_lazy_decoding(tmp_path: Path) -> None:
    make_mp4(tmp_path / "clip.mp4", n=60)
    src = ContainerSource(tmp_path / "clip.mp4")
    assert src.num_frames == 60
    frames = src.read([45, 50])
    assert [_level(f) for f in frames] == [45, 50]
    assert src.decoded_frames <= 20, "seek should decode from the nearest keyframe, not the whole video"
    assert [_level(f) for f in src.read([59, 0])] == [59, 0]


def test_mp4_and_png_folder_dataset(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    make_mp4(root / "train" / "a.mp4", n=30, size=(32, 32))
    make_png_folder(root / "train" / "b", n=12)
    make_png_folder(root / "test" / "c", n=5)
    ds = FramesDataset(root, (32, 32, 3), is_train=True)
    assert ds.videos == ["a.mp4", "b"]
    for i in range(2):
        item = ds[i]
        s, d = item["frame_idx"].tolist()
        assert s <= d
        assert _level(item["source"].permute(1, 2, 0).numpy() * 255) == s
        assert _level(item["driving"].permute(1, 2, 0).numpy() * 255) == d
    test = FramesDataset(root, (32, 32, 3), is_train=False)
    assert test.videos == ["c"] and test[0]["video"].shape == (3, 5, 32, 32)


def test_flip_identical_on_both_frames(tmp_path: Path) -> None:
    make_png_folder(tmp_path / "flat" / "v1", n=20)
    make_png_folder(tmp_path / "flat" / "v2", n=20)
    params = {"flip_param": {"horizontal_flip": True, "time_flip": False}}
    ds = FramesDataset(tmp_path / "flat", (32, 32, 3), augmentation_params=params)
    flips = set()
    for i in range(40):
        item = ds.get(0, draw=i)
        # the red marker is at the top-left, or top-right after a flip, in both frames alike
        left = [bool(item[k][0, 0, 0] == 1.0) for k in ("source", "driving")]
        right = [bool(item[k][0, 0, -1] == 1.0) for k in ("source", "driving")]
        assert left[0] == left[1] and right[0] == right[1] and left[0] != right[0]
        flips.add(right[0])
    assert flips == {True, False}


def test_resize_of_larger_frames(tmp_path: Path) -> None:
    make_png_folder(tmp_path / "flat" / "v1", n=4, size=64)
    make_png_folder(tmp_path / "flat" / "v2", n=4, size=64)
    ds = FramesDataset(tmp_path / "flat", (32, 32, 3))
    assert ds[0]["source"].shape == (3, 32, 32)


def test_id_sampling(tmp_path: Path) -> None:
    root = tmp_path / "vox"
    for split, ids in (("train", {"id1": 3, "id2": 1}), ("test", {"id9": 1})):
        for pid, count in ids.items():
            for k in range(count):
                make_png_folder(root / split / f"{pid}#yt{k}#000001#000010.mp4", n=3, size=16)
    ds = FramesDataset(root, (16, 16, 3), id_sampling=True)
    assert len(ds) == 2 and ds.ids == ["id1", "id2"]
    names = {ds.get(0, draw=d)["name"] for d in range(30)}
    assert {identity_of(n) for n in names} == {"id1"} and len(names) == 3
    assert ds[1]["name"].startswith("id2#")
    test = FramesDataset(root, (16, 16, 3), is_train=False, id_sampling=True)
    assert len(test) == 1


def test_flat_split_by_identity(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for pid in range(10):
        for k in range(2):
            make_png_folder(root / f"p{pid}#v{k}", n=2, size=16)
    tr = FramesDataset(root, (16, 16, 3), is_train=True, id_sampling=True, seed=5)
    te = FramesDataset(root, (16, 16, 3), is_train=False, id_sampling=True, seed=5)
    assert set(tr.ids).isdisjoint({identity_of(v) for v in te.videos})
    assert len(te.videos) == 4 and len(tr.videos) == 16


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        FramesDataset(tmp_path / "missing", (32, 32, 3))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no videos found"):
        FramesDataset(tmp_path / "empty", (32, 32, 3))
    bad = tmp_path / "bad" / "train"
    bad.mkdir(parents=True)
    (tmp_path / "bad" / "test").mkdir()
    (bad / "broken.mp4").write_bytes(b"not a video")
    make_png_folder(bad / "short", n=1)
    make_png_folder(bad / "good", n=4)
    make_png_folder(bad / "tiny", n=4, size=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = FramesDataset(tmp_path / "bad", (32, 32, 3))
    messages = [str(w.message) for w in caught]
    assert any("skipped 3 of 4" in m for m in messages)
    assert sum("skipping video" in m for m in messages) == 3  # one line per skipped video (few here)
    assert ds.videos == ["good"] and ds.num_skipped == 3
    assert set(ds.skipped) == {"unreadable", "fewer than 2 frames", "frames smaller than 32x32"}
    (bad / "good").rename(bad / "alsotiny")
    for f in (bad / "alsotiny").iterdir():
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="none of the 4 videos"):
            FramesDataset(tmp_path / "bad", (32, 32, 3))
    with pytest.raises(ConfigError):
        FramesDataset(tmp_path / "bad", (32, 32))
    with pytest.raises(ConfigError, match="perspective_param"):
        FramesDataset(tmp_path / "bad", (32, 32, 3), augmentation_params={"perspective_param": {}})


def test_paired_dataset(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "train").mkdir(parents=True)
    for name in ("a", "b", "c"):
        make_png_folder(root / "test" / name, n=3, size=16)
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["distance", "source", "driving", "frame"])
        w.writerows([[0, "a", "b", 0], [0, "zz", "a", 0], [0, "c", "a", 0]])
    ds = FramesDataset(root, (16, 16, 3), is_train=False, pairs_list=pairs)
    pd = PairedDataset(ds, number_of_pairs=5)
    assert len(pd) == 2
    item = pd[1]
    assert item["source_name"] == "c" and item["driving_name"] == "a"
    assert item["source_video"].shape == (3, 3, 16, 16)
    ds_nolist = FramesDataset(root, (16, 16, 3), is_train=False)
    assert len(PairedDataset(ds_nolist, number_of_pairs=4, seed=0)) == 4


def test_mp4_random_access_matches_streaming(data_dir: Path) -> None:
    """Seeked frames equal the frames fomm.io streams (same index, SAR-corrected display size)."""
    from fomm.io.reading import iter_frames

    path = data_dir / "faces" / "liveportrait" / "driving" / "d9.mp4"
    src = ContainerSource(path)
    assert src.frame_hw == (480, 480)  # stored 512x480 with SAR 15:16
    streamed = list(iter_frames(path, max_frames=48))
    got = src.read([47, 3])
    assert np.array_equal(got[0], streamed[47]) and np.array_equal(got[1], streamed[3])
    assert src.decoded_frames < 48 + 10


def test_gif_and_from_config(tmp_path: Path) -> None:
    root = tmp_path / "g"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    frames = [Image.fromarray(np.full((24, 24, 3), 40 + 3 * i, np.uint8)) for i in range(6)]
    frames[0].save(root / "train" / "a.gif", save_all=True, append_images=frames[1:], duration=40)
    ds = FramesDataset.from_config({"root_dir": str(root), "image_shape": [24, 24, 3]}, is_train=True, seed=2)
    item = ds[0]
    assert [_level(item[k].permute(1, 2, 0).numpy() * 255) for k in ("source", "driving")] == \
        item["frame_idx"].tolist()
    with pytest.raises(ConfigError, match="unknown dataset_params"):
        FramesDataset.from_config({"root_dir": str(root), "frameshape": [24, 24, 3]})


def test_frames_past_the_pixel_limit_are_refused_when_read(tmp_path: Path) -> None:
    """The probe reads one header (a folder's first frame, a GIF's first frame); a later frame that claims 64 MP
    (or a GIF frame that grows the canvas to 81 MP) is refused from its header when training reads it, so the
    dataset draws another video instead of decoding it."""
    from hostile import bomb_png, growing_gif

    from fomm.datasets.sources import open_source

    folder = make_png_folder(tmp_path / "clip", n=3)
    (folder / "00002.png").write_bytes(bomb_png(8000, 8000))  # the last frame
    gif = tmp_path / "clip.gif"
    gif.write_bytes(growing_gif(9000, 9000))
    cases = [(open_source(folder, (32, 32, 3)), "cannot read frame: 00002.png: image is 8000x8000 = 64 MP"),
             (open_source(gif, (16, 16, 3)), "cannot decode GIF frame: clip.gif frame 1: image is 9000x9000 = 81 MP")]
    for source, message in cases:
        assert source.num_frames in (2, 3) and source.read([0])[0].shape[2] == 3
        with pytest.raises(UnreadableVideo) as err:
            source.read([source.num_frames - 1])
        assert str(err.value) == f"{message}, above fomm's limit of 50 MP; downscale it first"
