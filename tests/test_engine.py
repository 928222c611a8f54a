"""The animation engine's seams: per-frame outputs (FrameOutputs), the streaming base, stages and sinks, the shared
options, the model-family registry and the factory (torch families and the ONNX backend's own animator)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fomm
from fomm.animate import (
    AnimationOptions,
    Animator,
    FrameOutputs,
    MonkeyNetAnimator,
    StreamingAnimator,
    X2FaceAnimator,
    animate_video,
    make_animator,
    resample_deformation,
)
from fomm.assets import example_path
from fomm.errors import FommError, InputError
from fomm.families import FAMILIES, PARTS, family_names, get_family
from fomm.io.reading import probe_video

# The README's tolerance for outputs the authors' code computes through grid_sample.
ATOL = 5e-5


@pytest.fixture(scope="module")
def small(golden_dir):
    model = fomm.load_model(golden_dir / "fomm_small_main.yaml", golden_dir / "fomm_small_main_cpk.pth.tar")
    ref = np.load(golden_dir / "fomm_small_main_ref.npz")
    return model, ref


def _animator(model, **kw):
    anim = Animator(model, relative=True, adapt_movement_scale=True, **kw)
    return anim


def test_animate_outputs_match_the_original_code(small):
    """deformation and occlusion equal the authors' outputs on the golden fixture, and the deformation applied to
    the source with the generator's own sampler reproduces their ``deformed`` image."""
    model, ref = small
    source, driving = torch.from_numpy(ref["source"]), torch.from_numpy(ref["driving"])
    anim = _animator(model, batch_size=4)
    anim.set_source(source)
    out = anim.animate_outputs(driving)
    b, h, w = driving.shape[0], *ref["gen_rel_adapt_deformation"].shape[1:3]
    assert out.prediction.shape == (b, 3, 128, 128)
    assert out.deformation.shape == (b, h, w, 2) and out.occlusion_map.shape == (b, 1, h, w)
    assert out.kp_driving["value"].shape == (b, 10, 2) and out.kp_driving["jacobian"].shape == (b, 10, 2, 2)
    assert 0 <= float(out.prediction.min()) and float(out.prediction.max()) <= 1
    assert 0 <= float(out.occlusion_map.min()) and float(out.occlusion_map.max()) <= 1
    np.testing.assert_allclose(out.deformation.numpy(), ref["gen_rel_adapt_deformation"], atol=1e-5)
    np.testing.assert_allclose(out.occlusion_map.numpy(), ref["gen_rel_adapt_occlusion_map"], atol=1e-5)
    np.testing.assert_allclose(out.kp_driving["value"].numpy(), ref["kp_norm_rel_adapt_value"], atol=1e-6)
    np.testing.assert_allclose(out.prediction.numpy(), ref["gen_rel_adapt_prediction"], atol=ATOL)
    np.testing.assert_allclose(out.warp(source).numpy(), ref["gen_rel_adapt_deformed"], atol=ATOL)
    # The prediction-only path is the same computation.
    anim.set_source(source)
    assert torch.equal(anim.animate_batch(driving), out.prediction)


def test_frame_outputs_slicing_and_resampling(small):
    model, ref = small
    anim = _animator(model)
    anim.set_source(torch.from_numpy(ref["source"]))
    out = anim.animate_outputs(torch.from_numpy(ref["driving"]))
    one = out[2]
    assert len(one) == 1 and torch.equal(one.deformation, out.deformation[2:3])
    assert torch.equal(one.kp_driving["value"], out.kp_driving["value"][2:3])
    assert torch.equal(out[-1].prediction, out.prediction[3:4])
    with pytest.raises(IndexError):
        out[4]
    big = out.deformation_at((128, 128))
    assert big.shape == (4, 128, 128, 2)
    assert out.occlusion_at((128, 128)).shape == (4, 1, 128, 128)
    # A depth-like map warped at full size lands where the source's pixels land.
    plane = torch.from_numpy(ref["source"])[:, :1]
    assert torch.allclose(out.warp(plane), out.warp(torch.from_numpy(ref["source"]))[:, :1])


