"""The Gradio app: ``build_app(...) -> gr.Blocks`` and ``launch(...)``.

Tab "Animate": source photo + driving video -> animated video (driving fps and audio), shown as soon as it is
written, then a side-by-side preview (source | driving | result with the keypoints that drove it). Its "Depth & 3D"
section (collapsed; nothing set by default) adds a parallax camera move, stereo 3D, depth of field, fog or a new
background, made from the photo's depth moved with the animation, and then also shows that depth as a grey video and
offers it for download (:class:`~fomm.demo.jobs.DepthSettings`). Tab "Webcam": the browser's webcam drives the
photo live.

Defaults that fit: every model in the picker says what it is for (faces / bodies / shapes) and its resolution, the
example galleries offer the examples of that subject, and the page starts on a face model when one is installed
(``fomm download vox-256``); when none is, a note says how to add one. Tried as a new user before this, the page
opened on a gallery of faces animated by the 64x64 full-body model, which returned a blurred 64x64 face with no word
about why.

Safety: jobs go through Gradio's queue (bounded size and concurrency), uploads are limited in size
(``max_file_size``) and re-checked in the handler with the video length and the photo's pixel count, every uploaded
image (photo, plate, webcam frame) is decoded by fomm's checked reader and never by Gradio, only files
inside Gradio's upload folder or the bundled examples are opened, each job works in its own temporary folder that is
removed when it ends (the results are first copied into Gradio's cache, which Gradio cleans with ``delete_cache``),
webcam frames go back to the browser inline (no file per frame: 45 -> 636 cached files in 90 s before), and every
user mistake is shown as a one-line message while the server keeps serving.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import io
import logging
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import gradio as gr
import numpy as np
from gradio.data_classes import ImageData
from gradio.processing_utils import save_file_to_cache
from gradio.utils import get_upload_folder
from PIL import Image

from fomm.demo.examples import DRIVING_EXAMPLES, SOURCE_EXAMPLES, example_files, examples_dir
from fomm.demo.jobs import (
    PARALLAX_CHOICES,
    STEREO_CHOICES,
    DemoLimits,
    DepthSettings,
    JobOptions,
    auto_crop_available,
    check_input_path,
    check_source,
    decode_limit,
    job_steps,
)
from fomm.demo.models import ModelChoice, ModelPool, as_choices, default_choice, shipped_choices
from fomm.demo.webcam import LiveOptions, WebcamSession, face_crop_available, fastest_device
from fomm.errors import FommError, InputError
from fomm.io.image import read_image

log = logging.getLogger(__name__)

TITLE = "fomm: animate a photo with a driving video"
#: Gradio's own cache (uploads, example copies, results) is swept every hour of files older than an hour.
CACHE_SWEEP = (3600, 3600)
#: Webcam sessions kept at most (one per browser tab; the least recently streaming one goes first).
MAX_WEBCAM_SESSIONS = 64
FACE_NOTE = ("**No face model is installed.** The models here are for {subjects}. For faces, run "
             "`fomm download vox-256` and restart the demo, or start it with "
             "`fomm demo --config vox-256 --checkpoint vox-cpk.pth.tar`.")


class _SourceImage(gr.Image):
    """``gr.Image`` that hands the handler the uploaded file's path without decoding it: the handler checks the
    photo (size, pixel count) itself and words its own messages. Gradio's decoding said "not an image we can read"
    for a valid 20000x20000 PNG (Pillow's decompression-bomb limit) and for an empty file alike."""

    is_template = True  # rendered by the stock Image component in the browser
    what = "source photo"  # what the messages call it (the background plate uses this class too)

    def preprocess(self, payload: Any) -> Any:
        if payload is None:
            return None
        path = getattr(payload, "path", None)
        if not path:
            raise gr.Error(f"the {self.what} did not arrive; upload it again", print_exception=False)
        return str(path)


class _WebcamImage(gr.Image):
    """The streaming webcam input: each frame Gradio stored in its upload folder is read and deleted at once, so
    streaming leaves no file per frame behind.

    The frame is decoded by fomm's checked reader (:func:`fomm.io.image.read_image`), not by Gradio: a "webcam
    frame" is whatever the browser (or a script calling the endpoint) sends, and Gradio's decoder would open a
    decompression bomb at any size. Above ``max_pixels`` (from the header, before decoding) or unreadable, the
    frame is refused with one line, as the handler refuses any other bad frame, and the server keeps serving."""

    is_template = True
    max_pixels: int | None = None  # set by build_app from its DemoLimits (None: fomm's own limit)

    def preprocess(self, payload: Any) -> Any:
        if payload is None:
            return None
        url = getattr(payload, "url", None) or ""
        path = getattr(payload, "path", None)
        try:
            if url.startswith("data:"):
                return read_image(_data_url_bytes(url), min_size=1, max_pixels=self.max_pixels, name="webcam frame")
            if not path:
                raise InputError("the webcam frame did not arrive")
            return read_image(path, min_size=1, max_pixels=self.max_pixels, name="webcam frame")
        except InputError as err:
            raise _ui_error(err) from None
        finally:
            if path:
                p = Path(path)
                if Path(get_upload_folder()).resolve() in p.resolve().parents:
                    p.unlink(missing_ok=True)


def _data_url_bytes(url: str) -> bytes:
    """The bytes of a ``data:[type][;base64],DATA`` URL (what a browser streams a webcam frame as)."""
    head, sep, data = url.partition(",")
    if not sep:
        raise InputError("the webcam frame is not a data URL")
    if not head.endswith(";base64"):
        return unquote_to_bytes(data)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("the webcam frame is not valid base64") from None


class _LiveImage(gr.Image):
    """An output image sent to the browser inline as a JPEG data URL: Gradio's default writes every streamed frame
    to a ``.webp`` file in its cache."""

    is_template = True

    def postprocess(self, value: Any) -> Any:
        if not isinstance(value, np.ndarray):
            return super().postprocess(value)
        buf = io.BytesIO()
        Image.fromarray(value).save(buf, format="JPEG", quality=85)
        return ImageData(url="data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))


def _allowed_roots() -> list[Path]:
    return [Path(get_upload_folder()), examples_dir()]


#: Command-line wording in the library's messages, and what the page calls the same control.
AUTO_CROP_LABEL = "Auto-crop the face"
_CLI_TO_PAGE = (("run without --auto-crop", f"untick '{AUTO_CROP_LABEL}'"),)


def ui_message(err: Exception) -> str:
    """The one-line message for the page: the library's, with command-line flags it names replaced by the page's
    own controls (the no-face message says ``run without --auto-crop``, which means nothing on the page)."""
    text = str(err)
    for cli, page in _CLI_TO_PAGE:
        text = text.replace(cli, page)
    return text


def _ui_error(err: Exception) -> gr.Error:
    return gr.Error(ui_message(err), print_exception=False)


def _plate_path(plate: str | None, roots: list[Path]) -> Path | None:
    """The background plate upload, held to the same rule as the photo (only uploads and bundled files)."""
    return check_input_path(plate, roots, "background plate") if plate else None


def _depth_files(step: Any) -> tuple[str | None, str | None]:
    """The job's depth preview and depth pass zip, copied into Gradio's cache (the job folder goes), or Nones."""
    if step.depth_zip is None:
        return None, None
    folder = get_upload_folder()
    return save_file_to_cache(step.depth_preview, folder), save_file_to_cache(step.depth_zip, folder)



def _is_example(path: str | None) -> bool:
    """Whether ``path`` is empty or a bundled example (as such, or the copy Gradio's cache holds of one: same file
    name and size), i.e. something the page may replace without losing the user's upload."""
    if not path:
        return True
    p = Path(path)
    bundled = examples_dir() / p.name
    try:
        return bundled.is_file() and p.stat().st_size == bundled.stat().st_size
    except OSError:
        return True


def _thread_safe_progress(progress: Any):
    """``report(fraction, stage)`` callable from any thread: Gradio's progress finds its job through context
    variables, which the pipeline's writer thread (where frames are counted) does not inherit."""
    ctx = contextvars.copy_context()
    lock = threading.Lock()

    def report(fraction: float, stage: str) -> None:
        with lock:  # a Context may be entered by one thread at a time
            ctx.run(progress, float(min(max(fraction, 0.0), 1.0)), desc=stage)

    return report


class _Sessions:
    """One :class:`WebcamSession` per browser tab (Gradio's session hash), at most ``limit`` of them."""

    def __init__(self, limit: int = MAX_WEBCAM_SESSIONS) -> None:
        self.limit = limit
        self._sessions: dict[str, WebcamSession] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> WebcamSession:
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                if len(self._sessions) >= self.limit:
                    oldest = min(self._sessions, key=lambda k: self._sessions[k].last_frame or 0.0)
                    del self._sessions[oldest]
                session = self._sessions[key] = WebcamSession()
            return session

    def drop(self, key: str) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    def __len__(self) -> int:
        return len(self._sessions)


def _session_key(request: gr.Request | None) -> str:
    return str(getattr(request, "session_hash", None) or "default")


def build_app(models: Iterable[ModelChoice] | Mapping[str, Any] | None = None, *, include_shipped: bool = True,
              limits: DemoLimits | None = None, device: str = "cpu", webcam_device: str | None = None
              ) -> gr.Blocks:
    """Build the demo.

    Args:
        models: extra entries for the model picker (after the shipped ones): :class:`ModelChoice` objects, or a
            mapping ``label -> LoadedModel | loader() | ModelChoice`` (tests inject random-weight 64x64 models).
        include_shipped: offer the installed named models (:func:`fomm.pretrained.list_pretrained`: the shipped
            ones and those ``fomm download`` put in the cache).
        limits: upload/video/photo/queue limits (default: ``DemoLimits()``).
        device: torch device for the animate tab's models.
        webcam_device: device for the webcam tab (default: :func:`fastest_device`).
    """
    limits = DemoLimits() if limits is None else limits
    choices = (shipped_choices(device) if include_shipped else []) + as_choices(models)
    pool = ModelPool(choices)
    labels = pool.labels
    start = default_choice(pool.choices)
    live_device = webcam_device or fastest_device()
    crop_ok = auto_crop_available()
    face_crop_ok = face_crop_available()
    sessions = _Sessions()

    def examples_for(label: str | None) -> tuple[list[str], list[str]]:
        choice = pool.choice(label)
        subject = choice.subject if choice else None
        return ([str(p) for p in example_files(SOURCE_EXAMPLES, subject)],
                [str(p) for p in example_files(DRIVING_EXAMPLES, subject)])

    def model_info(label: str | None) -> str:
        choice = pool.choice(label)
        return choice.summary if choice else ""

    start_label = start.label if start else None
    sources, drivings = examples_for(start_label)

    def pick_model(label: str | None, source: str | None, driving: str | None):
        """The picker changed: show what the model is for, offer its examples, and swap bundled examples of another
        subject for its own (an upload stays)."""
        srcs, drvs = examples_for(label)
        names = {Path(x).name for x in srcs + drvs}
        new_source = srcs[0] if srcs and _is_example(source) and Path(source or "").name not in names else gr.skip()
        new_driving = drvs[0] if drvs and _is_example(driving) and Path(driving or "").name not in names else gr.skip()
        return (model_info(label), gr.Dataset(samples=[[s] for s in srcs]), gr.Dataset(samples=[[d] for d in drvs]),
                new_source, new_driving)

    def animate(source: str | None, driving: str | None, model_label: str | None, motion: str, adapt: bool,
                best: bool, crop: bool, parallax: str = "none", parallax_amount: float = 0.02, stereo: str = "none",
                divergence: float = 2.0, dof: bool = False, focus: float = 0.8, aperture: float = 2.0,
                fog_density: float = 0.0, fog_colour: str = "#ffffff", plate: str | None = None,
                plate_depth: float = 0.0, depth_pass: bool = False,
                # Gradio's documented idiom: it injects a live tracker for a gr.Progress default; the default
                # object itself is never used, so building it once at definition time is harmless.
                progress: gr.Progress = gr.Progress(),  # noqa: B008
                ) -> Iterator[tuple[Any, ...]]:
        report = _thread_safe_progress(progress)
        try:
            roots = _allowed_roots()
            src = check_input_path(source, roots, "source image")
            drv = check_input_path(driving, roots, "driving video")
            depth = DepthSettings(parallax=parallax or "none", parallax_amount=parallax_amount,
                                  stereo=stereo or "none", divergence=divergence, dof=dof, focus=focus,
                                  aperture=aperture, fog_density=fog_density, fog_colour=fog_colour or "#ffffff",
                                  plate=_plate_path(plate, roots), plate_depth=plate_depth, depth_pass=depth_pass)
            report(0.0, "loading the model")
            model = pool.get(model_label)
            options = JobOptions(relative=motion == "relative", adapt_movement_scale=adapt, find_best_frame=best,
                                 auto_crop=crop and crop_ok)
            with tempfile.TemporaryDirectory(prefix="fomm-demo-job-") as job_dir:
                video = depth_files = None
                for step in job_steps(model, src, drv, Path(job_dir), options, limits, report, depth):
                    # Copied out before the job folder goes; Gradio serves and sweeps its cache.
                    video = video or save_file_to_cache(step.video, get_upload_folder())
                    preview = save_file_to_cache(step.preview, get_upload_folder()) if step.preview else None
                    depth_files = depth_files or _depth_files(step)
                    yield video, preview, step.summary, *depth_files
        except FommError as err:
            raise _ui_error(err) from None
        except gr.Error:
            raise
        except Exception as err:  # a bug: keep serving, show a short line, keep the traceback in the log
            log.exception("demo job failed")
            raise gr.Error(f"internal error ({type(err).__name__}); the server log has the details",
                           print_exception=False) from None

    def live(frame: np.ndarray | None, source: str | None, model_label: str | None, motion: str, face_crop: bool,
             overlay: bool, request: gr.Request) -> Any:
        session = sessions.get(_session_key(request))
        if frame is None:
            return gr.skip()
        if session.over_limit(limits.webcam_time_limit_s):
            if not session.told_expired:  # once; then the frames are dropped quietly until the next start
                session.told_expired = True
                raise gr.Error(f"the webcam session reached its {limits.webcam_time_limit_s} s limit: press Stop, "
                               f"then Record to start again", print_exception=False)
            return gr.skip()
        try:
            src_path = check_input_path(source, _allowed_roots(), "source image")
            model = pool.get_on(model_label, live_device)
            if session.source_key != str(src_path):
                session.source = check_source(src_path, limits)
                session.source_key = str(src_path)
            options = LiveOptions(relative=motion == "relative", face_crop=face_crop and face_crop_ok,
                                  overlay=overlay)
            return session.animate(model, str(model_label), session.source, str(src_path),
                                   np.array(frame[..., :3], dtype=np.uint8), options=options)
        except FommError as err:
            raise _ui_error(err) from None
        except Exception as err:  # a bug: one line, not the raw torch message, and the server keeps serving
            log.exception("webcam frame failed")
            raise gr.Error(f"internal error ({type(err).__name__}); the server log has the details",
                           print_exception=False) from None

    def reset_reference(request: gr.Request) -> None:
        sessions.get(_session_key(request)).reset()

    with gr.Blocks(title="fomm demo", delete_cache=CACHE_SWEEP) as app:
        gr.Markdown(f"## {TITLE}\nFirst Order Motion Model (Siarohin et al., NeurIPS 2019). Upload a photo and a "
                    f"driving video, or pick the examples below. Videos up to {limits.max_video_seconds:g} s and "
                    f"{limits.max_upload_mb:g} MB.")
        if not labels:
            gr.Markdown("**No model is configured.** Start the demo with `--config NAME --checkpoint PATH`, "
                        "`--models FILE` or `--random-weights`.", elem_id="no-models")
        elif not any(c.subject == "faces" for c in pool.choices):
            subjects = sorted({c.subject for c in pool.choices if c.subject}) or ["other subjects"]
            gr.Markdown(FACE_NOTE.format(subjects=" and ".join(subjects)), elem_id="face-note")
        with gr.Tab("Animate", id="animate"):
            with gr.Row():
                with gr.Column():
                    source_in = _SourceImage(label="Source photo", type="filepath", image_mode=None,
                                             sources=["upload", "clipboard"], value=sources[0] if sources else None,
                                             elem_id="source", height=280)
                    source_examples = gr.Dataset(components=[source_in], samples=[[s] for s in sources],
                                                 label="Example photos", elem_id="source-examples")
                with gr.Column():
                    driving_in = gr.Video(label="Driving video", sources=["upload"], include_audio=True,
                                          value=drivings[0] if drivings else None, elem_id="driving", height=280)
                    driving_examples = gr.Dataset(components=[driving_in], samples=[[d] for d in drivings],
                                                  label="Example driving videos", elem_id="driving-examples")
                with gr.Column():
                    model_in = gr.Dropdown(labels, value=start_label, label="Model", elem_id="model")
                    model_md = gr.Markdown(model_info(start_label), elem_id="model-info")
                    motion_in = gr.Radio(["relative", "absolute"], value="relative", label="Motion",
                                         info="relative: transfer the movement (different people); absolute: "
                                              "copy the pose (same person)")
                    adapt_in = gr.Checkbox(True, label="Adapt movement scale")
                    best_in = gr.Checkbox(False, label="Find best frame (face landmarks)")
                    crop_in = gr.Checkbox(False, label=AUTO_CROP_LABEL, visible=crop_ok)
                    run_btn = gr.Button("Animate", variant="primary", elem_id="run")
            with gr.Accordion("Depth & 3D", open=False, elem_id="depth3d"):
                gr.Markdown("Effects made from the photo's depth, moved with the animation (estimated offline; "
                            "Depth-Anything when its weights are installed). Any of them, or the depth pass box, also "
                            "shows the depth (near = white) and offers it for download: 16-bit PNG frames and "
                            "depth.json, ready for `fomm composite --depth`. They run in this order: background, "
                            "fog, depth of field, parallax, stereo.")
                with gr.Row():
                    parallax_in = gr.Radio(list(PARALLAX_CHOICES), value="none", label="Parallax camera move",
                                           elem_id="parallax")
                    amount_in = gr.Slider(0.0, 0.25, value=0.02, step=0.005, label="Parallax amount",
                                          info="fraction of the width", elem_id="parallax-amount")
                with gr.Row():
                    stereo_in = gr.Radio(list(STEREO_CHOICES), value="none", label="Stereo 3D",
                                         info="sbs/cross/tb are twice as wide/tall; hsbs/htb squeeze both eyes into "
                                              "one frame; anaglyph: red-cyan glasses", elem_id="stereo")
                    divergence_in = gr.Slider(0.0, 10.0, value=2.0, step=0.1, label="Divergence",
                                              info="disparity between the eyes, percent of the width",
                                              elem_id="divergence")
                with gr.Row():
                    dof_in = gr.Checkbox(False, label="Depth of field", elem_id="dof")
                    focus_in = gr.Slider(0.0, 1.0, value=0.8, step=0.01, label="Focus",
                                         info="depth in focus: 0 far, 1 near", elem_id="focus")
                    aperture_in = gr.Slider(0.0, 10.0, value=2.0, step=0.1, label="Aperture",
                                            info="blur, percent of the width per unit of depth", elem_id="aperture")
                with gr.Row():
                    fog_in = gr.Slider(0.0, 50.0, value=0.0, step=0.5, label="Fog density", info="0: no fog",
                                       elem_id="fog")
                    fog_colour_in = gr.ColorPicker("#ffffff", label="Fog colour", elem_id="fog-colour")
                with gr.Row():
                    plate_in = _SourceImage(label="Background plate (optional)", type="filepath", image_mode=None,
                                            sources=["upload", "clipboard"], elem_id="plate", height=160)
                    plate_in.what = "background plate"
                    with gr.Column():
                        plate_depth_in = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Plate depth",
                                                   info="where the plate sits in a parallax move: 0 far",
                                                   elem_id="plate-depth")
                        depth_pass_in = gr.Checkbox(False, label="Depth pass (preview and download) without effects",
                                                    elem_id="depth-pass-box")
            with gr.Row():
                # The summary says whether the driving audio came along (the label used to claim it always did).
                result_out = gr.Video(label="Result", elem_id="result", height=320)
                preview_out = gr.Video(label="Preview: source | driving | result with the keypoints that drove it",
                                       elem_id="preview", height=320)
            # Hidden until a job makes a depth pass, so the default page looks as it did. The endpoint returns plain
            # files (None without a depth pass) and the row follows them, which keeps the API's outputs simple.
            with gr.Row(visible=False, elem_id="depth-row") as depth_row:
                depth_out = gr.Video(label="Depth (near = white)", elem_id="depth-preview", height=320)
                depth_zip_out = gr.File(label="Depth pass: 16-bit PNG frames + depth.json", elem_id="depth-pass")
            summary_out = gr.Textbox(label="Details", interactive=False, elem_id="summary")
            source_examples.click(lambda sample: sample[0], [source_examples], [source_in], queue=False,
                                  api_visibility="private")
            driving_examples.click(lambda sample: sample[0], [driving_examples], [driving_in], queue=False,
                                   api_visibility="private")
            depth_zip_out.change(lambda z: gr.Row(visible=bool(z)), [depth_zip_out], [depth_row], queue=False,
                                 api_visibility="private")
            model_in.change(pick_model, [model_in, source_in, driving_in],
                            [model_md, source_examples, driving_examples, source_in, driving_in], queue=False,
                            api_visibility="private")
            run_btn.click(animate, [source_in, driving_in, model_in, motion_in, adapt_in, best_in, crop_in,
                                    parallax_in, amount_in, stereo_in, divergence_in, dof_in, focus_in, aperture_in,
                                    fog_in, fog_colour_in, plate_in, plate_depth_in, depth_pass_in],
                          [result_out, preview_out, summary_out, depth_out, depth_zip_out], api_name="animate",
                          concurrency_limit=limits.concurrency, concurrency_id="animate")
        with gr.Tab("Webcam", id="webcam"):
            gr.Markdown(f"Your webcam drives the photo live (device: {live_device}). Hold the pose the photo shows "
                        f"when you press Record: the first frame is the reference (again after each start, or with "
                        f"the button below). Up to {limits.webcam_time_limit_s} s per stream.")
            with gr.Row():
                live_source = _SourceImage(label="Source photo", type="filepath", image_mode=None,
                                           sources=["upload", "clipboard"], value=sources[0] if sources else None,
                                           elem_id="live-source", height=256)
                cam = _WebcamImage(label="Webcam", sources=["webcam"], streaming=True, type="numpy",
                                   elem_id="webcam", height=256)
                cam.max_pixels = decode_limit(limits)
                live_out = _LiveImage(label="Animated", type="numpy", elem_id="live-result", height=256,
                                      interactive=False)
            with gr.Row():
                live_model = gr.Dropdown(labels, value=start_label, label="Model", elem_id="live-model")
                live_motion = gr.Radio(["relative", "absolute"], value="relative", label="Motion",
                                       elem_id="live-motion")
                live_crop = gr.Checkbox(False, label="Crop the webcam to the face", visible=face_crop_ok,
                                        elem_id="live-crop")
                live_overlay = gr.Checkbox(False, label="Show the keypoints", elem_id="live-overlay")
                reset_btn = gr.Button("Reset reference", elem_id="live-reset")
            cam.stream(live, [cam, live_source, live_model, live_motion, live_crop, live_overlay], [live_out],
                       api_name="webcam", stream_every=0.1, time_limit=limits.webcam_time_limit_s,
                       concurrency_limit=limits.webcam_streams, concurrency_id="webcam")
            reset_btn.click(reset_reference, None, None, queue=False, api_visibility="private")

        def forget_session(request: gr.Request) -> None:
            sessions.drop(_session_key(request))

        app.unload(forget_session)
    app.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    app.fomm_limits = limits  # read by launch()
    app.fomm_pool = pool  # for tests and callers that want the models
    app.fomm_sessions = sessions
    app.fomm_live = live  # the webcam handler, for tests (gradio_client cannot call streaming endpoints)
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
