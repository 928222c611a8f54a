"""Realtime options: reduced precision on the torch path (quality-checked), the PSNR helper, and the CLI wiring of
``fomm export-onnx`` / ``fomm animate --backend onnx``."""

from __future__ import annotations

import argparse
import importlib.util
import math

import numpy as np
import pytest
import torch
from helpers import decode_fp32_and_view

import fomm
from fomm.animate import Animator
from fomm.errors import FommError
from fomm.io.reading import iter_frames
from fomm.realtime import autocast_dtype, cpu_supports_bf16, psnr


def test_psnr_values():
    ref = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert psnr(ref, ref) == math.inf
    est = ref + torch.tensor([0.1, -0.1, 0.1, -0.1])
    assert psnr(est, ref) == pytest.approx(20.0)  # peak-to-peak range 1, rmse 0.1
    # Range-relative by default: scaling both signals leaves it unchanged; a fixed peak does not.
    assert psnr(est * 0.01, ref * 0.01) == pytest.approx(20.0)
    assert psnr(est * 0.01, ref * 0.01, peak=1.0) == pytest.approx(60.0)


def test_precision_choices():
    assert autocast_dtype("fp32", "cpu") is None
    with pytest.raises(FommError, match="fp16 needs a CUDA"):
        autocast_dtype("fp16", "cpu")
    with pytest.raises(FommError, match="unknown precision"):
        autocast_dtype("int4", "cpu")
    if cpu_supports_bf16():
        assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    else:
        with pytest.raises(FommError, match="no native bf16"):
            autocast_dtype("bf16", "cpu")


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16 kernels")
def test_bf16_channels_last_quality(golden_dir):
    """bf16 decoder + channels-last stays >= 40 dB (range-relative) from fp32 on the golden weights and inputs."""
    ref = np.load(golden_dir / "fomm_small_main_ref.npz")
    source, driving = torch.from_numpy(ref["source"]), torch.from_numpy(ref["driving"])
    model = fomm.load_model(golden_dir / "fomm_small_main.yaml", golden_dir / "fomm_small_main_cpk.pth.tar")
    fp32 = Animator(model, batch_size=4)
    fp32.set_source(source)
    expected = fp32.animate_batch(driving)
    fast = Animator(model, batch_size=4, precision="bf16", channels_last=True)
    fast.set_source(source)
    got = fast.animate_batch(driving)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert not torch.equal(got, expected)  # bf16 really ran
    assert psnr(got, expected) >= 40.0
    # channels-last alone changes nothing beyond float rounding.
    cl = Animator(model, batch_size=4, channels_last=True)
    cl.set_source(source)
    torch.testing.assert_close(cl.animate_batch(driving), expected, rtol=0, atol=1e-5)


def test_decode_fp32_islands_keeps_deformation_exact(golden_dir):
    """Under autocast, ``fp32_islands=True`` leaves the dense-motion outputs (deformation, masks) in fp32."""
    if not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16 kernels")
    model = fomm.load_model(golden_dir / "fomm_small_main.yaml", golden_dir / "fomm_small_main_cpk.pth.tar")
    src = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        kp = model.kp_detector(src)
        enc = model.generator.encode_source(src)
        full = model.generator.decode(enc, kp, kp)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            island = model.generator.decode(enc, kp, kp, fp32_islands=True)
            loose = model.generator.decode(enc, kp, kp)
    assert island["deformation"].dtype == torch.float32 and island["prediction"].dtype == torch.float32
    torch.testing.assert_close(island["deformation"], full["deformation"], rtol=0, atol=1e-6)
    assert loose["mask"].dtype == torch.bfloat16  # without the island the masks come out of bf16 convs


def _perturb_norms(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial batch-norm statistics and affines, so folding them is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)


