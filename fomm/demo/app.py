"""The Gradio app: ``build_app(...) -> gr.Blocks`` and ``launch(...)``.

Tab "Animate": source photo + driving video -> animated video (driving fps and audio) and a side-by-side preview
(source | driving with keypoints | result). Tab "Webcam": the browser's webcam drives the photo live.

Safety: jobs go through Gradio's queue (bounded size and concurrency), uploads are limited in size
(``max_file_size``) and re-checked in the handler with the video length, only files inside Gradio's upload folder or
the bundled examples are opened, each job works in its own temporary folder that is removed when it ends (the
results are first copied into Gradio's cache, which Gradio cleans with ``delete_cache``), and every user mistake
is shown as a one-line message while the server keeps serving.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from gradio.processing_utils import save_file_to_cache
from gradio.utils import get_upload_folder

from fomm.demo.examples import DRIVING_EXAMPLES, SOURCE_EXAMPLES, example_files, examples_dir
from fomm.demo.jobs import DemoLimits, JobOptions, auto_crop_available, check_input_path, check_source, run_job
from fomm.demo.models import ModelChoice, ModelPool, as_choices, shipped_choices
from fomm.demo.webcam import WebcamSession, fastest_device, on_device
from fomm.errors import FommError

log = logging.getLogger(__name__)

TITLE = "fomm: animate a photo with a driving video"
#: Gradio's own cache (uploads, example copies, results) is swept every hour of files older than an hour.
CACHE_SWEEP = (3600, 3600)


class _SourceImage(gr.Image):
    """``gr.Image`` whose preprocessing failures (a file that is not an image) become a readable message instead of
    Pillow's exception text with a server path in it."""

    is_template = True  # rendered by the stock Image component in the browser

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception:
            raise gr.Error("the source is not an image we can read: upload a PNG, JPEG, WebP, BMP or TIFF photo",
                           print_exception=False) from None


def _allowed_roots() -> list[Path]:
    return [Path(get_upload_folder()), examples_dir()]


def _ui_error(err: Exception) -> gr.Error:
    return gr.Error(str(err), print_exception=False)


