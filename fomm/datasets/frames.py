"""Training/test datasets over folders of videos, in the layouts the original FOMM tools use.

Layout: ``ROOT/train`` and ``ROOT/test``, or a flat ``ROOT`` that is split here (20 % test, deterministic in
``seed``). Each video is a folder of image frames, a container video (.mp4/.mov/...), a GIF, or a strip image
with frames side by side (see :mod:`fomm.datasets.sources`).

Randomness is per item: every draw uses ``numpy.random.default_rng([seed, epoch, index])``, so results do not
depend on DataLoader worker count, worker order or DDP rank. Call :meth:`FramesDataset.set_epoch` before each
epoch (like ``DistributedSampler.set_epoch``; with ``persistent_workers=True`` the workers keep the epoch they
were started with).

Identity sampling (``id_sampling=True``, VoxCeleb naming ``<id>#<youtube id>#<start>#<end>.mp4``): the
training set has one item per identity (the part before the first ``#``), and each draw picks one of that
identity's videos at random, so people with many videos are not over-represented. In a flat folder the
train/test split is made per identity, so no person is in both.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fomm.config import check_dataset_params
from fomm.datasets.augment import ClipAugmentation
from fomm.datasets.sources import DecodedCache, UnreadableVideo, VideoSource, is_video_entry, open_source
from fomm.errors import ConfigError, InputError

TEST_FRACTION = 0.2
_MAX_LISTED_WARNINGS = 5
_MAX_READ_RETRIES = 10


def identity_of(name: str) -> str:
    """VoxCeleb-style identity of a video name: the part before the first ``#`` (the whole stem if none)."""
    stem = name.split("#", 1)[0]
    return stem if "#" in name else os.path.splitext(name)[0]


def _split_flat(names: list[str], seed: int, by_identity: bool) -> tuple[list[str], list[str]]:
    keys = sorted({identity_of(n) for n in names}) if by_identity else sorted(names)
    rng = np.random.default_rng([seed, 0x5EED])
    order = rng.permutation(len(keys))
    n_test = int(round(len(keys) * TEST_FRACTION))
    if len(keys) >= 2:
        n_test = min(max(n_test, 1), len(keys) - 1)
    test_keys = {keys[i] for i in order[:n_test]}
    key = identity_of if by_identity else (lambda n: n)
    train = [n for n in names if key(n) not in test_keys]
    test = [n for n in names if key(n) in test_keys]
    return train, test


