"""``fomm download NAME``: fetch one of the authors' released checkpoints into the cache, check it, keep it.

Nothing in fomm downloads by itself: this module runs only when the user asks (``fomm download`` or
:func:`download`), and everything else finds the file in :func:`fomm.pretrained.cache_dir` or says this command.

Why each step:

* **Resume.** The checkpoints are a few hundred MB each (they carry the optimizer states), so a dropped connection
  should not cost the part already fetched. Bytes go to ``<name>.part`` beside the target, a *stable* name (an
  :func:`fomm.io.atomic.atomic_file` temporary has a random one, so a second run could not find it), and the next
  attempt asks for the rest with an HTTP ``Range`` header. A server that ignores the range (200 instead of 206) or
  answers a different range is followed from byte 0. An interrupted transfer is retried ``retries`` times within one
  run; after that the ``.part`` file stays for the next run and the message says so.
* **Check before accepting.** The file becomes ``<name>`` only after it has been loaded with ``weights_only`` into the
  networks of its bundled config, every tensor name and shape matching (:func:`fomm.api.load_model`), and after its
  sha256 matched when the registry knows one. A file that fails (an HTML error page, a truncated or corrupt file, the
  weights of another config) is deleted: nothing is left in the cache that a later ``--pretrained`` would trust.
* **Atomic.** The accepted ``.part`` file is renamed over the target (same folder, so ``os.replace`` is atomic): the
  target is either absent or a checked checkpoint.
* **One line on failure.** No network, an HTTP error (404) or a full disk end as a :class:`DownloadError`, which the
  CLI prints as ``fomm: error: ...`` (exit 2).

``$FOMM_DOWNLOAD_BASE`` (or ``base=``) replaces the release URL and ``url=`` names the file's URL outright: a mirror,
or, in the tests, an ``http.server`` on 127.0.0.1 serving a fixture checkpoint.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fomm import __version__
from fomm.errors import FommError, InputError, OutputError
from fomm.io.atomic import apply_umask
from fomm.pretrained import PretrainedModel, find_pretrained

#: Largest file accepted (the authors' largest checkpoint is well under 1 GiB); a bigger Content-Length is refused
#: before anything is written.
MAX_BYTES = 4 * 2 ** 30


class DownloadError(FommError):
    """A download failed: no network, an HTTP error, an interrupted transfer, or a file that failed its check."""


@dataclass(frozen=True)
class DownloadOptions:
    """How :func:`download` fetches. ``url`` replaces the whole URL, ``base`` only the folder part."""

    url: str | None = None
    base: str | None = None
    force: bool = False  # fetch again even when the cache already holds the file
    retries: int = 3  # extra attempts (each resuming) after an interrupted transfer, within one run
    timeout_s: float = 30.0  # per connection / per read
    chunk_bytes: int = 2 ** 20
    progress: bool = True
    max_bytes: int = MAX_BYTES

    def __post_init__(self) -> None:
        if not 0 <= self.retries <= 100:
            raise InputError(f"retries must be between 0 and 100, not {self.retries}")
        if not 0 < self.timeout_s <= 3600:
            raise InputError(f"the timeout must be between 0 and 3600 s, not {self.timeout_s:g}")
        if not 1024 <= self.chunk_bytes <= 2 ** 26:
            raise InputError(f"chunk_bytes must be between 1 KiB and 64 MiB, not {self.chunk_bytes}")
        if not 0 < self.max_bytes <= 2 ** 40:
            raise InputError(f"max_bytes must be positive and at most 1 TiB, not {self.max_bytes}")


@dataclass(frozen=True)
class DownloadResult:
    name: str
    path: Path
    url: str
    size: int  # bytes of the accepted file
    fetched: int  # bytes transferred by this run (0: it was already in the cache)
    resumed_from: int  # bytes already in a .part file when this run started

    @property
    def cached(self) -> bool:
        return self.fetched == 0 and self.resumed_from == 0


class _Interrupted(Exception):
    """The transfer stopped before the end; ``have`` bytes are in the .part file."""

    def __init__(self, have: int, reason: str) -> None:
        super().__init__(reason)
        self.have = have
        self.reason = reason


def partial_path(target: Path) -> Path:
    """Where the bytes of ``target`` collect until the file is accepted."""
    return target.with_name(target.name + ".part")


def check_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host; :class:`InputError` otherwise (no file://, no ftp)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"'{url}' is not an http(s) URL; pass --url https://HOST/PATH/FILE.pth.tar")
    return url


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """``"bytes 100-199/200"`` -> (100, 200); ``"bytes 100-199/*"`` -> (100, None); anything else -> None."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        return None
    start, end = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if end < start or (total is not None and end >= total):
        return None
    return start, total