def test_resample_deformation_keeps_an_identity_grid():
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="ij")
    grid = torch.stack([xs, ys], -1)[None]
    big = resample_deformation(grid, (32, 24), aligned=True)
    ys2, xs2 = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 24), indexing="ij")
    assert torch.allclose(big, torch.stack([xs2, ys2], -1)[None], atol=1e-6)
    # The authors' resize (align_corners=False) stretches it: up to half a coarse pixel at the border.
    assert not torch.allclose(resample_deformation(grid, (32, 24), aligned=False), big, atol=1e-3)
    with pytest.raises(ValueError):
        resample_deformation(grid[..., :1], (4, 4))


def test_translation_moves_a_warped_map_by_that_many_pixels():
    """A deformation that samples k pixels to the left shifts any source-aligned map k pixels to the right."""
    h = w = 32
    k = 3
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    grid = torch.stack([xs - k * 2 / (w - 1), ys], -1)[None]
    out = FrameOutputs(prediction=torch.zeros(1, 3, h, w), deformation=grid, aligned=True)
    depth = torch.rand(1, 1, h, w)
    moved = out.warp(depth)
    assert torch.allclose(moved[..., k:], depth[..., :-k], atol=1e-5)
    assert float(moved[..., :k].abs().max()) < 1e-5  # sampled outside the source: zero padding


def test_animate_stream_pairs_each_frame_with_its_outputs(small):
    model, _ = small
    frames = [np.asarray(f) for f, _ in zip(_example_frames(7), range(7), strict=True)]
    a = _animator(model, batch_size=3)
    a.set_source(frames[0])
    plain = list(a.animate_frames(frames))
    a.set_source(frames[0])
    streamed = list(a.animate_stream(frames))
    assert len(streamed) == 7
    for want, (got, outputs) in zip(plain, streamed, strict=True):
        assert np.array_equal(want, got) and len(outputs) == 1
        assert outputs.deformation.shape[0] == 1


def _example_frames(n):
    from fomm.io.reading import iter_frames

    return list(iter_frames(example_path("driving.mp4"), max_frames=n))


class _ListSink:
    """The smallest sink: keeps what it is given (animate_video only needs ``write``)."""

    def __init__(self):
        self.frames = []

    def write(self, frame):
        self.frames.append(frame.copy())


class _Recorder:
    """A stage that checks what it gets, records the lifecycle, and emits a named view."""

    def __init__(self):
        self.calls = 0
        self.context = None
        self.ended = None

    def begin(self, context):
        self.context = context

    def __call__(self, frame, outputs):
        assert frame.dtype == np.uint8 and frame.shape == (*self.context.output_size, 3)
        assert outputs.deformation is not None and len(outputs) == 1
        self.calls += 1
        occ = outputs.occlusion_at(frame.shape[:2])[0, 0].cpu().numpy()
        view = np.repeat((occ * 255).round().astype(np.uint8)[..., None], 3, axis=2)
        return {"frame": 255 - frame, "occlusion": view}

    def end(self, ok):
        self.ended = ok


def test_stages_and_sinks(small, tmp_path):
    model, _ = small
    src = example_path("source.png")
    drv = example_path("driving.mp4")
    from fomm.io import MemorySink

    # A public sink for the frames, and the smallest possible one (only write()) for the view.
    plain, staged, occ = MemorySink(), MemorySink(), _ListSink()
    res = animate_video(model, src, drv, plain, max_frames=6, progress=False, audio=False)
    assert res.output is None and res.num_frames == 6 and len(plain.frames) == 6
    rec = _Recorder()
    animate_video(model, src, drv, staged, AnimationOptions(max_frames=6, progress=False, output_size=96),
                  stages=[rec], view_sinks={"occlusion": occ})
    assert rec.calls == 6 and rec.ended is True and rec.context.model_size == (128, 128)
    assert rec.context.output_size == (96, 96) and len(occ.frames) == 6 and occ.frames[0].shape == (96, 96, 3)
    # The caller's stage sees the frame after the built-in resize, and its output is what gets written.
    from fomm.io.image import resize_uint8

    for p, s in zip(plain.frames, staged.frames, strict=True):
        assert np.array_equal(s, 255 - resize_uint8(p, (96, 96)))


def test_a_failing_stage_leaves_no_output(small, tmp_path):
    model, _ = small

    class Boom(_Recorder):
        def __call__(self, frame, outputs):
            if self.calls == 3:
                raise RuntimeError("boom")
            self.calls += 1
            return frame

    boom = Boom()
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        animate_video(model, example_path("source.png"), example_path("driving.mp4"), out, max_frames=8,
                      progress=False, stages=[boom])
    assert boom.ended is False
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="not callable"):
        animate_video(model, example_path("source.png"), example_path("driving.mp4"), out, stages=[3])


