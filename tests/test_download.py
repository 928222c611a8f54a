"""`fomm download` against an HTTP server on 127.0.0.1 serving fixture checkpoints (no internet needed).

The fixture is a random-weight checkpoint of a bundled config in the authors' container (generator, kp_detector,
discriminator, epoch), registered under a test name whose remote file the server serves; the 64x64 ``actions-64``
config keeps it at ~14 MB. One slow test does the same for the real ``vox-256`` entry (a 230 MB random file).
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from fomm.api import load_model
from fomm.checkpoint import save_checkpoint
from fomm.cli.main import main as cli
from fomm.download import DownloadError, DownloadOptions, download, partial_path
from fomm.errors import InputError
from fomm.pretrained import REGISTRY, PretrainedModel, cache_dir, get_pretrained, load_pretrained

NAME = "fixture-64"
REMOTE = "fixture-cpk.pth.tar"
REPO_ASSETS = Path(__file__).resolve().parents[1] / "fomm" / "assets" / "examples"


def part_size(data: bytes) -> int:
    return len(data) // 2  # what the test server sends before it drops the connection


def _checkpoint(config: str, path: Path) -> bytes:
    model = load_model(config, None, with_discriminator=True)
    save_checkpoint(path, {"generator": model.generator, "kp_detector": model.kp_detector,
                           "discriminator": model.discriminator}, epoch=99)
    return path.read_bytes()


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory) -> bytes:
    return _checkpoint("actions-64", tmp_path_factory.mktemp("ckpt") / "good.pth.tar")


class Server:
    """A threaded HTTP server: ``files`` maps a path to bytes; ``cut_first`` closes the first GET half way through
    the body; ``ignore_range`` answers every GET with the whole file (200); ``requests`` logs (path, Range)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_first = False
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and not outer.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_first:
                    outer.cut_first = False
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # the server drops the connection mid-body
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    """An empty cache under tmp_path, downloads pointed at the test server, and the fixture model registered."""
    monkeypatch.setenv("FOMM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FOMM_DOWNLOAD_BASE", server.base + "/releases")
    entry = PretrainedModel(NAME, "fomm", "actions-64", REMOTE, "test", "fixture", subject="faces", resolution=64,
                            remote=REMOTE)
    monkeypatch.setitem(REGISTRY, NAME, entry)
    return entry


def _cache_files() -> list[Path]:
    return sorted(p for p in cache_dir().rglob("*")) if cache_dir().exists() else []


def test_full_download_is_checked_and_found_by_pretrained(env, server, good_bytes, capsys):
    server.files["/releases/" + REMOTE] = good_bytes
    with pytest.raises(InputError, match=f"`fomm download {NAME}`"):
        get_pretrained(NAME)  # missing: says the one command that fetches it
    assert cli(["download", NAME, "-q"]) == 0
    assert env.path.read_bytes() == good_bytes and _cache_files() == [env.path]
    assert server.requests == [("/releases/" + REMOTE, None)]
    # a second run finds it in the cache and transfers nothing
    assert cli(["download", NAME]) == 0
    assert "already in the cache" in capsys.readouterr().err and len(server.requests) == 1
    model = load_pretrained(NAME)
    assert model.epoch == 99 and model.meta["pretrained"] == NAME


def test_pretrained_animates_from_the_cache(env, server, good_bytes, tmp_path):
    server.files["/releases/" + REMOTE] = good_bytes
    download(NAME, DownloadOptions(progress=False))
    out = tmp_path / "out/"
    assert cli(["animate", "--pretrained", NAME, "--source", str(REPO_ASSETS / "body-source.png"),
                "--driving", str(REPO_ASSETS / "body-driving.mp4"), "-o", str(out) + "/", "-q"]) == 0
    assert len(list(out.glob("*.png"))) == 55


def test_resume_after_an_interrupted_run(env, server, good_bytes):
    server.files["/releases/" + REMOTE] = good_bytes
    server.cut_first = True
    with pytest.raises(DownloadError, match="again to resume"):
        download(NAME, DownloadOptions(retries=0, progress=False))
    part = partial_path(env.path)
    assert part.is_file() and 0 < part.stat().st_size < len(good_bytes) and not env.path.exists()
    result = download(NAME, DownloadOptions(retries=0, progress=False))
    assert env.path.read_bytes() == good_bytes and not part.exists()
    assert server.requests[-1][1] == f"bytes={result.resumed_from}-" and result.resumed_from == part_size(good_bytes)
    assert result.fetched == len(good_bytes) - result.resumed_from


