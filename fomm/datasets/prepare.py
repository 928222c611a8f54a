"""Build the VoxCeleb / TaiChi training layout from raw videos and the public chunk metadata.

``prepare_dataset("vox", "vox-metadata.csv", "raw/", "vox256/")`` reads ``raw/<video_id>.mp4`` (the
user's own downloads: nothing is fetched), cuts every chunk listed for that video by its frame range,
crops it with its box, resizes to ``size`` x ``size`` and writes

* ``OUT/{train,test}/<name>.mp4`` (``format="mp4"``), or
* ``OUT/{train,test}/<name>/000000.png, 000001.png, ...`` (``format="png"``, lossless)

where ``<name>`` is :attr:`fomm.datasets.metadata.Chunk.name` (the names used by the published pair
lists). Conventions, chosen to reproduce the published preprocessed datasets:

* Frame ``i`` of a video decoded at ``fps`` belongs to a chunk when ``start <= i * ref_fps / fps < end``
  (``ref_fps`` from the metadata), so a download at another frame rate is cut at the same times. Rates
  within 0.1 % (29.97 listed, 30000/1001 decoded) count as equal and map frames one to one.
* The box is scaled by ``decoded_size / (width, height)`` when the download's resolution differs from
  the listed one (truncating to int). Frames are SAR-corrected by :func:`fomm.io.reading.iter_frames`.
* Boxes past the frame edge (866 VoxCeleb rows) are **clamped** by default (``out_of_frame="clamp"``:
  the part inside the frame is kept and stretched to the square output, which is what the original
  preprocessing did, so results stay comparable); ``out_of_frame="pad"`` keeps the geometry instead and
  fills the outside with black. VoxCeleb boxes are not square (about 0.8 wide:tall) and are resized to
  a square output like the original.
* Each raw video is decoded once for all its chunks, in a pool of ``workers`` processes.
* Resumable: a chunk whose final output exists is skipped; outputs are written under a temporary name
  and renamed when complete, so an interrupted run never leaves a half chunk that looks finished.
* A chunk that cannot be made (video shorter than the chunk, box outside the frame, unreadable
  video) is reported in :attr:`PrepareSummary.failed` and never stops the other chunks.
"""

from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from fomm.crop.boxes import OutOfFrame, crop_and_resize, scale_box
from fomm.datasets.metadata import PARTITIONS, Chunk, Kind, load_metadata
from fomm.errors import InputError, OutputError
from fomm.interrupt import install_in_worker
from fomm.io.atomic import refuse_input_overwrite
from fomm.io.safepath import check_component

Format = Literal["mp4", "png"]
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi")
_STALE_PREFIX = ".partial-"


@dataclass
class PrepareSummary:
    """What :func:`prepare_dataset` did. Chunk lists hold :attr:`Chunk.name` values."""

    kind: str
    out: Path
    total_chunks: int = 0
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already finished by an earlier run
    missing_videos: list[str] = field(default_factory=list)  # video ids with no raw file
    missing_chunks: int = 0  # chunks of the missing videos
    failed: dict[str, str] = field(default_factory=dict)  # chunk name -> reason
    duplicates_dropped: int = 0
    both_splits: list[str] = field(default_factory=list)
    out_of_frame: int = 0
    out_of_frame_mode: str = "clamp"

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing_videos

    def format(self, max_list: int = 20) -> str:
        """A human-readable multi-line report (what the CLI prints at the end)."""
        lines = [
            f"{self.kind}: {self.total_chunks} chunks -> {self.out}",
            f"  written {len(self.written)}, already done {len(self.skipped)}, failed {len(self.failed)}, "
            f"skipped for missing videos {self.missing_chunks}",
            f"  metadata: {self.duplicates_dropped} duplicate rows dropped, {len(self.both_splits)} chunks listed "
            f"in both splits kept in test only, {self.out_of_frame} boxes past the frame edge "
            f"({self.out_of_frame_mode})",
        ]
        if self.missing_videos:
            shown = ", ".join(self.missing_videos[:max_list])
            more = f" (+{len(self.missing_videos) - max_list} more)" if len(self.missing_videos) > max_list else ""
            lines.append(f"  missing raw videos ({len(self.missing_videos)}): {shown}{more}")
            lines.append("  put them in the videos folder as <video_id>.mp4 and run again; finished chunks are kept")
        for name, why in list(self.failed.items())[:max_list]:
            lines.append(f"  failed {name}: {why}")
        if len(self.failed) > max_list:
            lines.append(f"  ... and {len(self.failed) - max_list} more failures")
        return "\n".join(lines)


def find_video(videos_dir: Path, video_id: str) -> Path | None:
    """The raw file for ``video_id`` in ``videos_dir`` (``<id>.mp4``, or .mkv/.webm/.mov/.avi), or None."""
    for ext in VIDEO_EXTENSIONS:
        p = videos_dir / f"{video_id}{ext}"
        if p.is_file():
            return p
    return None


