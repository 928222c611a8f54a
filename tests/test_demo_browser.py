"""The demo driven in headless Chromium: upload a photo and a video, wait for the result; webcam tab returns frames.

Needs Debian's ``chromium`` and the ``playwright`` package (no Playwright browser download: ``executable_path``).
The webcam is Chromium's fake capture device fed with a Y4M made here from a shared face video. A screenshot is
saved in the test's tmp folder, and to ``docs/demo.png`` when ``FOMM_DEMO_SCREENSHOT=1``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import fomm
from fomm.assets import example_path
from fomm.io.reading import iter_frames, probe_video

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytest.importorskip("gradio", reason="the demo needs gradio: pip install 'fomm[demo]'")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser test needs playwright: pip install playwright")
if CHROMIUM is None:
    pytest.skip("the browser test needs Chromium: apt-get install chromium", allow_module_level=True)


def write_y4m(video: Path, out: Path, frames: int = 50, size: int = 320) -> Path:
    """Y4M (YUV 4:2:0) of the first ``frames`` frames of ``video``, ``size`` x ``size``: Chromium's fake webcam."""
    import av

    fps = probe_video(video).fps_fraction
    with out.open("wb") as f:
        f.write(f"YUV4MPEG2 W{size} H{size} F{fps.numerator}:{fps.denominator} Ip A1:1 C420jpeg\n".encode())
        for rgb in iter_frames(video, size=(size, size), max_frames=frames):
            yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            f.write(b"FRAME\n" + np.ascontiguousarray(yuv.to_ndarray()).tobytes())
    return out


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, data_dir):
    from fomm.demo import build_app, launch

    app = build_app({"actions-64 (random)": fomm.load_model("actions-64")}, include_shipped=False)
    launch(app, block=False)
    cam = write_y4m(sorted((data_dir / "faces/liveportrait/driving").glob("*.mp4"))[0],
                    tmp_path_factory.mktemp("cam") / "face.y4m")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={cam}"])
        context = browser.new_context(viewport={"width": 1400, "height": 1100}, permissions=["camera"])
        page = context.new_page()
        page.goto(app.local_url)
        yield page
        browser.close()
    app.close()


def _short_clip(path: Path) -> Path:
    from fomm.io.writing import VideoWriter

    with VideoWriter(path, 25, audio_from=None) as w:
        for frame in iter_frames(example_path("driving-man.mp4"), size=(128, 128), max_frames=20):
            w.write(frame)
    return path


def test_upload_animate_and_webcam(page_url, tmp_path):
    page = page_url
    page.set_input_files("#source input[type=file]", str(example_path("photo.jpg")))
    page.wait_for_selector("#source img", timeout=20_000)
    page.click("#driving button[aria-label='Clear']")  # the app opens with an example video loaded
    page.set_input_files("#driving input[type=file]", str(_short_clip(tmp_path / "clip.mp4")))
    page.wait_for_selector("#driving video", timeout=20_000)
    page.click("#run")
    page.wait_for_selector("#result video", timeout=120_000)
    page.wait_for_function("document.querySelector('#summary textarea').value.includes('frames')", timeout=60_000)
    assert page.input_value("#summary textarea") == "20 frames, 64x64, 25 fps, no audio in the driving video"
    assert page.locator("#preview video").count() == 1
    shot = tmp_path / "demo.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("FOMM_DEMO_SCREENSHOT"):
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "docs" / "demo.png")

    page.get_by_role("tab", name="Webcam").click()
    page.wait_for_selector("#webcam", timeout=10_000)
    page.locator("#webcam").get_by_text("Click to Access Webcam").click()
    page.locator("#webcam button", has_text="Record").click(timeout=20_000)  # starts streaming
    page.wait_for_selector("#live-result img", timeout=60_000)
    src = page.get_attribute("#live-result img", "src")
    assert src
    page.screenshot(path=str(tmp_path / "webcam.png"), full_page=True)