class FramesDataset(Dataset):
    """Random source/driving pairs (training) or whole videos (test) from a folder of videos.

    Args:
        root: dataset folder (``root/train`` + ``root/test``, or flat).
        frame_shape: ``(H, W, 3)``; frames larger than this are resized to it, smaller ones make the video
            unusable (skipped with a warning).
        is_train: training pairs (True) or full test videos (False).
        id_sampling: one item per identity (see module docstring); training only.
        augmentation_params: ``dataset_params.augmentation_params`` (see :mod:`fomm.datasets.augment`);
            applied in training only.
        pairs_list: kept for :class:`PairedDataset` (a CSV of ``source,driving`` video names).
        seed: base of all randomness (flat split, pair sampling, augmentation).
        decoded_cache_mb: memory for decoded strip images kept between reads (per process; 0: decode every
            time). Strip datasets (Shapes, Actions) otherwise decode a whole clip for every pair.

    Items (training): ``{"source": [3, H, W], "driving": [3, H, W]`` float32 in [0, 1], ``"name": str,
    "frame_idx": [2] int64}`` (frame indices drawn with replacement and sorted, as the original; they may be
    equal). Items (test): ``{"video": [3, T, H, W]`` float32 in [0, 1], ``"name": str}``.

    Attributes ``skipped`` (reason -> list of names) and ``num_skipped`` report unusable videos.
    """

    def __init__(self, root: str | os.PathLike, frame_shape: tuple[int, int, int] | list[int] = (256, 256, 3),
                 is_train: bool = True, id_sampling: bool = False, augmentation_params: dict | None = None,
                 pairs_list: str | os.PathLike | None = None, seed: int = 0, decoded_cache_mb: float = 256) -> None:
        self.root = Path(root)
        try:
            cache_mb = float(decoded_cache_mb)
        except (TypeError, ValueError):
            cache_mb = -1.0
        if not 0 <= cache_mb < math.inf:  # also rejects NaN, and inf (int(inf) is an OverflowError)
            raise ConfigError(f"dataset_params.decoded_cache_mb must be a number of MB >= 0 (0 turns the cache off), "
                              f"got {decoded_cache_mb!r}")
        self.decoded_cache = DecodedCache(int(cache_mb * 2**20))
        try:
            shape = tuple(int(s) for s in frame_shape)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 3 or shape[2] != 3 or min(shape) <= 0:
            got = list(shape) if shape else frame_shape
            raise ConfigError(f"dataset_params.frame_shape must be [H, W, 3], got {got!r}")
        self.frame_shape = shape
        self.is_train = is_train
        self.id_sampling = id_sampling and is_train
        self.pairs_list = pairs_list
        self.seed = int(seed)
        self.epoch = 0
        self.augment = ClipAugmentation(augmentation_params) if is_train else None

        if not self.root.is_dir():
            raise InputError(f"dataset folder {self.root} does not exist; check dataset_params.root_dir")
        split_dir = self.root / ("train" if is_train else "test")
        if (self.root / "train").is_dir():
            if not split_dir.is_dir():
                raise InputError(f"{self.root} has a train/ folder but no {split_dir.name}/ folder; "
                                 f"add it or use a flat folder")
            folder = split_dir
            names = self._list(folder)
        else:
            folder = self.root
            names = self._list(folder)
            if names:
                train, test = _split_flat(names, self.seed, by_identity=id_sampling)
                names = train if is_train else test
        self.folder = folder
        if not names:
            raise InputError(f"no videos found in {folder} (expected folders of frames, .mp4/.mov/.gif files "
                             f"or strip images)")

        self.skipped: dict[str, list[str]] = defaultdict(list)
        self._skip_details: dict[str, str] = {}  # reason -> the first skipped video's detail
        self.read_failures: dict[str, int] = {}  # training-time read errors per video (name -> count)
        self.sources: dict[str, VideoSource] = {}
        self._probe(names)
        self.videos = sorted(self.sources)
        if not self.videos:
            raise InputError(f"none of the {len(names)} videos in {folder} is usable: {self._skip_summary()}")
        if self.num_skipped:
            warnings.warn(f"{folder}: skipped {self.num_skipped} of {len(names)} videos ({self._skip_summary()})",
                          stacklevel=2)
        if self.id_sampling:
            groups: dict[str, list[str]] = defaultdict(list)
            for v in self.videos:
                groups[identity_of(v)].append(v)
            self.ids = sorted(groups)
            self.id_videos = {k: sorted(vs) for k, vs in groups.items()}

    CONFIG_KEYS = ("root_dir", "frame_shape", "image_shape", "id_sampling", "pairs_list", "augmentation_params",
                   "decoded_cache_mb")

    @classmethod
    def from_config(cls, dataset_params: dict[str, Any], is_train: bool = True, seed: int = 0) -> FramesDataset:
        """Build from a config's ``dataset_params`` (FOMM keys; Monkey-Net's ``image_shape`` is accepted for
        ``frame_shape``; ``decoded_cache_mb`` is ours)."""
        unknown = set(dataset_params) - set(cls.CONFIG_KEYS)
        if unknown:
            raise ConfigError(f"unknown dataset_params key(s) {sorted(unknown)}; supported: {list(cls.CONFIG_KEYS)}")
        if "root_dir" not in dataset_params:
            raise ConfigError("dataset_params.root_dir is missing; set it to the dataset folder")
        # The config readers check these when the YAML is read; a dict built in code is checked here.
        check_dataset_params(dataset_params)
        shape = dataset_params.get("frame_shape", dataset_params.get("image_shape", (256, 256, 3)))
        return cls(dataset_params["root_dir"], shape, is_train=is_train,
                   id_sampling=bool(dataset_params.get("id_sampling", False)),
                   augmentation_params=dataset_params.get("augmentation_params"),
                   pairs_list=dataset_params.get("pairs_list"), seed=seed,
                   decoded_cache_mb=dataset_params.get("decoded_cache_mb", 256))

    # --- discovery -------------------------------------------------------------------------------------------
    @staticmethod
    def _list(folder: Path) -> list[str]:
        return sorted(e.name for e in os.scandir(folder) if is_video_entry(folder / e.name))

    def _probe(self, names: list[str]) -> None:
        h, w, _ = self.frame_shape
        min_frames = 2 if self.is_train else 1
        iterator: Any = names
        if len(names) > 2000:
            from tqdm import tqdm
            iterator = tqdm(names, desc=f"probing {self.folder.name}", unit="video")
        for name in iterator:
            try:
                src = open_source(self.folder / name, self.frame_shape, self.decoded_cache)
            except UnreadableVideo as exc:
                self._skip("unreadable", name, str(exc))
                continue
            if src.num_frames < min_frames:
                self._skip(f"fewer than {min_frames} frames", name, f"{src.num_frames} frame(s)")
                continue
            fh, fw = src.frame_hw
            if fh < h or fw < w:
                self._skip(f"frames smaller than {h}x{w}", name, f"frames are {fh}x{fw}")
                continue
            self.sources[name] = src

    def _skip(self, reason: str, name: str, detail: str) -> None:
        self.skipped[reason].append(name)
        self._skip_details.setdefault(reason, detail)
        if sum(len(v) for v in self.skipped.values()) <= _MAX_LISTED_WARNINGS:
            warnings.warn(f"skipping video {self.folder / name}: {reason} ({detail})", stacklevel=3)

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def _skip_summary(self) -> str:
        # The first example's detail too: the error that ends a run on a dataset with nothing usable says why.
        return "; ".join(f"{len(v)} {k}, e.g. {v[0]} ({self._skip_details[k]})"
                         for k, v in self.skipped.items()) or "no videos"

    # --- sampling --------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch used in every item's random stream."""
        self.epoch = int(epoch)

    def rng_for(self, draw: int) -> np.random.Generator:
        """The generator for draw number ``draw`` of the current epoch (a fresh one each call)."""
        return np.random.default_rng([self.seed, self.epoch, int(draw)])

    def __len__(self) -> int:
        return len(self.ids) if self.id_sampling else len(self.videos)

    def _fit(self, frame: np.ndarray) -> np.ndarray:
        h, w, _ = self.frame_shape
        if frame.shape[:2] != (h, w):
            frame = np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.LANCZOS))
        return frame

    def _read(self, name: str, indices: list[int]) -> list[np.ndarray]:
        try:
            return [self._fit(f) for f in self.sources[name].read(indices)]
        except UnreadableVideo as exc:
            raise InputError(f"cannot read video {self.folder / name}: {exc}; remove or re-encode it") from None

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get(index % len(self), draw=index)

    def get(self, index: int, draw: int | None = None) -> dict[str, Any]:
        """Item ``index``; ``draw`` (default ``index``) selects the random stream (DatasetRepeater passes its own
        index so every repeat of a video gets a different pair)."""
        if not self.is_train:
            name = self.videos[index]
            frames = [torch.from_numpy(np.array(f)).permute(2, 0, 1) for f in self.iter_video(index)]
            video = torch.stack(frames, 1).float() / 255.0
            return {"video": video, "name": name}
        rng = self.rng_for(index if draw is None else draw)
        if self.id_sampling:
            candidates = self.id_videos[self.ids[index]]
            name = candidates[int(rng.integers(len(candidates)))]
        else:
            name = self.videos[index]
        # A video that decodes at probe time can still fail later (truncated file, disk error). Losing the
        # epoch for one bad clip is worse than drawing another one: warn, remember it, and move on.
        for _attempt in range(_MAX_READ_RETRIES):
            n = self.sources[name].num_frames
            frame_idx = np.sort(rng.choice(n, size=2, replace=True))
            try:
                frames = self._read(name, [int(i) for i in frame_idx])
                break
            except InputError as exc:
                self.read_failures[name] = self.read_failures.get(name, 0) + 1
                warnings.warn(f"{exc}; drawing another video instead", stacklevel=2)
                name = self.videos[int(rng.integers(len(self.videos)))]
        else:
            raise InputError(f"{_MAX_READ_RETRIES} videos in a row could not be read in {self.folder}; "
                             f"check the dataset (first failures: {sorted(self.read_failures)[:3]})")
        assert self.augment is not None
        out, _ = self.augment(frames, rng)
        source, driving = (torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1) for f in out)
        return {"source": source.float(), "driving": driving.float(), "name": name,
                "frame_idx": torch.as_tensor(frame_idx, dtype=torch.int64)}

    def iter_video(self, index: int) -> Iterator[np.ndarray]:
        """Stream the frames of video ``index`` as ``[H, W, 3]`` uint8 (resized to frame_shape)."""
        name = self.videos[index]
        src = self.sources[name]
        try:
            for frame in src.iter_all():
                yield self._fit(frame)
        except UnreadableVideo as exc:
            raise InputError(f"cannot read video {self.folder / name}: {exc}; remove or re-encode it") from None


