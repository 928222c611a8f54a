"""ONNX export and the ONNX Runtime path: parity with torch on the golden fixture weights, graph properties, the
split (source stage + per-frame stage) against the unsplit generator, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="ONNX tests need the 'onnx' extra: pip install 'fomm[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="ONNX tests need the 'onnx' extra: pip install 'fomm[onnx]'")

import fomm  # noqa: E402
from fomm.animate import Animator, normalize_kp  # noqa: E402
from fomm.errors import CheckpointError, ConfigError, FommError, InputError  # noqa: E402
from fomm.realtime import OnnxAnimator, OnnxModel, export_onnx  # noqa: E402
from fomm.realtime.export import FrameStage, SourceStage  # noqa: E402

ATOL = 1e-4


def _model(golden_dir, variant="main"):
    return fomm.load_model(golden_dir / f"fomm_small_{variant}.yaml",
                           golden_dir / f"fomm_small_{variant}_cpk.pth.tar")


@pytest.fixture(scope="module")
def inputs(golden_dir):
    ref = np.load(golden_dir / "fomm_small_main_ref.npz")
    return torch.from_numpy(ref["source"]), torch.from_numpy(ref["driving"]), ref


@pytest.fixture(scope="module", params=["main", "nojac"])
def exported(request, golden_dir, tmp_path_factory):
    model = _model(golden_dir, request.param)
    out = tmp_path_factory.mktemp(f"onnx_{request.param}")
    export_onnx(model, out)
    return model, out, request.param


def _torch_kp(model, images):
    with torch.no_grad():
        return model.kp_detector(images)


@pytest.mark.parametrize("batch", [1, 4])
def test_onnx_matches_torch(exported, inputs, batch):
    model, out, variant = exported
    source, driving, _ = inputs
    driving = driving[:batch]
    om = OnnxModel(out)
    with torch.no_grad():
        kp_s, kp_d = model.kp_detector(source), model.kp_detector(driving)
        kp_norm = normalize_kp(kp_s, kp_d, {k: v[:1] for k, v in kp_d.items()}, use_relative_movement=True,
                               use_relative_jacobian="jacobian" in kp_s, adapt_movement_scale=True)
        ref = model.generator(source, kp_driving=kp_norm, kp_source=kp_s)

    onnx_kp = om.keypoints(driving.numpy())
    assert set(onnx_kp) == set(kp_d) == ({"value", "jacobian"} if variant == "main" else {"value"})
    for k in kp_d:
        np.testing.assert_allclose(onnx_kp[k], kp_d[k].numpy(), rtol=0, atol=ATOL, err_msg=k)
    enc = om.encode_source(source.numpy())
    np.testing.assert_allclose(enc["kp_source_value"], kp_s["value"].numpy(), rtol=0, atol=ATOL)
    got = om.decode(enc, {k: v.numpy() for k, v in kp_norm.items()})
    assert got["prediction"].shape == (batch, 3, 128, 128)
    for key in ("prediction", "deformed", "mask", "occlusion_map"):
        np.testing.assert_allclose(got[key], ref[key].numpy(), rtol=0, atol=ATOL, err_msg=key)
    if batch > 1:  # one source per frame (S = B) instead of a broadcast source: same frames
        enc_b = om.encode_source(np.repeat(source.numpy(), batch, axis=0))
        got_b = om.decode(enc_b, {k: v.numpy() for k, v in kp_norm.items()})
        np.testing.assert_allclose(got_b["prediction"], got["prediction"], rtol=0, atol=ATOL)


def test_split_stages_equal_unsplit_generator(golden_dir, inputs):
    """The torch modules that are exported: source stage + frame stage == generator.forward, per-frame sources too."""
    model = _model(golden_dir)
    source, driving, _ = inputs
    with torch.no_grad():
        kp_s, kp_d = model.kp_detector(source), model.kp_detector(driving)
        whole = model.generator(source, kp_driving=kp_d, kp_source=kp_s)
        kv, kj, feats, small = SourceStage(model.kp_detector, model.generator)(source)
        frame = FrameStage(model.generator, has_jacobian=True)
        split = frame(source, feats, small, kv, kj, kp_d["value"], kp_d["jacobian"])
        # A source batch equal to the driving batch (S = B) must give the same frames as the broadcast one.
        rep = lambda t: t.expand(4, *t.shape[1:])  # noqa: E731
        split_rep = frame(rep(source), rep(feats), rep(small), rep(kv), rep(kj), kp_d["value"], kp_d["jacobian"])
    for i, key in enumerate(("prediction", "deformed", "mask", "occlusion_map")):
        torch.testing.assert_close(split[i], whole[key], rtol=0, atol=1e-6)
        torch.testing.assert_close(split_rep[i], whole[key], rtol=0, atol=1e-6)


def test_onnx_split_path_matches_original_reference(exported, inputs, golden_dir):
    """End to end through the ONNX animator (relative motion) against the original code's output."""
    model, out, variant = exported
    source, driving, _ = inputs
    ref = np.load(golden_dir / f"fomm_small_{variant}_ref.npz")
    # The golden files store relative motion with adapted scale (main) or without it (nojac).
    adapt = variant == "main"
    expected = ref["gen_rel_adapt_prediction"] if adapt else ref["gen_rel_prediction"]
    anim = OnnxAnimator(OnnxModel(out), batch_size=4, adapt_movement_scale=adapt)
    anim.set_source(source)
    pred = anim.animate_batch(driving)
    np.testing.assert_allclose(pred.numpy(), expected, rtol=0, atol=ATOL)
    torch_anim = Animator(model, batch_size=1, adapt_movement_scale=adapt)
    torch_anim.set_source(source)
    torch_pred = torch.cat([torch_anim.animate_batch(driving[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(pred, torch_pred, rtol=0, atol=ATOL)


def test_graphs_and_sidecar(exported):
    model, out, variant = exported
    meta = json.loads((out / "fomm_onnx.json").read_text())
    assert meta["opset"] == 17 and meta["image_size"] == [128, 128]
    assert meta["has_jacobian"] is (variant == "main")
    assert meta["config"]["model_params"]["common_params"]["num_kp"] == 10
    ops_seen: set[str] = set()
    for name, info in meta["graphs"].items():
        graph = onnx.load(str(out / info["file"]))
        onnx.checker.check_model(graph, full_check=True)
        assert [i.name for i in graph.graph.input] == info["inputs"]
        assert [o.name for o in graph.graph.output] == info["outputs"]
        assert {o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")} == {17}
        # Batch axis is symbolic on every input and output (dynamic batch).
        for vi in list(graph.graph.input) + list(graph.graph.output):
            assert vi.type.tensor_type.shape.dim[0].dim_param, (name, vi.name)
        ops_seen |= {n.op_type for n in graph.graph.node}
    assert "GridSample" in ops_seen
    assert not ops_seen & {"Inverse", "ATen"}


def test_export_other_opset_and_model_left_intact(golden_dir, inputs, tmp_path):
    model = _model(golden_dir)
    source, driving, _ = inputs
    with torch.no_grad():
        before = model.kp_detector(driving)["value"]
    export_onnx(model, tmp_path, opset=16)
    assert not model.generator.training and not model.kp_detector.training
    with torch.no_grad():
        torch.testing.assert_close(model.kp_detector(driving)["value"], before, rtol=0, atol=0)
    graph = onnx.load(str(tmp_path / "frame_stage.onnx"))
    assert {o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")} == {16}
    om = OnnxModel(tmp_path)
    np.testing.assert_allclose(om.keypoints(driving.numpy())["value"], before.numpy(), rtol=0, atol=ATOL)


# ------------------------------------------------------------------------------------------------------ bad input
def test_bad_opset_and_bad_model(golden_dir, tmp_path):
    model = _model(golden_dir)
    with pytest.raises(FommError, match="opset 20"):
        export_onnx(model, tmp_path, opset=20)
    mnet = fomm.load_model(golden_dir / "mnet_small.yaml", model="monkeynet")
    with pytest.raises(ConfigError, match="FOMM models only"):
        export_onnx(mnet, tmp_path)
    assert not list(tmp_path.glob("*.onnx"))


def test_missing_export_and_missing_graph(exported, tmp_path):
    _, out, _ = exported
    with pytest.raises(InputError, match="not an ONNX export"):
        OnnxModel(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no fomm_onnx.json"):
        OnnxModel(tmp_path)
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in ("fomm_onnx.json", "kp_detector.onnx", "source_stage.onnx"):
        (partial / f).write_bytes((out / f).read_bytes())
    with pytest.raises(InputError, match="frame_stage.onnx.*missing"):
        OnnxModel(partial)
    (partial / "frame_stage.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(InputError, match="cannot load ONNX graph"):
        OnnxModel(partial)


def test_other_image_size(exported, inputs):
    _, out, _ = exported
    with pytest.raises(ConfigError, match="exported for 128x128.*256x256"):
        OnnxModel(out, image_size=(256, 256))
    om = OnnxModel(out, image_size=(128, 128))
    with pytest.raises(InputError, match=r"exported for \[B, 3, 128, 128\]"):
        om.keypoints(np.zeros((1, 3, 256, 256), np.float32))
    # The animator resizes any uint8 frame to the exported size, so other-sized frames are fine there.
    anim = OnnxAnimator(om, batch_size=2)
    anim.set_source(np.full((200, 160, 3), 128, np.uint8))
    frames = list(anim.animate_frames([np.zeros((64, 64, 3), np.uint8)] * 3))
    assert len(frames) == 3 and frames[0].shape == (128, 128, 3)


def test_checkpoint_that_does_not_fit_config(golden_dir, tmp_path):
    import argparse

    from fomm.cli import export_onnx as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["export-onnx", "--config", str(golden_dir / "fomm_small_main.yaml"),
                              "--checkpoint", str(golden_dir / "fomm_small_nojac_cpk.pth.tar"),
                              "-o", str(tmp_path / "out")])
    with pytest.raises(CheckpointError):
        args.func(args)
    assert not (tmp_path / "out" / "fomm_onnx.json").exists()
