"""All-or-nothing output files and folders.

Every file fomm writes (videos, frame folders, checkpoints, reports, JSON) appears under its final name only
once it is complete, so an interrupted or failed run never leaves a half-written output that a later run (or a
resumed one) would take for finished, and never destroys the previous version before the new one is ready.

The pattern is always the same: write to a hidden temporary sibling in the target's folder (same file system,
so the final rename is atomic), then ``os.replace`` it over the target. :func:`atomic_file` and
:func:`atomic_dir` are that pattern once, for every writer:

    with atomic_file("out/plot.png", suffix=".png") as tmp:   # tmp: Path of an empty hidden file
        fig.savefig(tmp)

Streaming writers that open at the first frame and commit in ``close()`` keep the returned object and call
:meth:`AtomicFile.begin`, :meth:`AtomicFile.commit` and :meth:`AtomicFile.discard` themselves.

OSErrors (unwritable folder, full disk, target is a folder) propagate unchanged: the caller knows what it was
writing and turns them into its own one-line :class:`~fomm.errors.OutputError`. :func:`write_text_atomic` and
:func:`write_bytes_atomic` do that already.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from fomm.errors import OutputError

PathLike = str | os.PathLike


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_umask(path: PathLike, mode: int = 0o666) -> None:
    """``mkstemp``/``mkdtemp`` create 0600/0700 entries; give ``path`` the permissions a plain ``open`` (files,
    ``mode=0o666``) or ``mkdir`` (folders, ``mode=0o777``) would, i.e. ``mode`` less the umask."""
    os.chmod(path, mode & ~current_umask())


def _folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _remove(path: Path) -> None:
    """Delete a file, symlink or folder tree; best effort (used on cleanup paths only)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


class _AtomicTarget:
    """What :class:`AtomicFile` and :class:`AtomicDir` share: a hidden temporary (``tmp``, made by ``begin``) that
    ``commit`` moves onto ``path`` and :meth:`discard` removes; as a context manager, commit on a clean exit and
    discard otherwise."""

    path: Path
    tmp: Path | None

    def begin(self) -> Path:  # pragma: no cover - overridden
        raise NotImplementedError

    def commit(self) -> Path:  # pragma: no cover - overridden
        raise NotImplementedError

    def discard(self) -> None:
        """Remove the temporary (a file, or a folder and everything in it), if any; ``path`` is untouched."""
        if self.tmp is not None:
            _remove(self.tmp)
            self.tmp = None

    def __enter__(self) -> Path:
        # Entering after an explicit begin() (to tell creation errors from writing errors) keeps that temporary.
        return self.tmp if self.tmp is not None else self.begin()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False


class AtomicFile(_AtomicTarget):
    """A temporary file beside ``path`` that replaces ``path`` on :meth:`commit` (see :func:`atomic_file`)."""

    def __init__(self, path: PathLike, *, suffix: str = ".tmp", mode: int = 0o666) -> None:
        self.path = Path(path)
        self.suffix = suffix
        self.mode = mode
        self.tmp: Path | None = None

    def begin(self) -> Path:
        """Create the parent folders and an empty hidden temporary file; returns its path.

        Raises:
            OSError: the folder cannot be created or written.
        """
        folder = _folder_of(self.path)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=self.suffix, dir=folder)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def commit(self) -> Path:
        """Give the temporary file the umask's permissions and rename it over ``path``; returns ``path``.

        On any failure (including KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
        """
        if self.tmp is None:
            raise RuntimeError(f"{self.path}: commit() without begin()")
        try:
            apply_umask(self.tmp, self.mode)
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        self.tmp = None
        return self.path


class AtomicDir(_AtomicTarget):
    """A temporary folder beside ``path`` that replaces ``path`` on :meth:`commit` (see :func:`atomic_dir`)."""

    def __init__(self, path: PathLike, *, suffix: str = ".part", mode: int = 0o777,
                 check_existing: Callable[[Path], None] | None = None) -> None:
        self.path = Path(path)
        self.suffix = suffix
        self.mode = mode
        self.check_existing = check_existing
        self.tmp: Path | None = None

    def begin(self) -> Path:
        """Create the parent folders and an empty hidden temporary folder; returns its path.

        Raises:
            OSError: the folder cannot be created or written.
        """
        folder = _folder_of(self.path)
        folder.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=self.suffix, dir=folder))
        return self.tmp

    def commit(self) -> Path:
        """Move the temporary folder to ``path``, replacing whatever is there; returns ``path``.

        An existing target (folder, file or symlink) is first passed to ``check_existing`` (which may raise to
        refuse), then renamed aside, and deleted only once the new folder is in place; should the final rename
        fail, it is put back. On any failure the temporary folder is removed.
        """
        if self.tmp is None:
            raise RuntimeError(f"{self.path}: commit() without begin()")
        graveyard = None
        try:
            apply_umask(self.tmp, self.mode)
            if os.path.lexists(self.path):
                if self.check_existing is not None:
                    self.check_existing(self.path)
                # A folder cannot be renamed over a non-empty one: move the old target into a fresh hidden
                # folder first (unique, so no name race), and delete it after the swap.
                graveyard = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".old",
                                                  dir=_folder_of(self.path)))
                os.replace(self.path, graveyard / self.path.name)
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            if graveyard is not None:
                old = graveyard / self.path.name
                if os.path.lexists(old) and not os.path.lexists(self.path):
                    os.replace(old, self.path)  # the swap failed half way: put the old target back
                if not os.path.lexists(old):
                    _remove(graveyard)
            raise
        self.tmp = None
        if graveyard is not None:
            _remove(graveyard)
        return self.path