def test_interrupted_transfer_is_resumed_within_one_run(env, server, good_bytes):
    server.files["/releases/" + REMOTE] = good_bytes
    server.cut_first = True
    result = download(NAME, DownloadOptions(progress=False))
    assert env.path.read_bytes() == good_bytes
    assert [r for _, r in server.requests] == [None, f"bytes={part_size(good_bytes)}-"]
    assert result.resumed_from == 0 and result.fetched == len(good_bytes)


def test_a_server_that_ignores_the_range_is_followed_from_byte_zero(env, server, good_bytes):
    server.files["/releases/" + REMOTE] = good_bytes
    server.cut_first = server.ignore_range = True
    download(NAME, DownloadOptions(progress=False))
    assert env.path.read_bytes() == good_bytes and not partial_path(env.path).exists()


@pytest.mark.parametrize("kind", ["corrupt", "html", "wrong-config", "sha256"])
def test_a_bad_file_is_refused_and_nothing_is_left(env, server, good_bytes, tmp_path, monkeypatch, capsys, kind):
    if kind == "corrupt":
        data = bytearray(good_bytes)
        data[len(data) // 3: len(data) // 3 + 4096] = b"\0" * 4096  # damaged in transit, same length
        data = bytes(data[: len(data) - 100])
    elif kind == "html":
        data = b"<html><body>Sign in to continue</body></html>"
    elif kind == "wrong-config":
        data = _checkpoint("shapes-64", tmp_path / "shapes.pth.tar")  # another config's weights
    else:
        data = good_bytes
        monkeypatch.setitem(REGISTRY, NAME, PretrainedModel(
            NAME, "fomm", "actions-64", REMOTE, "test", "fixture", remote=REMOTE, sha256="0" * 64))
    server.files["/releases/" + REMOTE] = bytes(data)
    assert cli(["download", NAME, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fomm: error:") and "deleted" in err[0], err
    if kind == "wrong-config":
        assert "does not fit" in err[0] and "shapes-64" in err[0]  # and which config it does fit
    assert _cache_files() == []


def test_http_404_is_one_line_and_leaves_nothing(env, server, capsys):
    assert cli(["download", NAME, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HTTP 404" in err[0] and err[0].startswith("fomm: error:")
    assert _cache_files() == []


def test_offline_is_one_line(env, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli(["download", NAME, "--url", f"http://127.0.0.1:{port}/{REMOTE}", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach 127.0.0.1" in err[0]
    assert _cache_files() == []


def test_url_override_and_bad_names(env, server, good_bytes, capsys):
    server.files["/mirror/any-name.bin"] = good_bytes
    assert cli(["download", NAME, "--url", server.base + "/mirror/any-name.bin", "-q"]) == 0
    assert env.path.read_bytes() == good_bytes
    for argv, what in ((["download", "vox-999"], "unknown model"), (["download", "actions-64"], "ships with fomm"),
                       (["download", NAME, "--force", "--url", "file:///etc/passwd"], "not an http(s) URL"),
                       (["download"], "name the model")):
        assert cli(argv) == 2
        assert what in capsys.readouterr().err


def test_missing_released_model_says_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FOMM_HOME", str(tmp_path / "empty"))
    assert cli(["animate", "--pretrained", "vox", "--example", "-o", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`fomm download vox-256`" in err[0]
    assert cli(["download", "--list"]) == 0
    assert "fomm download vox-256" in capsys.readouterr().out


@pytest.mark.slow
def test_the_vox_entry_downloads_a_vox_256_checkpoint(tmp_path, monkeypatch, server):
    """The real registry entry end to end: file name, config and structure check of vox-256 (random weights)."""
    data = _checkpoint("vox-256", tmp_path / "vox.pth.tar")
    server.files["/releases/vox-cpk.pth.tar"] = data
    monkeypatch.setenv("FOMM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FOMM_DOWNLOAD_BASE", server.base + "/releases/")
    assert cli(["download", "vox", "-q"]) == 0
    entry = get_pretrained("vox-256")
    assert hashlib.sha256(entry.path.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert load_pretrained("vox-256").image_size == (256, 256)