def test_low_precision_view_runs_in_bf16_without_autocast(golden_dir):
    """The view's bottleneck, up blocks and dense-motion hourglass run bf16 convs with no autocast around them; the
    heads, the warp and the output stay fp32 and close to the fp32 decode; the original is untouched."""
    if not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16 kernels")
    from fomm.models.fomm.precision import (
        CenteredLowPrecisionConv,
        LowPrecision,
        low_precision_kp_detector,
        low_precision_view,
    )

    model = fomm.load_model(golden_dir / "fomm_small_main.yaml", golden_dir / "fomm_small_main_cpk.pth.tar")
    gen = model.generator
    view = low_precision_view(gen, torch.bfloat16)
    dense, vdense = gen.dense_motion_network, view.dense_motion_network
    assert isinstance(view.bottleneck, LowPrecision) and vdense is not dense
    assert vdense.mask is dense.mask and vdense.occlusion is dense.occlusion  # heads shared, fp32
    assert isinstance(vdense.hourglass, LowPrecision) and not isinstance(dense.hourglass, LowPrecision)
    assert isinstance(view.final, CenteredLowPrecisionConv) and view.final.conv is gen.final
    assert gen.bottleneck.r0.conv1.weight.dtype == torch.float32  # the original is untouched
    assert dense.hourglass.encoder.down_blocks[0].conv.weight.dtype == torch.float32
    assert view.bottleneck.module.r0.conv1.weight.dtype == torch.bfloat16
    seen: list[torch.dtype] = []
    hook = view.bottleneck.module.r0.conv1.register_forward_hook(lambda m, i, o: seen.append(i[0].dtype))
    src = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    drv = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    full, got = decode_fp32_and_view(model, view, src, drv)
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16} and not torch.is_autocast_enabled("cpu")
    assert got["prediction"].dtype == torch.float32 and got["deformation"].dtype == torch.float32
    assert got["mask"].dtype == torch.float32
    assert 0 < (got["deformation"] - full["deformation"]).abs().max() < 1e-2  # bf16 trunk: close, not equal
    assert not torch.equal(got["prediction"], full["prediction"])
    assert psnr(got["prediction"], full["prediction"]) >= 40.0

    lp_kp = low_precision_kp_detector(model.kp_detector, torch.bfloat16)
    assert lp_kp.kp is model.kp_detector.kp and isinstance(lp_kp.predictor, LowPrecision)
    with torch.no_grad():
        kp, kp_lp = model.kp_detector(src), lp_kp(src)
    assert kp_lp["value"].dtype == torch.float32
    torch.testing.assert_close(kp_lp["value"], kp["value"], rtol=0, atol=2e-2)


def test_centered_low_precision_conv():
    """conv_lowp(x - c) + conv_fp32(c) is the conv in exact arithmetic (zero padding included) and removes the
    error bf16 weights put on inputs with a large mean."""
    from fomm.models.fomm.precision import CenteredLowPrecisionConv

    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(8, 3, 7, padding=3)
    mean = torch.rand(1, 8, 1, 1, generator=g) * 4
    x = mean + 0.05 * torch.randn(2, 8, 20, 24, generator=g)  # large per-channel mean, small variation
    with torch.no_grad():
        expected = conv(x)
        exact = CenteredLowPrecisionConv(conv, torch.float64)  # a "low" precision without rounding: the algebra
        torch.testing.assert_close(exact(x), expected, rtol=0, atol=1e-5)
        assert exact.center is not None and exact(x[:1] + 1).shape == (1, 3, 20, 24)  # the centre stays put
        torch.testing.assert_close(exact.center.float(), x.mean(dim=(0, 2, 3), keepdim=True))
        if not cpu_supports_bf16():
            return
        # fp32 input, and an input already in bf16 (as the bf16 up blocks hand it over): both ~35x closer to fp32.
        for inp in (x, x.bfloat16()):
            expected = conv(inp.float())
            centred = CenteredLowPrecisionConv(conv, torch.bfloat16)
            got = centred(inp)
            plain = torch.nn.functional.conv2d(inp.bfloat16(), conv.weight.bfloat16(), conv.bias.bfloat16(),
                                               padding=3).float()
            assert got.dtype == torch.float32
            assert (got - expected).abs().mean() * 10 < (plain - expected).abs().mean()
        centred.reset()
        assert centred.center is None
        centred(x + 1)
        torch.testing.assert_close(centred.center.float(), (x + 1).mean(dim=(0, 2, 3), keepdim=True),
                                   rtol=0, atol=0.05)


def test_low_precision_refuses_convs_it_cannot_cast():
    from fomm.models.fomm.precision import LowPrecision

    with pytest.raises(ValueError, match="convs outside"):
        LowPrecision(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3)).eval(), torch.bfloat16)


def test_polyphase_up_block_equals_upsample_conv(monkeypatch):
    """PolyphaseUpBlock2d (2x2 phase kernels, BN folded) reproduces nearest-upsample + 3x3 conv + BN + ReLU, in
    both memory formats, on odd sizes too, and exports to ONNX with the same values."""
    from fomm.models.fomm.blocks import UpBlock2d
    from fomm.models.fomm.fuse import PolyphaseUpBlock2d

    g = torch.Generator().manual_seed(0)
    up = UpBlock2d(6, 5).eval()
    with torch.no_grad():
        for t in (up.norm.running_mean, up.norm.bias):
            t.copy_(torch.rand(t.shape, generator=g) - 0.5)
        for t in (up.norm.running_var, up.norm.weight):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
    fast = PolyphaseUpBlock2d.from_up_block(up)
    assert fast.conv.weight.numel() * 9 == up.conv.weight.numel() * 16  # 16 taps per input pixel instead of 36
    for shape in ((2, 6, 8, 8), (1, 6, 5, 7)):
        x = torch.randn(*shape, generator=g)
        with torch.no_grad():
            expected = up(x)
            torch.testing.assert_close(fast(x), expected, rtol=0, atol=1e-5)
            cl = fast.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
            assert cl.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(cl, expected, rtol=0, atol=1e-5)
            fast.to(memory_format=torch.contiguous_format)
            with monkeypatch.context() as m:  # the graph form used while exporting to ONNX
                m.setattr(torch.jit, "is_tracing", lambda: True)
                torch.testing.assert_close(fast(x), expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="eval mode"):
        PolyphaseUpBlock2d.from_up_block(UpBlock2d(4, 4).train())