def chunk_output(out: Path, chunk: Chunk, fmt: Format) -> Path:
    """Final output path of a chunk: ``out/<partition>/<name>.mp4`` or the PNG folder ``out/<partition>/<name>``.

    Raises:
        InputError: the partition or name is not a plain file name (a :class:`Chunk` built by hand from crafted
            ids; :func:`fomm.datasets.metadata.load_metadata` already refuses such rows), so no chunk is ever
            written outside ``out``.
    """
    check_component(chunk.partition, f"chunk {chunk.name!r}: partition")
    check_component(chunk.name, "chunk name")
    return out / chunk.partition / (chunk.name + (".mp4" if fmt == "mp4" else ""))


def _stale_partial(final: Path) -> Path:
    """Where earlier fomm versions wrote a chunk before renaming it; an interrupted run may have left one."""
    return final.with_name(_STALE_PREFIX + final.name)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


class _ChunkJob:
    """Streaming state of one chunk while its video is decoded."""

    def __init__(self, chunk: Chunk, out: Path, fmt: Format, size: int | None, mode: OutOfFrame, fps: object):
        self.chunk, self.fmt, self.size, self.mode, self.fps = chunk, fmt, size, mode, fps
        self.final = chunk_output(out, chunk, fmt)
        self.writer = None
        self.frames = 0
        self.error: str | None = None
        self.done = False

    def wants(self, index: int, fps: float) -> bool:
        c = self.chunk
        if abs(fps - c.fps) <= 1e-3 * c.fps:
            # Same rate up to how it is written down (29.97 in the CSV vs 30000/1001 in the file): map frames
            # one to one, otherwise float error would shift the chunk by a frame.
            return c.start <= index < c.end
        # frame index -> time in the metadata's frame units, compared without division
        return c.start * fps <= index * c.fps < c.end * fps

    def write(self, frame: np.ndarray) -> None:
        from fomm.io.writing import open_writer  # noqa: PLC0415 - keeps metadata parsing import-light

        c = self.chunk
        if self.writer is None:
            _remove(_stale_partial(self.final))
            h, w = frame.shape[:2]
            self.box = scale_box(c.bbox, w / c.width, h / c.height)
            # A trailing slash makes open_writer write a PNG frame folder. The writer keeps its output under a
            # hidden temporary name until close(), so a chunk that exists under its final name is complete.
            target = str(self.final) + ("/" if self.fmt == "png" else "")
            self.writer = open_writer(target, self.fps)
        try:
            crop = crop_and_resize(frame, self.box, self.size, self.mode)
        except ValueError:
            raise InputError(f"box {c.bbox} lies outside the {frame.shape[1]}x{frame.shape[0]} video frame") from None
        self.writer.write(crop)
        self.frames += 1

    def finish(self) -> None:
        self.writer.close()
        self.writer = None
        self.done = True

    def abort(self, reason: str) -> None:
        self.error = reason
        if self.writer is not None:
            try:
                self.writer.abort()
            except Exception:  # noqa: BLE001 - the chunk already failed; cleanup is best effort
                pass
            self.writer = None


def prepare_video(video: Path, chunks: list[Chunk], out: Path, fmt: Format = "mp4", size: int | None = 256,
                  out_of_frame: OutOfFrame = "clamp") -> dict[str, str | None]:
    """Write all ``chunks`` of one raw ``video``; returns ``{chunk name: None if written else reason}``.

    Never raises for a bad chunk or video: the reason is returned instead.
    """
    from fomm.io.reading import iter_frames, probe_video  # noqa: PLC0415

    try:
        info = probe_video(video)
    except Exception as exc:  # noqa: BLE001 - any decode problem fails this video's chunks only
        return {c.name: f"cannot read {video.name}: {exc}" for c in chunks}
    fps = float(info.fps)
    jobs = [_ChunkJob(c, out, fmt, size, out_of_frame, info.fps_fraction) for c in chunks]
    for j in jobs:
        j.final.parent.mkdir(parents=True, exist_ok=True)
    last_end = max(c.end / c.fps for c in chunks)  # seconds
    try:
        return _cut_chunks(video, jobs, fps, last_end, iter_frames)
    except BaseException:
        # Interrupted (KeyboardInterrupt, or SIGTERM/SIGHUP turned into one by the CLI): the writers' hidden
        # temporaries must go too, or they stay behind beside the finished chunks.
        for j in jobs:
            j.abort("interrupted")
        raise


def _cut_chunks(video: Path, jobs: list[_ChunkJob], fps: float, last_end: float, iter_frames
                ) -> dict[str, str | None]:
    """The decoding loop of :func:`prepare_video` (one pass, every chunk of the video)."""
    index = -1
    try:
        for index, frame in enumerate(iter_frames(video)):
            if index / fps >= last_end:
                break
            for j in jobs:
                if j.done or j.error is not None:
                    continue
                if j.wants(index, fps):
                    try:
                        j.write(frame)
                    except Exception as exc:  # noqa: BLE001
                        j.abort(str(exc))
                elif j.writer is not None:  # first frame past the chunk: it is complete
                    try:
                        j.finish()
                    except Exception as exc:  # noqa: BLE001
                        j.abort(f"could not write output: {exc}")
    except Exception as exc:  # noqa: BLE001 - a decode error mid-video fails the unfinished chunks
        for j in jobs:
            if not j.done and j.error is None:
                j.abort(f"decoding {video.name} failed at frame {index + 1}: {exc}")
    decoded = index + 1
    for j in jobs:
        if j.done or j.error is not None:
            continue
        c = j.chunk
        # the chunk is complete only if the frame right after the last decoded one would not belong to it
        if (decoded < c.end) if abs(fps - c.fps) <= 1e-3 * c.fps else (decoded * c.fps < c.end * fps):
            j.abort(f"{video.name} has only {decoded} frames at {fps:g} fps but the chunk runs to frame {c.end} "
                    f"at {c.fps:g} fps; the download is incomplete or a different cut")
        else:
            try:
                j.finish()
            except Exception as exc:  # noqa: BLE001
                j.abort(f"could not write output: {exc}")
    return {j.chunk.name: (None if j.done else j.error) for j in jobs}


