"""generator_params.blend_deformed (ours): the output blends the warped source with the decoder through a learned
per-pixel mask. Checked: the blend itself, the config and checkpoint contracts, fine-tuning a model trained without
the head, the reduced-precision view and the ONNX export."""

from __future__ import annotations

import pytest
import torch
import yaml
from helpers import decode_fp32_and_view, make_strips, tiny_config
from helpers import train_opts as _opts

import fomm
from fomm.checkpoint import load_container, save_checkpoint
from fomm.errors import CheckpointError, ConfigError
from fomm.train.trainer import train


def _raw(blend: bool, dense_motion: bool = True) -> dict:
    gen = {"block_expansion": 4, "max_features": 16, "num_down_blocks": 1, "num_bottleneck_blocks": 1,
           "estimate_occlusion_map": True, "align_deformation": True, "blend_deformed": blend}
    if dense_motion:
        gen["dense_motion_params"] = {"block_expansion": 4, "max_features": 16, "num_blocks": 2, "scale_factor": 0.5}
    return {"dataset_params": {"frame_shape": [32, 32, 3]},
            "model_params": {
                "common_params": {"num_kp": 3, "num_channels": 3, "estimate_jacobian": True},
                "kp_detector_params": {"temperature": 0.1, "block_expansion": 4, "max_features": 16,
                                       "num_blocks": 2, "scale_factor": 0.5},
                "generator_params": gen}}


def _pair():
    """A plain model and a blending one with the same weights everywhere but the blend head."""
    torch.manual_seed(0)
    plain = fomm.load_model(fomm.load_config(_raw(False)))
    blend = fomm.load_model(fomm.load_config(_raw(True)))
    state = dict(plain.generator.state_dict())
    state.update({k: v for k, v in blend.generator.state_dict().items() if k.startswith("blend.")})
    blend.generator.load_state_dict(state)
    blend.kp_detector.load_state_dict(plain.kp_detector.state_dict())
    return plain, blend


def _run(model, src, drv):
    with torch.no_grad():
        return model.generator(src, kp_source=model.kp_detector(src), kp_driving=model.kp_detector(drv))


def test_blend_mask_chooses_between_the_warped_source_and_the_decoder():
    plain, blend = _pair()
    assert plain.generator.blend is None and blend.generator.blend is not None
    src, drv = torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32)
    ref = _run(plain, src, drv)
    head = blend.generator.blend
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(40.0)    # mask 1: the warped source, exactly
        out = _run(blend, src, drv)
        assert out["blend_mask"].shape == (2, 1, 32, 32)
        torch.testing.assert_close(out["prediction"], out["deformed"], atol=1e-6, rtol=0)
        torch.testing.assert_close(out["deformed"], ref["deformed"])
        head.bias.fill_(-40.0)   # mask 0: the authors' decoder output
        torch.testing.assert_close(_run(blend, src, drv)["prediction"], ref["prediction"], atol=1e-6, rtol=0)
        head.bias.zero_()        # mask 1/2: the midpoint
        torch.testing.assert_close(_run(blend, src, drv)["prediction"],
                                   (ref["prediction"] + ref["deformed"]) / 2, atol=1e-6, rtol=0)
    # Plain generators keep their outputs; the decode without the 'deformed' visualisation still blends.
    assert "blend_mask" not in ref
    enc = blend.generator.encode_source(src)
    with torch.no_grad():
        kp_s, kp_d = blend.kp_detector(src), blend.kp_detector(drv)
        lean = blend.generator.decode(enc, kp_s, kp_d, with_deformed=False)
    torch.testing.assert_close(lean["prediction"], _run(blend, src, drv)["prediction"])


def test_blend_head_gets_gradients_and_the_warp_learns_through_it():
    _, blend = _pair()
    src, drv = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = blend.generator(src, kp_source=blend.kp_detector(src), kp_driving=blend.kp_detector(drv))
    (out["prediction"] - drv).abs().mean().backward()
    assert blend.generator.blend.weight.grad.abs().sum() > 0
    # The loss reaches the dense-motion masks through the warped source too.
    assert blend.generator.dense_motion_network.mask.weight.grad.abs().sum() > 0


def test_blend_needs_dense_motion_and_a_bool():
    with pytest.raises(ConfigError, match="blend_deformed needs dense_motion_params"):
        fomm.load_config(_raw(True, dense_motion=False))
    raw = _raw(True)
    raw["model_params"]["generator_params"]["blend_deformed"] = "yes"
    with pytest.raises(ConfigError, match="blend_deformed must be true or false"):
        fomm.load_config(raw)