def test_fused_view_matches_the_networks(golden_dir):
    """fused_view folds every batch norm (residual, down/same, up blocks; polyphase outside hourglass decoders) and
    merges the dense-motion heads; decode and keypoints equal the original's; the original is untouched."""
    from fomm.models.fomm.blocks import ResBlock2d, UpBlock2d
    from fomm.models.fomm.fuse import ConvReLU2d, FoldedResBlock2d, PolyphaseUpBlock2d, fused_view

    model = fomm.load_model(golden_dir / "fomm_small_main.yaml", golden_dir / "fomm_small_main_cpk.pth.tar")
    gen, kpd = model.generator, model.kp_detector
    _perturb_norms(gen, 0)
    _perturb_norms(kpd, 1)
    view, kview = fused_view(gen), fused_view(kpd)
    assert all(isinstance(b, PolyphaseUpBlock2d) for b in view.up_blocks)
    assert all(isinstance(b, FoldedResBlock2d) for b in view.bottleneck)
    assert isinstance(view.first, ConvReLU2d) and not view.first.pool
    hg = view.dense_motion_network.hourglass
    assert all(isinstance(b, ConvReLU2d) and b.pool for b in hg.encoder.down_blocks)
    assert all(isinstance(b, ConvReLU2d) and b.upsample for b in hg.decoder.up_blocks)
    assert all(isinstance(b, ConvReLU2d) and b.upsample for b in kview.predictor.decoder.up_blocks)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in [*view.modules(), *kview.modules()])
    assert view.dense_motion_network.merged_heads.out_channels == gen.dense_motion_network.num_kp + 2
    # The original keeps its blocks and has no merged heads.
    assert isinstance(gen.bottleneck.r0, ResBlock2d) and isinstance(gen.up_blocks[0], UpBlock2d)
    assert "merged_heads" not in gen.dense_motion_network._modules
    src = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    drv = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        kp_s, kp_d = kpd(src), kpd(drv)
        for key, value in kview(drv).items():
            torch.testing.assert_close(value, kp_d[key], rtol=0, atol=1e-5)
        enc, fenc = gen.encode_source(src), view.encode_source(src)
        torch.testing.assert_close(fenc.features, enc.features, rtol=0, atol=1e-5)
        got, expected = view.decode(enc, kp_s, kp_d, with_deformed=False), gen.decode(enc, kp_s, kp_d)
    assert "deformed" not in got and "deformed" in expected
    for key in ("prediction", "mask", "occlusion_map", "deformation"):
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="eval mode"):
        FoldedResBlock2d.from_res_block(ResBlock2d(4).train())


def test_folded_res_block_keeps_the_residual_dtype():
    """bf16 convs inside, fp32 residual stream: the output is fp32 and the block casts its own conv inputs."""
    from fomm.models.fomm.blocks import ResBlock2d
    from fomm.models.fomm.fuse import FoldedResBlock2d

    block = ResBlock2d(6).eval()
    _perturb_norms(block, 2)
    folded = FoldedResBlock2d.from_res_block(block)
    folded.to(torch.bfloat16)  # buffers (the first norm) stay fp32, convs go bf16
    assert folded.scale.dtype == torch.float32 and folded.conv1.weight.dtype == torch.bfloat16
    x = torch.randn(2, 6, 9, 7, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out, expected = folded(x), block(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=0.1)


# ----------------------------------------------------------------------------------------------------------- CLI
# Not a module-level importorskip: that would also skip the precision tests above when onnxruntime is missing.
needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx")
                                is None, reason="the ONNX CLI tests need the 'onnx' extra: pip install 'fomm[onnx]'")


def _parser() -> argparse.ArgumentParser:
    from fomm.cli import animate, export_onnx

    parser = argparse.ArgumentParser(prog="fomm")
    sub = parser.add_subparsers()
    export_onnx.register(sub)
    animate.register(sub)
    return parser