@pytest.mark.parametrize("bad, match", [
    ({"batch_size": 0}, "batch size"), ({"batch_size": -3}, "batch size"), ({"batch_size": 2.5}, "batch size"),
    ({"feather": 0.7}, "feather"), ({"crop_increase": -1}, "crop increase"),
    ({"crop_increase": float("nan")}, "crop increase"), ({"output_size": 5}, "output size"),
    ({"output_size": (64, 64, 64)}, "output size"), ({"precision": "fp8"}, "precision"),
    ({"best_frame": -1}, "best frame"), ({"max_frames": 0}, "max_frames"),
])
def test_options_are_range_checked(bad, match):
    with pytest.raises(InputError, match=match):
        AnimationOptions(**bad)
    assert AnimationOptions(output_size=64).output_size == (64, 64)
    with pytest.raises(InputError, match="batch size"):
        AnimationOptions().replace(batch_size=0)


def test_the_registry_is_the_one_list_of_families():
    from fomm.api import MODEL_NAMES
    from fomm.cli.common import MODEL_CHOICES
    from fomm.cli.eval import EVAL_MODELS

    assert family_names() == ("fomm", "monkeynet", "x2face")
    assert MODEL_NAMES == MODEL_CHOICES == EVAL_MODELS == family_names()
    for family in FAMILIES.values():
        for part in PARTS:
            assert callable(family.resolve(part)), (family.name, part)
    assert get_family("fomm").resolve("animator") is Animator
    assert get_family("monkeynet").resolve("animator") is MonkeyNetAnimator
    assert get_family("x2face").resolve("animator") is X2FaceAnimator
    with pytest.raises(FommError, match="unknown model 'nope'; choose one of: fomm, monkeynet, x2face"):
        get_family("nope")
    with pytest.raises(FommError, match="unknown model"):
        fomm.load_model("vox-256", model="nope")


def test_factory_builds_each_family(golden_dir):
    fomm_model = fomm.load_model(golden_dir / "fomm_small_main.yaml")
    mnet = fomm.load_model(golden_dir / "mnet_small.yaml", model="monkeynet")
    assert isinstance(make_animator(fomm_model), Animator)
    assert isinstance(make_animator(mnet), MonkeyNetAnimator)
    for anim in (make_animator(fomm_model, batch_size=2), make_animator(mnet, batch_size=2)):
        assert isinstance(anim, StreamingAnimator) and anim.batch_size == 2
    with pytest.raises(InputError, match="monkeynet models run in fp32"):
        make_animator(mnet, precision="bf16")
    with pytest.raises(InputError, match="batch size"):
        make_animator(fomm_model, batch_size=0)


def test_monkeynet_outputs_carry_keypoints(golden_dir):
    mnet = fomm.load_model(golden_dir / "mnet_small.yaml", model="monkeynet")
    anim = make_animator(mnet, batch_size=3)
    h, w = mnet.image_size
    frames = torch.rand(3, 3, h, w, generator=torch.Generator().manual_seed(0))
    anim.set_source(frames[:1])
    out = anim.animate_outputs(frames)
    assert out.prediction.shape == (3, 3, h, w) and out.deformation is None and out.occlusion_map is None
    assert out.kp_driving["value"].shape[0] == 3 and out.kp_driving["value"].shape[-1] == 2
    anim.set_source(frames[:1])
    assert torch.equal(anim.animate_batch(frames), out.prediction)


# ------------------------------------------------------------------------------------------------------- ONNX
def _onnx(golden_dir, tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="needs the 'onnx' extra")
    from fomm.realtime import OnnxModel, export_onnx

    model = fomm.load_model(golden_dir / "fomm_small_main.yaml", golden_dir / "fomm_small_main_cpk.pth.tar")
    out = tmp_path_factory.mktemp("onnx_engine")
    export_onnx(model, out)
    return model, OnnxModel(out), out


@pytest.fixture(scope="module")
def onnx_pair(golden_dir, tmp_path_factory):
    return _onnx(golden_dir, tmp_path_factory)