def _work(args: tuple) -> tuple[str, dict[str, str | None]]:
    video_id, video, chunks, out, fmt, size, mode = args
    try:
        return video_id, prepare_video(video, chunks, out, fmt, size, mode)
    except Exception as exc:  # noqa: BLE001 - a worker must always report back
        return video_id, {c.name: f"unexpected error: {exc!r}" for c in chunks}


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """On an interrupt, do not wait for every queued video (what leaving ``with pool`` would do): drop the queue
    and send SIGTERM to the running workers, whose handler (:func:`fomm.interrupt.install_in_worker`) discards
    their half-written chunks before they exit."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API lists them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=30)


def prepare_dataset(kind: Kind, metadata: str | Path, videos_dir: str | Path, out: str | Path,
                    format: Format = "mp4", size: int | None = 256, workers: int = 1,
                    out_of_frame: OutOfFrame = "clamp", progress: bool = True) -> PrepareSummary:
    """Cut, crop and resize every chunk of a VoxCeleb/TaiChi metadata CSV (see the module notes).

    ``size``: output side in pixels (``None`` keeps the crop's own size). ``workers``: processes
    decoding videos in parallel (1 = in this process). Returns a :class:`PrepareSummary`; raises
    :class:`InputError`/:class:`OutputError` only for problems that stop everything (bad metadata,
    no videos folder, unwritable output).
    """
    if format not in ("mp4", "png"):
        raise InputError(f"unknown output format {format!r}; use 'mp4' or 'png'")
    if size is not None and size < 1:
        raise InputError(f"size must be a positive number of pixels, got {size}")
    if out_of_frame not in ("clamp", "pad"):
        raise InputError(f"out_of_frame must be 'clamp' or 'pad', got {out_of_frame!r}")
    report = load_metadata(metadata, kind)
    videos_dir, out = Path(videos_dir), Path(out)
    if not videos_dir.is_dir():
        raise InputError(f"videos folder {videos_dir} not found; download the raw videos as <video_id>.mp4 there")
    summary = PrepareSummary(kind=kind, out=out, total_chunks=len(report.chunks),
                             duplicates_dropped=report.duplicates_dropped, both_splits=list(report.both_splits),
                             out_of_frame=report.out_of_frame, out_of_frame_mode=out_of_frame)
    tasks = []
    for video_id, chunks in report.videos().items():
        todo = []
        for c in chunks:
            if chunk_output(out, c, format).exists():
                summary.skipped.append(c.name)
            else:
                todo.append(c)
        if not todo:
            continue
        video = find_video(videos_dir, video_id)
        if video is None:
            summary.missing_videos.append(video_id)
            summary.missing_chunks += len(todo)
            continue
        tasks.append((video_id, video, todo, out, format, size, out_of_frame))
    # Finished chunks are skipped, never rewritten; what could still destroy an input is OUT itself being one, or
    # the clean-up of an old ".partial-" leftover hitting one.
    refuse_input_overwrite([_stale_partial(chunk_output(out, c, format)) for t in tasks for c in t[2]],
                           [metadata, *(t[1] for t in tasks)], folders=out)
    try:
        for part in PARTITIONS:
            (out / part).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out}: {exc.strerror}; choose a writable path") from None

    bar = tqdm(total=sum(len(t[2]) for t in tasks), desc=f"prepare {kind}", unit="chunk", disable=not progress)
    try:
        def collect(result: tuple[str, dict[str, str | None]]) -> None:
            _, results = result
            for name, err in results.items():
                if err is None:
                    summary.written.append(name)
                else:
                    summary.failed[name] = err
            bar.update(len(results))

        if workers <= 1 or len(tasks) <= 1:
            for t in tasks:
                collect(_work(t))
        else:
            # spawn, not fork: decoder threads in the parent must not be copied into children
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                                       initializer=install_in_worker)
            try:
                futures = {pool.submit(_work, t): t for t in tasks}
                for fut in as_completed(futures):
                    try:
                        collect(fut.result())
                    except Exception as exc:  # noqa: BLE001 - e.g. a worker killed for memory
                        t = futures[fut]
                        collect((t[0], {c.name: f"worker died: {exc!r}" for c in t[2]}))
            except BaseException:
                _stop_workers(pool)
                raise
            pool.shutdown()
    finally:
        bar.close()
    return summary
