"""Parsing of the public VoxCeleb / TaiChi chunk metadata CSVs.

Both files list one *chunk* (a frame range of a YouTube video plus a fixed crop box) per row:

* ``vox-metadata.csv``: ``video_id,start,end,bbox,fps,width,height,partition,person_id``
* ``taichi-metadata.csv``: ``video_id,start,end,bbox,fps,width,height,partition``

``start``/``end`` are frame numbers at the listed ``fps`` (``end`` exclusive), ``bbox`` is
``left-top-right-bottom`` in pixels of a ``width`` x ``height`` frame.

Known quirks of the published files, each handled deliberately here (see :class:`MetadataReport`):

* exact duplicate rows (308 in ``vox-metadata.csv``): kept once, counted in ``duplicates_dropped``;
* chunks listed in both ``train`` and ``test`` (3 chunks of two VoxCeleb videos, whose identities
  ``id10282``/``id10306`` are test identities in 45 of 49 rows): assigned to ``test`` only, so the test
  set never leaks into training; listed in ``both_splits``;
* boxes that run past the frame edge (866 vox rows, past the bottom and/or right edge): kept as listed,
  counted in ``out_of_frame``; :func:`fomm.datasets.prepare.crop_frame` clamps or pads them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from fomm.errors import InputError
from fomm.io.safepath import check_component

Kind = Literal["vox", "taichi"]
Box = tuple[int, int, int, int]

_COLUMNS: dict[str, tuple[str, ...]] = {
    "taichi": ("video_id", "start", "end", "bbox", "fps", "width", "height", "partition"),
    "vox": ("video_id", "start", "end", "bbox", "fps", "width", "height", "partition", "person_id"),
}
PARTITIONS = ("train", "test")


@dataclass(frozen=True)
class Chunk:
    """One output clip: frames ``[start, end)`` (at ``fps``) of ``video_id``, cropped with ``bbox``.

    ``bbox`` is ``(left, top, right, bottom)`` in pixels of a ``width`` x ``height`` frame; it may run
    past the frame edge (see the module notes).
    """

    video_id: str
    start: int
    end: int
    bbox: Box
    fps: float
    width: int
    height: int
    partition: str
    person_id: str | None = None

    @property
    def name(self) -> str:
        """Output stem used by the original preprocessing and by the published pair lists.

        ``[person_id#]video_id#start#end`` with frame numbers zero-padded to 6 digits, e.g.
        ``id10005#WMh3ye5tBsE#003657#003994`` (vox) or ``u6rJiF-gPx8#000080#000300`` (taichi).
        """
        head = f"{self.person_id}#" if self.person_id else ""
        return f"{head}{self.video_id}#{self.start:06d}#{self.end:06d}"

    @property
    def out_of_frame(self) -> bool:
        left, top, right, bottom = self.bbox
        return left < 0 or top < 0 or right > self.width or bottom > self.height


@dataclass
class MetadataReport:
    """Parsed metadata plus what was done about its quirks.

    ``chunks`` holds each distinct chunk once, in file order (first occurrence).
    """

    kind: str
    chunks: list[Chunk]
    rows: int = 0
    duplicates_dropped: int = 0
    both_splits: list[str] = field(default_factory=list)
    out_of_frame: int = 0

    def videos(self) -> dict[str, list[Chunk]]:
        """Chunks grouped by ``video_id`` (insertion ordered)."""
        out: dict[str, list[Chunk]] = {}
        for c in self.chunks:
            out.setdefault(c.video_id, []).append(c)
        return out


def _parse_row(row: dict[str, str], kind: str, where: str) -> Chunk:
    try:
        start, end = int(row["start"]), int(row["end"])
        parts = row["bbox"].split("-")
        if len(parts) != 4:
            raise ValueError(f"bbox {row['bbox']!r} is not left-top-right-bottom")
        bbox = tuple(int(p) for p in parts)
        fps = float(row["fps"])
        width, height = int(row["width"]), int(row["height"])
    except (ValueError, TypeError, AttributeError) as exc:  # AttributeError: a short row's missing cells are None
        raise InputError(f"{where}: malformed value ({exc}); fix or remove this row of the metadata CSV") from None
    partition = (row["partition"] or "").strip()
    # Both ids become part of an output file name: a crafted one (``../../x``, ``/etc/x``) must not lead outside
    # the output folder. One bad row stops the run before anything is written, like any other malformed row.
    video_id = check_component((row["video_id"] or "").strip(), f"{where}: video_id")
    if partition not in PARTITIONS:
        raise InputError(f"{where}: partition {partition!r} is not one of {PARTITIONS}; fix this row")
    if end <= start or start < 0:
        raise InputError(f"{where}: empty or negative frame range start={start} end={end}; fix this row")
    if bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
        raise InputError(f"{where}: bbox {row['bbox']} has no area; fix this row")
    if fps <= 0 or width <= 0 or height <= 0:
        raise InputError(f"{where}: fps/width/height must be positive; fix this row")
    person = (row.get("person_id") or "").strip() if kind == "vox" else ""
    if person:
        check_component(person, f"{where}: person_id")
    return Chunk(video_id, start, end, bbox, fps, width, height, partition,  # type: ignore[arg-type]
                 person or None)


def parse_metadata(lines: Iterable[str], kind: Kind, source: str = "metadata") -> MetadataReport:
    """Parse metadata CSV text (an iterable of lines) of the given ``kind``.

    Raises :class:`InputError` if the header lacks a required column or a row is malformed.
    """
    if kind not in _COLUMNS:
        raise InputError(f"unknown dataset kind {kind!r}; use 'vox' or 'taichi'")
    reader = csv.DictReader(lines)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in _COLUMNS[kind] if c not in header]
    if missing:
        raise InputError(
            f"{source}: not a {kind} metadata CSV: missing column(s) {', '.join(missing)} "
            f"(found {', '.join(header) or 'no header'}); expected {','.join(_COLUMNS[kind])}")
    reader.fieldnames = header

    seen: dict[tuple, int] = {}  # full row -> index in `chunks`
    by_key: dict[tuple, int] = {}  # chunk identity without partition -> index in `chunks`
    chunks: list[Chunk] = []
    report = MetadataReport(kind=kind, chunks=chunks)
    for lineno, row in enumerate(reader, start=2):
        report.rows += 1
        chunk = _parse_row(row, kind, f"{source} line {lineno}")
        if chunk in seen:
            report.duplicates_dropped += 1
            continue
        seen[chunk] = len(chunks)
        key = (chunk.video_id, chunk.start, chunk.end, chunk.bbox, chunk.person_id)
        if key in by_key:
            idx = by_key[key]
            if chunks[idx].partition != chunk.partition:
                # Listed in both splits: keep it only in test so no test clip is trained on.
                chunks[idx] = replace(chunks[idx], partition="test")
                report.both_splits.append(chunks[idx].name)
            continue
        by_key[key] = len(chunks)
        chunks.append(chunk)
    if not chunks:
        raise InputError(f"{source}: no chunks listed; is this the right metadata file?")
    report.both_splits = sorted(set(report.both_splits))
    report.out_of_frame = sum(c.out_of_frame for c in chunks)
    return report


def load_metadata(path: str | Path, kind: Kind) -> MetadataReport:
    """Read and parse a metadata CSV file; see :func:`parse_metadata`."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"metadata {path} is a folder, not a file; pass the path of the CSV itself "
                         "(vox-metadata.csv or taichi-metadata.csv)")
    if not path.is_file():
        raise InputError(f"metadata file {path} not found; pass the path to vox-metadata.csv or taichi-metadata.csv")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return parse_metadata(fh, kind, source=str(path))
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a UTF-8 text CSV; pass the metadata CSV file") from None