def test_checkpoints_must_match_the_head(tmp_path):
    plain, blend = _pair()
    save_checkpoint(tmp_path / "plain.pth.tar", {"generator": plain.generator, "kp_detector": plain.kp_detector})
    save_checkpoint(tmp_path / "blend.pth.tar", {"generator": blend.generator, "kp_detector": blend.kp_detector})
    # Inference never fills a head in silently: each checkpoint needs its own config.
    with pytest.raises(CheckpointError, match="blend"):
        fomm.load_model(fomm.load_config(_raw(True)), tmp_path / "plain.pth.tar")
    with pytest.raises(CheckpointError, match="blend"):
        fomm.load_model(fomm.load_config(_raw(False)), tmp_path / "blend.pth.tar")
    again = fomm.load_model(fomm.load_config(_raw(True)), tmp_path / "blend.pth.tar")
    src, drv = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(_run(again, src, drv)["prediction"], _run(blend, src, drv)["prediction"])


def _tiny_blend_config(tmp_path):
    """Two tiny training configs from the bundled one: without and with the blend head."""
    cfg = yaml.safe_load(tiny_config(tmp_path).read_text())
    paths = []
    for blend in (False, True):
        cfg["model_params"]["generator_params"]["blend_deformed"] = blend
        cfg["train_params"]["num_epochs"] = 1
        paths.append(tmp_path / f"tiny-blend-{blend}.yaml")
        paths[-1].write_text(yaml.safe_dump(cfg))
    return paths


def test_fine_tuning_adds_the_head_to_a_model_trained_without_it(tmp_path):
    data = make_strips(tmp_path / "data")
    plain_cfg, blend_cfg = _tiny_blend_config(tmp_path)
    base = train(_opts(plain_cfg, data, tmp_path / "base", epochs=1))
    said: list[str] = []
    tuned = train(_opts(blend_cfg, data, tmp_path / "tuned", init_checkpoint=str(base.last_checkpoint),
                        log=said.append))
    assert any("has no blend.bias, blend.weight; starting that head from fresh weights" in m for m in said)
    gen = load_container(tuned.last_checkpoint)["generator"]
    assert {"blend.weight", "blend.bias"} <= set(gen)
    fomm.load_model(str(blend_cfg), tuned.last_checkpoint)

    # A half-present head is not "new": the strict loader reports it.
    broken = load_container(base.last_checkpoint)
    broken["generator"] = dict(broken["generator"], **{"blend.bias": gen["blend.bias"]})
    torch.save(broken, tmp_path / "broken.pth.tar")
    with pytest.raises(CheckpointError, match="blend.weight"):
        train(_opts(blend_cfg, data, tmp_path / "broken", init_checkpoint=str(tmp_path / "broken.pth.tar")))


def test_low_precision_view_keeps_the_blend_in_fp32():
    from fomm.models.fomm.precision import cpu_supports_bf16, low_precision_view, psnr

    if not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16 kernels")
    _, blend = _pair()
    gen = blend.generator.eval()
    view = low_precision_view(gen, torch.bfloat16)
    assert view.blend is gen.blend and view.blend.weight.dtype == torch.float32
    full, got = decode_fp32_and_view(blend, view, torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert got["prediction"].dtype == torch.float32 and got["blend_mask"].dtype == torch.float32
    assert not torch.equal(got["prediction"], full["prediction"])
    assert psnr(got["prediction"], full["prediction"]) >= 35.0


def test_onnx_export_of_a_blending_model_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from fomm.realtime import OnnxModel, export_onnx

    _, blend = _pair()
    with torch.no_grad():
        blend.generator.blend.bias.fill_(0.5)  # a mask away from 0 and 1 either way
    export_onnx(blend, tmp_path / "onnx")
    src, drv = torch.rand(1, 3, 32, 32), torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        kp_s, kp_d = blend.kp_detector(src), blend.kp_detector(drv)
        ref = blend.generator(src, kp_source=kp_s, kp_driving=kp_d)
    om = OnnxModel(tmp_path / "onnx")
    got = om.decode(om.encode_source(src.numpy()), {k: v.numpy() for k, v in kp_d.items()})
    assert (ref["prediction"] - ref["deformed"]).abs().max() > 1e-2  # the blend is not a no-op here
    for key in ("prediction", "deformed"):
        torch.testing.assert_close(torch.from_numpy(got[key]), ref[key], atol=1e-4, rtol=0, msg=key)
