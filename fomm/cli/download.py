"""``fomm download NAME``: fetch one of the authors' released checkpoints into the cache (see :mod:`fomm.download`)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch a released checkpoint (vox-256, taichi-256, ...) into the cache",
                       description="Download one of the authors' released checkpoints into $FOMM_HOME/checkpoints "
                                   "(default ~/.cache/fomm/checkpoints), resuming a partial download, and keep it only "
                                   "after it loads into its bundled config. Then `fomm animate --pretrained NAME` and "
                                   "the demo use it. `fomm download --list` shows the names.")
    p.add_argument("name", nargs="?", metavar="NAME", help="model name, e.g. vox-256 (or vox)")
    p.add_argument("--list", action="store_true", help="list the named models and whether each is installed")
    p.add_argument("--url", help="fetch the file from this URL instead (a mirror); it is checked all the same")
    p.add_argument("--force", action="store_true", help="download again even when the cache holds the file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def _list() -> int:
    from fomm.pretrained import REGISTRY, cache_dir

    print(f"cache: {cache_dir()}")
    for entry in REGISTRY.values():
        if entry.available:
            state = "installed" if not entry.downloadable else "downloaded"
        else:
            state = f"run `{entry.download_command}`" if entry.downloadable else "missing"
        print(f"  {entry.name:22s} {entry.subject:7s} {entry.resolution:4d}px  {state}")
    return 0


def main(args: argparse.Namespace) -> int:
    from fomm.download import DownloadOptions, download
    from fomm.errors import FommError

    if args.list:
        if args.name:
            raise FommError("--list takes no NAME")
        return _list()
    if not args.name:
        raise FommError("name the model to download, e.g. `fomm download vox-256` (`fomm download --list` shows all)")
    result = download(args.name, DownloadOptions(url=args.url, force=args.force, progress=not args.quiet))
    mb = result.size / 2 ** 20
    if result.cached:
        print(f"{result.name} is already in the cache: {result.path} ({mb:.1f} MB)", file=sys.stderr)
    else:
        resumed = f", resumed after {result.resumed_from / 2 ** 20:.1f} MB" if result.resumed_from else ""
        print(f"saved {result.name} to {result.path} ({mb:.1f} MB{resumed}); use it with --pretrained {result.name}",
              file=sys.stderr if args.quiet else sys.stdout)
    return 0
