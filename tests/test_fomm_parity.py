"""Parity with the original first-order-model code, through the golden fixtures (see shared/golden/README.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fomm

IMAGE_KEYS = ("prediction", "deformed", "sparse_deformed")
ATOL_FIELD = 1e-5   # keypoints, jacobians, masks, deformation (golden README 3.3)
ATOL_IMAGE = 5e-5   # prediction, deformed, sparse_deformed


def _atol(key: str) -> float:
    return ATOL_IMAGE if any(key.endswith(k) for k in IMAGE_KEYS) else ATOL_FIELD


def _load(golden_dir, variant):
    model = fomm.load_model(golden_dir / f"fomm_small_{variant}.yaml", golden_dir / f"fomm_small_{variant}_cpk.pth.tar",
                            with_discriminator=True)
    ref = dict(np.load(golden_dir / f"fomm_small_{variant}_ref.npz"))
    inputs = np.load(golden_dir / "fomm_small_main_ref.npz")
    return model, ref, torch.from_numpy(inputs["source"]), torch.from_numpy(inputs["driving"])


def _per_frame_kp(model, driving):
    per = [model.kp_detector(driving[t:t + 1]) for t in range(driving.shape[0])]
    return {k: torch.cat([p[k] for p in per]) for k in per[0]}


def _run_generator(model, source, kp_source, kp_norm):
    per = [model.generator(source, kp_source=kp_source, kp_driving={k: v[t:t + 1] for k, v in kp_norm.items()})
           for t in range(kp_norm["value"].shape[0])]
    return {k: torch.cat([p[k] for p in per]) for k in per[0]}


def _compare(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> list[str]:
    checked = []
    for key, expected in ours.items():
        if key not in ref:
            continue
        np.testing.assert_allclose(expected, ref[key], rtol=0, atol=_atol(key), err_msg=key)
        checked.append(key)
    return checked


@pytest.mark.parametrize("variant", ["main", "nojac", "singlejac"])
@torch.no_grad()
def test_parity_with_original(golden_dir, variant):
    model, ref, source, driving = _load(golden_dir, variant)
    ours: dict[str, np.ndarray] = {}
    kp_s = model.kp_detector(source)
    kp_d = _per_frame_kp(model, driving)
    for k, v in kp_s.items():
        ours[f"kp_source_{k}"] = v.numpy()
    for k, v in kp_d.items():
        ours[f"kp_driving_{k}"] = v.numpy()
    kp_init = {k: v[:1] for k, v in kp_d.items()}
    has_jac = "jacobian" in kp_s
    modes = {
        "abs": None,
        "rel": dict(use_relative_movement=True, use_relative_jacobian=has_jac),
        "rel_adapt": dict(use_relative_movement=True, use_relative_jacobian=has_jac, adapt_movement_scale=True),
    }
    for mode, kwargs in modes.items():
        kp_norm = kp_d if kwargs is None else fomm.normalize_kp(kp_s, kp_d, kp_init, **kwargs)
        if kwargs is not None:
            for k, v in kp_norm.items():
                ours[f"kp_norm_{mode}_{k}"] = v.numpy()
        if any(key.startswith(f"gen_{mode}_") for key in ref):
            for k, v in _run_generator(model, source, kp_s, kp_norm).items():
                ours[f"gen_{mode}_{k}"] = v.numpy()
    ours["adapt_movement_scale"] = np.float32(fomm.animate.normalize.movement_scale(kp_s, kp_init))
    disc = model.discriminator(source, kp_s)
    for i, fm in enumerate(disc["feature_maps_1"]):
        ours[f"disc_source_feature_map_{i}"] = fm.numpy()
    ours["disc_source_prediction_map"] = disc["prediction_map_1"].numpy()

    checked = _compare(ours, ref)
    missing = sorted(set(ref) - set(checked) - {"source", "driving"} - {k for k in ref if "dm_" in k or
                                                                          "heatmap_logits" in k or "downsampled" in k})
    assert not missing, f"reference arrays not compared: {missing}"
    assert len(checked) >= 10


@torch.no_grad()
def test_parity_of_internals(golden_dir):
    model, ref, source, driving = _load(golden_dir, "main")
    logits, _ = model.kp_detector.heatmap_logits(source)
    np.testing.assert_allclose(logits.numpy(), ref["kp_source_heatmap_logits"], atol=2e-5, rtol=0)
    np.testing.assert_allclose(model.kp_detector.down(source).numpy(), ref["kp_source_downsampled_input"], atol=1e-6,
                               rtol=0)
    dm = model.generator.dense_motion_network
    np.testing.assert_allclose(dm.downsample(source).numpy(), ref["dm_source_downsampled"], atol=1e-6, rtol=0)
    kp_s = model.kp_detector(source)
    kp_d = _per_frame_kp(model, driving)
    out = dm(source, kp_driving=kp_d, kp_source=kp_s)  # batched over the 4 frames, source broadcast
    np.testing.assert_allclose(out["heatmap_representation"].numpy(), ref["gen_abs_dm_heatmap_representation"],
                               atol=ATOL_FIELD, rtol=0)
    np.testing.assert_allclose(out["sparse_motion"].numpy(), ref["gen_abs_dm_sparse_motion"], atol=ATOL_FIELD, rtol=0)


@torch.no_grad()
def test_batched_generator_matches_per_frame(golden_dir):
    """The animator runs several driving frames per call with a batch-1 source; results must not change."""
    model, ref, source, driving = _load(golden_dir, "main")
    kp_s = model.kp_detector(source)
    kp_d = model.kp_detector(driving)  # batch of 4
    kp_init = {k: v[:1] for k, v in kp_d.items()}
    kp_norm = fomm.normalize_kp(kp_s, kp_d, kp_init, use_relative_movement=True, use_relative_jacobian=True,
                                adapt_movement_scale=True)
    out = model.generator(source, kp_source=kp_s, kp_driving=kp_norm)
    for key in ("prediction", "mask", "occlusion_map", "deformation", "deformed", "sparse_deformed"):
        np.testing.assert_allclose(out[key].numpy(), ref[f"gen_rel_adapt_{key}"], atol=5e-5, rtol=0, err_msg=key)


@torch.no_grad()
def test_align_corners_false_reference_does_not_match(golden_dir):
    """Negative control: the HEAD code on torch>=1.3 (align_corners=False) must be told apart from ours."""
    model, ref, source, driving = _load(golden_dir, "main")
    neg = np.load(golden_dir / "fomm_small_main_gridsample_alignfalse_ref.npz")
    kp_s = model.kp_detector(source)
    kp_d = _per_frame_kp(model, driving)
    kp_norm = fomm.normalize_kp(kp_s, kp_d, {k: v[:1] for k, v in kp_d.items()}, use_relative_movement=True,
                                use_relative_jacobian=True, adapt_movement_scale=True)
    out = _run_generator(model, source, kp_s, kp_norm)
    assert np.abs(out["prediction"].numpy() - neg["gen_rel_adapt_prediction"]).max() > 1e-2
    assert np.abs(out["deformation"].numpy() - neg["gen_rel_adapt_deformation"]).max() > 1e-3
    np.testing.assert_allclose(out["prediction"].numpy(), ref["gen_rel_adapt_prediction"], atol=ATOL_IMAGE, rtol=0)


@pytest.mark.parametrize("num_kp,size,blocks,occlusion,jac", [
    (5, 64, 3, False, True), (15, 96, 4, True, False), (1, 32, 2, True, True)])
def test_other_shapes_run_forward_and_backward(num_kp, size, blocks, occlusion, jac):
    cfg = fomm.load_config({
        "dataset_params": {"frame_shape": [size, size, 3]},
        "model_params": {
            "common_params": {"num_kp": num_kp, "num_channels": 3, "estimate_jacobian": jac},
            "kp_detector_params": {"temperature": 0.1, "block_expansion": 4, "max_features": 16,
                                   "num_blocks": blocks, "scale_factor": 0.5},
            "generator_params": {"block_expansion": 4, "max_features": 16, "num_down_blocks": 2,
                                 "num_bottleneck_blocks": 1, "estimate_occlusion_map": occlusion,
                                 "dense_motion_params": {"block_expansion": 4, "max_features": 16,
                                                         "num_blocks": blocks, "scale_factor": 0.5}},
            "discriminator_params": {"scales": [1, 0.5], "block_expansion": 4, "max_features": 16, "num_blocks": 2,
                                     "sn": True, "use_kp": True}},
    })
    model = fomm.load_model(cfg, with_discriminator=True)
    for net in (model.kp_detector, model.generator, model.discriminator):
        net.train()
    src = torch.rand(2, 3, size, size)
    drv = torch.rand(2, 3, size, size)
    kp_s, kp_d = model.kp_detector(src), model.kp_detector(drv)
    assert kp_s["value"].shape == (2, num_kp, 2)
    assert ("jacobian" in kp_s) == jac
    out = model.generator(src, kp_source=kp_s, kp_driving=kp_d)
    assert out["prediction"].shape == (2, 3, size, size)
    assert out["deformation"].shape[-1] == 2 and out["mask"].shape[1] == num_kp + 1
    assert ("occlusion_map" in out) == occlusion
    disc = model.discriminator({"prediction_1": out["prediction"],
                                "prediction_0.5": torch.nn.functional.avg_pool2d(out["prediction"], 2)}, kp_d)
    loss = out["prediction"].mean() + sum(v.mean() for k, v in disc.items() if k.startswith("prediction_map"))
    loss.backward()
    grads = [p.grad for p in model.generator.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.kp_detector.kp.weight.grad is not None and model.kp_detector.kp.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("coarse", [16, 32])
def test_aligned_deformation_resize_keeps_identity_exact(coarse):
    """A coarser identity deformation must warp 64x64 features to themselves with ``aligned=True``; the authors'
    resize (``aligned=False``, kept as the default for their checkpoints) shifts pixels by up to half a pixel."""
    from fomm.models.fomm import deform_input
    from fomm.ops import make_coordinate_grid

    feats = torch.rand(2, 5, 64, 64)
    ident = make_coordinate_grid((coarse, coarse))[None].expand(2, coarse, coarse, 2)
    torch.testing.assert_close(deform_input(feats, ident, aligned=True), feats, atol=1e-5, rtol=0)
    assert (deform_input(feats, ident) - feats).abs().mean() > 0.05
    # Same size: no resize, both modes are the plain warp.
    full = make_coordinate_grid((64, 64))[None].expand(2, 64, 64, 2)
    torch.testing.assert_close(deform_input(feats, full), deform_input(feats, full, aligned=True))


@torch.no_grad()
def test_align_deformation_config_reaches_the_generator():
    raw = {"dataset_params": {"frame_shape": [64, 64, 3]},
           "model_params": {
               "common_params": {"num_kp": 3, "num_channels": 3, "estimate_jacobian": True},
               "kp_detector_params": {"temperature": 0.1, "block_expansion": 4, "max_features": 16,
                                      "num_blocks": 2, "scale_factor": 0.5},
               "generator_params": {"block_expansion": 4, "max_features": 16, "num_down_blocks": 0,
                                    "num_bottleneck_blocks": 1, "estimate_occlusion_map": True,
                                    "dense_motion_params": {"block_expansion": 4, "max_features": 16,
                                                            "num_blocks": 2, "scale_factor": 0.5}}}}
    plain = fomm.load_model(fomm.load_config(raw))
    raw["model_params"]["generator_params"]["align_deformation"] = True
    aligned = fomm.load_model(fomm.load_config(raw))
    assert not plain.generator.align_deformation and aligned.generator.align_deformation
    aligned.generator.load_state_dict(plain.generator.state_dict())
    aligned.kp_detector.load_state_dict(plain.kp_detector.state_dict())
    src, drv = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    outs = [m.generator(src, kp_source=m.kp_detector(src), kp_driving=m.kp_detector(drv)) for m in (plain, aligned)]
    # Same weights, same 32x32 motion; only the resize to the 64x64 features differs.
    torch.testing.assert_close(outs[0]["deformation"], outs[1]["deformation"])
    assert (outs[0]["prediction"] - outs[1]["prediction"]).abs().max() > 1e-4