def _run(argv: list[str]) -> int:
    """``fomm ...`` with export-onnx registered (main.py's SUBCOMMANDS gets it when the lead integrates the branch);
    main() turns FommError into exit code 2, so route our parser through it. Options out of range are refused by
    argparse itself (exit 2 via SystemExit), which a shell sees the same way."""
    import fomm.cli.main as cli_main

    orig = cli_main.build_parser
    cli_main.build_parser = _parser
    try:
        return cli_main.main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        cli_main.build_parser = orig


@pytest.fixture(scope="module")
def small(golden_dir):
    return ["--config", str(golden_dir / "fomm_small_main.yaml"),
            "--checkpoint", str(golden_dir / "fomm_small_main_cpk.pth.tar")]


@needs_onnx
def test_cli_export_then_animate_onnx_matches_torch(small, tmp_path, capsys):
    from fomm.assets import example_path

    onnx_dir = tmp_path / "export"
    assert _run(["export-onnx", *small, "-o", str(onnx_dir)]) == 0
    assert "opset 17" in capsys.readouterr().out
    driving = tmp_path / "drv"
    driving.mkdir()
    from fomm.io.image import write_image

    for i, frame in zip(range(5), iter_frames(example_path("driving.mp4")), strict=False):
        write_image(driving / f"{i:03d}.png", frame)
    common = ["--source", str(example_path("source.png")), "--driving", str(driving), "-q"]
    assert _run(["animate", "--backend", "onnx", "--onnx-dir", str(onnx_dir), *common,
                 "-o", str(tmp_path / "onnx") + "/"]) == 0
    assert _run(["animate", *small, *common, "-o", str(tmp_path / "torch") + "/"]) == 0
    onnx_frames = sorted((tmp_path / "onnx").glob("*.png"))
    torch_frames = sorted((tmp_path / "torch").glob("*.png"))
    assert len(onnx_frames) == len(torch_frames) == 5
    from fomm.io.image import read_image

    for a, b in zip(onnx_frames, torch_frames, strict=True):
        diff = np.abs(read_image(a).astype(int) - read_image(b).astype(int))
        assert diff.max() <= 1  # uint8 rounding of outputs equal within 1e-4


@needs_onnx
def test_cli_example_on_onnx_uses_the_shipped_models_own_pair(tmp_path, capsys):
    """The body model's export remembers its name: --example animates the body pair, not the face fallback."""
    from fomm.pretrained import REGISTRY, load_pretrained
    from fomm.realtime import OnnxModel, export_onnx

    export_onnx(load_pretrained("actions-64"), tmp_path / "export")
    assert OnnxModel(tmp_path / "export").meta["pretrained"] == "actions-64"
    out = tmp_path / "out.mp4"
    assert _run(["animate", "--backend", "onnx", "--onnx-dir", str(tmp_path / "export"), "--example",
                 "-o", str(out), "-q"]) == 0
    from fomm.assets import example_path

    expected = sum(1 for _ in iter_frames(example_path(REGISTRY["actions-64"].example_driving)))
    assert expected != sum(1 for _ in iter_frames(example_path("driving.mp4")))  # the two pairs are told apart
    assert len(list(iter_frames(out))) == expected


@needs_onnx
def test_cli_animate_onnx_exports_on_the_fly(small, tmp_path):
    from fomm.assets import example_path

    out = tmp_path / "out.mp4"
    drv = tmp_path / "d"
    drv.mkdir()
    from fomm.io.image import write_image

    for i, frame in zip(range(3), iter_frames(example_path("driving.mp4")), strict=False):
        write_image(drv / f"{i:03d}.png", frame)
    assert _run(["animate", "--backend", "onnx", *small, "--source", str(example_path("source.png")),
                 "--driving", str(drv), "-o", str(out), "-q"]) == 0
    assert len(list(iter_frames(out))) == 3


@needs_onnx
def test_cli_onnx_errors(small, tmp_path, capsys):
    base = ["animate", "--example", "-o", str(tmp_path / "o.mp4")]
    assert _run([*base, "--backend", "onnx", "--onnx-dir", str(tmp_path / "missing")]) == 2
    assert "not an ONNX export" in capsys.readouterr().err
    assert _run([*base, "--onnx-dir", str(tmp_path)]) == 2
    assert "--onnx-dir needs --backend onnx" in capsys.readouterr().err
    assert _run([*base, "--backend", "onnx", "--precision", "bf16", *small]) == 2
    assert "ONNX graphs run in fp32" in capsys.readouterr().err
    assert _run(["export-onnx", *small, "--opset", "21", "-o", str(tmp_path / "x")]) == 2
    assert "opset 21 is not supported" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()