def atomic_file(path: PathLike, *, suffix: str = ".tmp", mode: int = 0o666) -> AtomicFile:
    """Write ``path`` all or nothing.

    ``with atomic_file(path, suffix=".png") as tmp:`` gives ``tmp``, the :class:`~pathlib.Path` of an empty
    hidden file ``.<name>.<random><suffix>`` in ``path``'s folder (created, with its parents, on entry). Write
    the content to ``tmp`` by name (``suffix`` lets writers that pick the format from the extension, such as
    PyAV, Pillow or Matplotlib, see the right one). On a clean exit ``tmp`` gets ``mode`` less the umask (what
    a plain ``open`` gives, not mkstemp's 0600) and is renamed over ``path``; on any exception, KeyboardInterrupt
    and SystemExit included, ``tmp`` is deleted and an existing ``path`` is left as it was.

    Raises:
        OSError: unchanged, from creating, writing or renaming (callers word their own OutputError).
    """
    return AtomicFile(path, suffix=suffix, mode=mode)


def atomic_dir(path: PathLike, *, suffix: str = ".part", mode: int = 0o777,
               check_existing: Callable[[Path], None] | None = None) -> AtomicDir:
    """Write the folder ``path`` all or nothing.

    ``with atomic_dir(path) as tmp:`` gives ``tmp``, an empty hidden folder ``.<name>.<random><suffix>`` beside
    ``path``; fill it. On a clean exit it gets ``mode`` less the umask and replaces ``path``: an existing target
    (folder, file or symlink) is handed to ``check_existing(path)`` first, which may raise to keep it, then moved
    aside and deleted once the new folder is in place. On any exception ``tmp`` is deleted and ``path`` is left
    as it was.

    Raises:
        OSError: unchanged, from creating, writing or renaming; whatever ``check_existing`` raises.
    """
    return AtomicDir(path, suffix=suffix, mode=mode, check_existing=check_existing)


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` all or nothing; returns ``path`` as a Path.

    Raises:
        OutputError: the file cannot be written (one line naming the path).
    """
    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            tmp.write_bytes(data)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err}; choose a writable output folder") from err
    return path


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` all or nothing, newlines as given (no ``\\r\\n`` translation).

    Raises:
        OutputError: the file cannot be written (one line naming the path).
    """
    return write_bytes_atomic(path, text.encode("utf-8"))


def _as_paths(paths: PathLike | Iterable[PathLike | None] | None) -> list[Path]:
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths if p is not None]


def refuse_input_overwrite(outputs: PathLike | Iterable[PathLike | None] | None,
                           inputs: PathLike | Iterable[PathLike | None] | None,
                           *, folders: PathLike | Iterable[PathLike | None] | None = None) -> None:
    """Stop before an output would destroy an input; call it before any work starts.

    ``outputs``: files and folders the command creates or *replaces whole* (a video, a PNG frame folder, a
    checkpoint, a split tree). ``folders``: folders the command writes *into*, file by file, without replacing
    them (a run folder, an ONNX export folder, a prepared dataset); such a folder may hold inputs (exporting
    beside the checkpoint is normal), so pass the files it will write among ``outputs`` as well. ``inputs``:
    everything the command reads. Each argument is one path or several (``None`` entries are skipped). Inputs
    that do not exist are ignored (their reader reports them). Symlinks and hard links are followed: ``-o
    link.mp4`` where ``link.mp4`` points at the driving video is the driving video.

    Raises:
        OutputError: an output is the same file (or folder) as an existing input; an output is an existing folder
            (replaced whole) that contains an input; a ``folders`` entry is an input, or lies inside an input
            folder (what the command writes would land among, and change, that input, e.g. a run folder inside
            the dataset it evaluates).
    """
    ins = [(p, Path(os.path.realpath(p))) for p in _as_paths(inputs) if os.path.exists(p)]
    for out in _as_paths(outputs):
        if not os.path.exists(out):
            continue  # nothing there yet (a dangling symlink included), so nothing to destroy
        out_real = Path(os.path.realpath(out))
        for given, real in ins:
            if os.path.samefile(out, given):
                raise OutputError(f"{out}: is the input {given}; choose another output path so the input is kept")
            if out_real.is_dir() and real.is_relative_to(out_real):
                raise OutputError(f"{out}: writing this folder would replace it, and it holds the input {given}; "
                                  f"choose another output folder")
    for folder in _as_paths(folders):
        # The folder may not exist yet: resolve it through its nearest existing ancestor (symlinks included).
        real_folder = Path(os.path.realpath(folder))
        for given, real in ins:
            if real_folder == real:
                raise OutputError(f"{folder}: is the input {given}; choose another output folder")
            if real.is_dir() and real_folder.is_relative_to(real):
                raise OutputError(f"{folder}: lies inside the input folder {given}, which writing it would "
                                  f"change; choose an output folder outside it")