def test_onnx_model_brings_its_own_animator_with_outputs(onnx_pair, small):
    from fomm.realtime import OnnxAnimator

    model, om, _ = onnx_pair
    _, ref = small
    anim = make_animator(om, batch_size=4)
    assert isinstance(anim, OnnxAnimator)
    with pytest.raises(InputError, match="the ONNX backend run in fp32"):
        make_animator(om, precision="bf16")
    anim.set_source(torch.from_numpy(ref["source"]))
    out = anim.animate_outputs(torch.from_numpy(ref["driving"]))
    np.testing.assert_allclose(out.deformation.numpy(), ref["gen_rel_adapt_deformation"], atol=1e-4)
    np.testing.assert_allclose(out.occlusion_map.numpy(), ref["gen_rel_adapt_occlusion_map"], atol=1e-4)
    np.testing.assert_allclose(out.prediction.numpy(), ref["gen_rel_adapt_prediction"], atol=1e-4)
    np.testing.assert_allclose(out.warp(torch.from_numpy(ref["source"])).numpy(), ref["gen_rel_adapt_deformed"],
                               atol=1e-4)


def test_onnx_exports_of_format_1_still_load_and_run(onnx_pair, small, tmp_path):
    """An export made before the frame stage output its deformation: the graph without that output and a
    version-1 sidecar. It animates as before; FrameOutputs.deformation is then None."""
    import json
    import shutil

    import onnx

    from fomm.realtime import OnnxModel
    from fomm.realtime.export import SIDECAR

    _, om, folder = onnx_pair
    _, ref = small
    old = tmp_path / "v1"
    shutil.copytree(folder, old)
    graph = onnx.load(str(old / "frame_stage.onnx"))
    keep = [o for o in graph.graph.output if o.name != "deformation"]
    del graph.graph.output[:]
    graph.graph.output.extend(keep)
    onnx.save(graph, str(old / "frame_stage.onnx"))
    meta = json.loads((old / SIDECAR).read_text())
    meta["format_version"] = 1
    meta.pop("align_deformation")
    meta["graphs"]["frame_stage"]["outputs"].remove("deformation")
    (old / SIDECAR).write_text(json.dumps(meta))
    v1 = OnnxModel(old)
    anim = make_animator(v1, batch_size=4)
    anim.set_source(torch.from_numpy(ref["source"]))
    out = anim.animate_outputs(torch.from_numpy(ref["driving"]))
    assert out.deformation is None and out.occlusion_map is not None
    np.testing.assert_allclose(out.prediction.numpy(), ref["gen_rel_adapt_prediction"], atol=1e-4)
    meta["format_version"] = 9
    (old / SIDECAR).write_text(json.dumps(meta))
    with pytest.raises(InputError, match="format version 9"):
        OnnxModel(old)