def build_app(models: Iterable[ModelChoice] | Mapping[str, Any] | None = None, *, include_shipped: bool = True,
              limits: DemoLimits | None = None, device: str = "cpu", webcam_device: str | None = None
              ) -> gr.Blocks:
    """Build the demo.

    Args:
        models: extra entries for the model picker (after the shipped ones): :class:`ModelChoice` objects, or a
            mapping ``label -> LoadedModel | loader()`` (tests inject random-weight 64x64 models this way).
        include_shipped: offer the installed shipped models (:func:`fomm.pretrained.list_pretrained`).
        limits: upload/video/queue limits (default: ``DemoLimits()``).
        device: torch device for the animate tab's models.
        webcam_device: device for the webcam tab (default: :func:`fastest_device`).
    """
    limits = DemoLimits() if limits is None else limits
    choices = (shipped_choices(device) if include_shipped else []) + as_choices(models)
    pool = ModelPool(choices)
    labels = pool.labels
    live_device = webcam_device or fastest_device()
    crop_ok = auto_crop_available()
    sources = [str(p) for p in example_files(SOURCE_EXAMPLES)]
    drivings = [str(p) for p in example_files(DRIVING_EXAMPLES)]

    def animate(source: str | None, driving: str | None, model_label: str | None, motion: str, adapt: bool,
                best: bool, crop: bool,
                # Gradio's documented idiom: it injects a live tracker for a gr.Progress default; the default
                # object itself is never used, so building it once at definition time is harmless.
                progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008
                ) -> tuple[str, str, str]:
        try:
            roots = _allowed_roots()
            src = check_input_path(source, roots, "source image")
            drv = check_input_path(driving, roots, "driving video")
            progress(0.0, desc="loading the model")
            model = pool.get(model_label)
            options = JobOptions(relative=motion == "relative", adapt_movement_scale=adapt, find_best_frame=best,
                                 auto_crop=crop and crop_ok)
            with tempfile.TemporaryDirectory(prefix="fomm-demo-job-") as job_dir:
                result = run_job(model, src, drv, Path(job_dir), options, limits)
                # Copied out before the job folder goes; Gradio serves and sweeps its cache.
                video = save_file_to_cache(result.video, get_upload_folder())
                preview = save_file_to_cache(result.preview, get_upload_folder())
            return video, preview, result.summary
        except FommError as err:
            raise _ui_error(err) from None
        except gr.Error:
            raise
        except Exception as err:  # a bug: keep serving, show a short line, keep the traceback in the log
            log.exception("demo job failed")
            raise gr.Error(f"internal error ({type(err).__name__}); the server log has the details",
                           print_exception=False) from None

    def live(frame: np.ndarray | None, source: str | None, model_label: str | None,
             session: WebcamSession | None) -> tuple[np.ndarray | None, WebcamSession]:
        session = session or WebcamSession()
        if frame is None:
            return None, session
        try:
            src_path = check_input_path(source, _allowed_roots(), "source image")
            model = on_device(pool.get(model_label), live_device)
            if session.key is None or session.key[1] != str(src_path):
                session.source = check_source(src_path, limits)
            out = session.animate(model, str(model_label), session.source, str(src_path),
                                  np.array(frame[..., :3], dtype=np.uint8))  # Gradio hands read-only arrays
            return out, session
        except FommError as err:
            raise _ui_error(err) from None

    with gr.Blocks(title="fomm demo", delete_cache=CACHE_SWEEP) as app:
        gr.Markdown(f"## {TITLE}\nFirst Order Motion Model (Siarohin et al., NeurIPS 2019). Upload a photo and a "
                    f"driving video, or pick the examples below. Videos up to {limits.max_video_seconds:g} s and "
                    f"{limits.max_upload_mb:g} MB.")
        if not labels:
            gr.Markdown("**No model is configured.** Start the demo with `--config NAME --checkpoint PATH`, "
                        "`--models FILE` or `--random-weights`.", elem_id="no-models")
        with gr.Tab("Animate", id="animate"):
            with gr.Row():
                with gr.Column():
                    source_in = _SourceImage(label="Source photo", type="filepath", image_mode=None,
                                             sources=["upload", "clipboard"], value=sources[0] if sources else None,
                                             elem_id="source", height=280)
                    if sources:
                        gr.Examples([[s] for s in sources], inputs=[source_in], label="Example photos")
                with gr.Column():
                    driving_in = gr.Video(label="Driving video", sources=["upload"], include_audio=True,
                                          value=drivings[0] if drivings else None, elem_id="driving", height=280)
                    if drivings:
                        gr.Examples([[d] for d in drivings], inputs=[driving_in], label="Example driving videos")
                with gr.Column():
                    model_in = gr.Dropdown(labels, value=labels[0] if labels else None, label="Model",
                                           elem_id="model")
                    motion_in = gr.Radio(["relative", "absolute"], value="relative", label="Motion",
                                         info="relative: transfer the movement (different people); absolute: "
                                              "copy the pose (same person)")
                    adapt_in = gr.Checkbox(True, label="Adapt movement scale")
                    best_in = gr.Checkbox(False, label="Find best frame (face landmarks)")
                    crop_in = gr.Checkbox(False, label="Auto-crop the face", visible=crop_ok)
                    run_btn = gr.Button("Animate", variant="primary", elem_id="run")
            with gr.Row():
                result_out = gr.Video(label="Result (with the driving audio)", elem_id="result", height=320)
                preview_out = gr.Video(label="Preview: source | driving + keypoints | result", elem_id="preview",
                                       height=320)
            summary_out = gr.Textbox(label="Details", interactive=False, elem_id="summary")
            run_btn.click(animate, [source_in, driving_in, model_in, motion_in, adapt_in, best_in, crop_in],
                          [result_out, preview_out, summary_out], api_name="animate",
                          concurrency_limit=limits.concurrency, concurrency_id="animate")
        with gr.Tab("Webcam", id="webcam"):
            gr.Markdown(f"Your webcam drives the photo live (device: {live_device}). Hold the pose the photo shows "
                        f"when you start: the first frame is the reference.")
            state = gr.State(None)
            with gr.Row():
                live_source = _SourceImage(label="Source photo", type="filepath", image_mode=None,
                                           sources=["upload", "clipboard"], value=sources[0] if sources else None,
                                           elem_id="live-source", height=256)
                cam = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="numpy", elem_id="webcam",
                               height=256)
                live_out = gr.Image(label="Animated", type="numpy", elem_id="live-result", height=256,
                                    interactive=False)
            live_model = gr.Dropdown(labels, value=labels[0] if labels else None, label="Model",
                                     elem_id="live-model")
            cam.stream(live, [cam, live_source, live_model, state], [live_out, state], api_name="webcam",
                       stream_every=0.1, time_limit=limits.webcam_time_limit_s, concurrency_limit=limits.concurrency,
                       concurrency_id="webcam")
    app.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    app.fomm_limits = limits  # read by launch()
    return app


def launch(app: gr.Blocks | None = None, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True, **build_kwargs: Any) -> gr.Blocks:
    """Start the server (``block=False``: return at once, the server runs in a thread; ``app.close()`` stops it)."""
    app = app or build_app(**build_kwargs)
    limits: DemoLimits = getattr(app, "fomm_limits", DemoLimits())
    app.launch(server_name=host, server_port=port, share=share, show_error=True, quiet=not block,
               max_file_size=limits.max_upload_bytes, prevent_thread_lock=not block, footer_links=["api"],
               allowed_paths=[str(examples_dir())])
    return app


__all__ = ["build_app", "launch"]