class DatasetRepeater(Dataset):
    """Repeats a dataset ``num_repeats`` times per epoch (``train_params.num_repeats``); each repeat draws a
    new random pair, because the wrapped dataset's random stream is keyed by the repeater's index."""

    def __init__(self, dataset: FramesDataset, num_repeats: int = 100) -> None:
        if num_repeats < 1:
            raise ConfigError(f"train_params.num_repeats must be >= 1, got {num_repeats}")
        self.dataset = dataset
        self.num_repeats = int(num_repeats)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_repeats * len(self.dataset)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        return self.dataset.get(idx % len(self.dataset), draw=idx)


class PairedDataset(Dataset):
    """(source video, driving video) pairs of a test :class:`FramesDataset` for animation evaluation.

    With the dataset's ``pairs_list`` (CSV with ``source`` and ``driving`` columns of video names), the first
    ``number_of_pairs`` rows whose videos are both present are used, in file order. Without one, pairs are
    drawn (deterministically in ``seed``) from the grid of the first ``number_of_pairs`` videos.
    Items: the dataset's items with keys prefixed ``driving_`` and ``source_``.
    """

    def __init__(self, initial_dataset: FramesDataset, number_of_pairs: int, seed: int = 0) -> None:
        self.initial_dataset = initial_dataset
        videos = initial_dataset.videos
        index = {v: i for i, v in enumerate(videos)}
        pairs: list[tuple[int, int]] = []
        if initial_dataset.pairs_list is not None:
            path = Path(initial_dataset.pairs_list)
            if not path.is_file():
                raise InputError(f"pairs list {path} does not exist; check dataset_params.pairs_list")
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or not {"source", "driving"} <= set(reader.fieldnames):
                    raise InputError(f"pairs list {path} needs 'source' and 'driving' columns")
                for row in reader:
                    if row["source"] in index and row["driving"] in index:
                        pairs.append((index[row["driving"]], index[row["source"]]))
                        if len(pairs) >= number_of_pairs:
                            break
        else:
            m = min(number_of_pairs, len(videos))
            grid = np.stack(np.meshgrid(np.arange(m), np.arange(m), indexing="ij"), -1).reshape(-1, 2)
            rng = np.random.default_rng([seed, 0xA11])
            chosen = rng.choice(len(grid), size=min(len(grid), number_of_pairs), replace=False)
            pairs = [(int(a), int(b)) for a, b in grid[chosen]]
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        driving, source = self.pairs[idx]
        first = self.initial_dataset.get(driving)
        second = self.initial_dataset.get(source)
        out = {"driving_" + k: v for k, v in first.items()}
        out.update({"source_" + k: v for k, v in second.items()})
        return out