def test_webcam_session_runs_the_onnx_backend(onnx_pair):
    """The demo's webcam tab gets its animator from the factory, so an ONNX model works there and matches torch."""
    from fomm.demo.webcam import WebcamSession, on_device

    model, om, _ = onnx_pair
    frames = _example_frames(3)
    src = np.asarray(frames[0])
    torch_session, onnx_session = WebcamSession(), WebcamSession()
    assert on_device(om, "cpu") is om
    for i, frame in enumerate(frames):  # the same frame times, so both smooth the keypoints alike
        a = torch_session.animate(model, "torch", src, "src", frame, display=128, t=0.1 * i)
        b = onnx_session.animate(om, "onnx", src, "src", frame, display=128, t=0.1 * i)
        assert a.shape == b.shape == (128, 128, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    assert onnx_session.frames == 3 and type(onnx_session.animator).__name__ == "OnnxAnimator"


def test_animate_video_runs_the_onnx_backend_with_stages(onnx_pair, tmp_path):
    model, om, _ = onnx_pair
    seen = []

    def stage(frame, outputs):
        seen.append(outputs.deformation.shape)
        return frame

    res = animate_video(om, example_path("source.png"), example_path("driving.mp4"), tmp_path / "o.mp4",
                        max_frames=5, progress=False, stages=[stage])
    assert res.num_frames == 5 == probe_video(tmp_path / "o.mp4").num_frames
    assert seen == [(1, 32, 32, 2)] * 5


# ------------------------------------------------------------------------------------------- per-frame stage
def test_keypoint_transfer_equals_normalize_kp_and_computes_the_hulls_once(monkeypatch):
    from fomm.animate import KeypointTransfer, normalize_kp
    from fomm.animate import normalize as norm_mod

    g = torch.Generator().manual_seed(1)
    kp_s = {"value": torch.rand(1, 10, 2, generator=g) * 2 - 1, "jacobian": torch.rand(1, 10, 2, 2, generator=g)}
    batches = [{"value": torch.rand(4, 10, 2, generator=g) * 2 - 1,
                "jacobian": torch.rand(4, 10, 2, 2, generator=g) + torch.eye(2)} for _ in range(3)]
    for relative, adapt in ((True, True), (True, False), (False, False)):
        transfer = KeypointTransfer(relative, adapt)
        transfer.set_source(kp_s)
        initial = {k: v[:1] for k, v in batches[0].items()}
        calls = []
        real = norm_mod.movement_scale
        monkeypatch.setattr(norm_mod, "movement_scale",
                            lambda *a, calls=calls, real=real: calls.append(1) or real(*a))
        for kp_d in batches:
            got = transfer(kp_d)
            want = normalize_kp(kp_s, kp_d, initial, use_relative_movement=relative,
                                use_relative_jacobian=relative, adapt_movement_scale=adapt)
            for key in want:
                assert torch.equal(got[key], want[key]), (relative, adapt, key)
        # transfer: once when the reference is taken; normalize_kp (the reference): once per batch.
        assert len(calls) == (1 + 3 if adapt else 0)
        monkeypatch.undo()


def test_the_per_frame_stage_exports_whole_with_torch_export(small):
    """Keypoints -> relative motion -> decode is one graph: torch.export in strict mode captures it without a
    graph break, and the exported program computes the animator's outputs."""
    model, ref = small
    anim = _animator(model, batch_size=2)
    source, driving = torch.from_numpy(ref["source"]), torch.from_numpy(ref["driving"][:2])
    anim.set_source(source)
    anim.set_initial_driving(driving[:1])
    stage = anim.frame_stage()
    with torch.inference_mode(False), torch.no_grad():
        exported = torch.export.export(stage, (driving,), strict=True)
        got = exported.module()(driving)
    want = anim.animate_outputs(driving)
    assert torch.equal(got["prediction"], want.prediction) and torch.equal(got["deformation"], want.deformation)
    assert torch.equal(got["occlusion_map"], want.occlusion_map)
    assert torch.equal(got["kp_value"], want.kp_driving["value"])


def test_cuda_graphs_need_a_cuda_device(small):
    model, _ = small
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InputError, match="CUDA graphs need a CUDA device"):
        Animator(model, cuda_graphs=True)


def test_onnx_providers_prefer_the_gpu_and_fall_back_with_a_note():
    pytest.importorskip("onnxruntime", reason="needs the 'onnx' extra")
    from fomm.realtime import choose_providers, select_providers

    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("cuda", available=gpu) == (gpu, None)
    assert choose_providers("cuda:0", available=["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    providers, note = choose_providers("cuda", available=["CPUExecutionProvider"])
    assert providers == ["CPUExecutionProvider"] and "fomm[gpu]" in note
    assert choose_providers("cpu") == (["CPUExecutionProvider"], None)
    with pytest.raises(FommError, match="cpu or cuda"):
        choose_providers("mps")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(FommError, match="onnxruntime-gpu"):  # the strict API form still refuses
            select_providers("cuda")


def test_onnx_backend_on_cuda_without_gpu_providers_runs_on_the_cpu_and_says_so(onnx_pair, tmp_path, capsys):
    """`fomm animate --backend onnx --device cuda` with a CPU-only onnxruntime: a note, the provider printed, and a
    video (the same graphs on the CPU)."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    from fomm.cli.main import main

    _, _, folder = onnx_pair
    out = tmp_path / "o.mp4"
    rc = main(["animate", "--backend", "onnx", "--onnx-dir", str(folder), "--device", "cuda", "--source",
               str(example_path("source.png")), "--driving", str(example_path("driving.mp4")), "-o", str(out),
               "--no-audio"])
    err = capsys.readouterr().err
    assert rc == 0 and out.is_file()
    assert "fomm: note: this onnxruntime has no CUDA or TensorRT provider" in err
    assert "ONNX Runtime provider: CPUExecutionProvider" in err


def test_train_and_average_checkpoints_take_their_families_from_the_registry():
    from fomm.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in ("train", "average-checkpoints"):
        model = next(a for a in sub.choices[command]._actions if a.dest == "model")
        assert tuple(model.choices) == family_names(), command
    assert get_family("x2face").inference_parts == ("state_dict",)
    assert get_family("fomm").inference_parts == ("generator", "kp_detector")