def _content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _open(url: str, have: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"fomm/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    host = urllib.parse.urlsplit(url).netloc
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and have:  # our .part is as long as the file or longer: it cannot be resumed
            raise _Interrupted(-1, "the server refused to resume") from None
        hint = ("the file is not at that address; check the name or --url" if err.code == 404 else
                "try again later, or download the file yourself and pass --config/--checkpoint")
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}; {hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(f"cannot reach {host} ({reason}); downloading needs the network: connect and run the "
                            f"same command again, or fetch {url} yourself and pass --config/--checkpoint") from None


def _fetch(url: str, part: Path, opts: DownloadOptions, label: str) -> int:
    """One attempt: append the rest of ``url`` to ``part``; returns the offset it started writing at (0 when the
    server sent the whole file). Raises
    :class:`_Interrupted` when the transfer stops early (the bytes so far stay in ``part``)."""
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    with _open(url, have, opts.timeout_s) as resp:
        length = _content_length(resp.headers.get("Content-Length"))
        if resp.status == 206:
            rng = _content_range(resp.headers.get("Content-Range"))
            if rng is None or rng[0] != have:  # not the range we asked for: start again from byte 0
                raise _Interrupted(-1, "the server answered another range")
            total = rng[1]
        else:
            have, total = 0, length  # 200: the whole file, whatever we asked
        if total is not None and total > opts.max_bytes:
            raise DownloadError(f"{url}: the server announces {total / 2 ** 20:.0f} MB, more than the "
                                f"{opts.max_bytes / 2 ** 20:.0f} MB a checkpoint can be; check the URL")
        fetched = 0
        try:
            with open(part, "ab" if have else "wb") as fh, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                    disable=not opts.progress, leave=False) as bar:
                while True:
                    try:
                        chunk = resp.read(opts.chunk_bytes)
                    except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError) as err:
                        raise _Interrupted(have + fetched, type(err).__name__) from None
                    if not chunk:
                        break
                    fh.write(chunk)
                    fetched += len(chunk)
                    bar.update(len(chunk))
                    if have + fetched > opts.max_bytes:
                        raise DownloadError(f"{url}: more than {opts.max_bytes / 2 ** 20:.0f} MB; not a checkpoint")
        except OSError as err:  # writing: a full disk, a read-only cache
            raise OutputError(f"cannot write {part}: {err.strerror or err}; free some space or set $FOMM_HOME "
                              f"to a writable folder") from None
    if total is not None and have + fetched != total:
        raise _Interrupted(have + fetched, f"connection closed after {have + fetched} of {total} bytes")
    return have


def sha256_of(path: Path, chunk: int = 2 ** 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_checkpoint(entry: PretrainedModel, path: Path) -> None:
    """Accept ``path`` as ``entry``'s weights only if its sha256 (when known) matches and it loads, tensor for
    tensor, into the networks of ``entry``'s config; :class:`DownloadError` otherwise."""
    from fomm.api import load_model

    if entry.sha256 is not None:
        found = sha256_of(path)
        if found != entry.sha256.lower():
            raise DownloadError(f"the file downloaded for {entry.name} has sha256 {found[:12]}..., expected "
                                f"{entry.sha256[:12]}...; it was deleted")
    try:
        load_model(entry.config, path, device="cpu", model=entry.model)
    except FommError as err:
        raise DownloadError(f"the file downloaded for {entry.name} is not a usable {entry.config} checkpoint, so it "
                            f"was deleted: {err}") from None


def download(name: str, options: DownloadOptions | None = None) -> DownloadResult:
    """Fetch the released checkpoint called ``name`` (``vox-256`` or ``vox``; see :data:`fomm.pretrained.REGISTRY`)
    into the cache, check it and return where it is. A file already in the cache is kept (``force=True`` fetches
    again).

    Raises:
        InputError: unknown name, a model shipped with fomm, a URL that is not http(s).
        DownloadError: no network, an HTTP error, a transfer interrupted more than ``retries`` times (the part
            fetched stays for the next run), a file that failed its check (deleted).
        OutputError: the cache folder cannot be written.
    """
    opts = options or DownloadOptions()
    entry = find_pretrained(name)
    if not entry.downloadable:
        raise InputError(f"'{entry.name}' ships with fomm (nothing to download); use --pretrained {entry.name}")
    url = check_url(opts.url or entry.url(opts.base))
    target = entry.path
    if target.is_file() and not opts.force:
        return DownloadResult(entry.name, target, url, target.stat().st_size, 0, 0)
    part = partial_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the cache folder {target.parent}: {err.strerror or err}; set $FOMM_HOME "
                          f"to a writable folder") from None
    resumed_from = part.stat().st_size if part.is_file() else 0
    reused = resumed_from  # bytes of the old .part that end up in the file (0 once the server made us restart)
    for attempt in range(opts.retries + 1):
        try:
            reused = min(reused, _fetch(url, part, opts, entry.name))
            break
        except _Interrupted as stop:
            if stop.have < 0:  # the server cannot continue our part: start again from byte 0
                part.unlink(missing_ok=True)
                reused = 0
            if attempt == opts.retries:
                kept = part.stat().st_size if part.is_file() else 0
                raise DownloadError(f"the download of {entry.name} stopped ({stop.reason}); "
                                    f"{kept / 2 ** 20:.1f} MB are kept in {part}: run `{entry.download_command}` "
                                    f"again to resume") from None
    try:
        verify_checkpoint(entry, part)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    try:
        apply_umask(part)
        os.replace(part, target)
    except OSError as err:
        raise OutputError(f"cannot move the checked download to {target}: {err.strerror or err}") from None
    size = target.stat().st_size
    return DownloadResult(entry.name, target, url, size, size - reused, resumed_from)


__all__ = ["MAX_BYTES", "DownloadError", "DownloadOptions", "DownloadResult", "check_url", "download",
           "partial_path", "sha256_of", "verify_checkpoint"]
