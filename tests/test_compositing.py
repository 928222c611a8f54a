"""Depth-aware compositing (issue #20): known-answer scenes for the renderer, stereo, DOF and fog, the stage's
fixed order, ``fomm composite`` end to end, and its refusals.

The scenes are exact: two planes of noise texture, a background at depth 0.25 and a square at 0.75, with the
camera chosen so the background moves exactly 2 px and the square 6 px (``tx * W = 8``, pivot 0).
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from hostile import assert_refused, leftovers, run_main

from fomm.compositing.camera import ParallaxConfig, camera_at
from fomm.compositing.effects import depth_of_field, fog
from fomm.compositing.render import (
    Camera,
    _render_general,
    _row_neighbours,
    background_fill,
    render_layers,
    render_view,
    splat_flow,
    surface_tolerance,
)
from fomm.compositing.stage import CompositeOptions, CompositeStage
from fomm.compositing.stereo import (
    DUBOIS_LEFT,
    DUBOIS_RIGHT,
    StereoConfig,
    anaglyph,
    eye_cameras,
    pack_stereo,
    packed_size,
)
from fomm.errors import InputError
from fomm.io.writing import VideoWriter

H, W = 48, 64
SQ = (slice(16, 32), slice(20, 36))  # rows, cols of the square


def two_planes(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise background at depth 0.25 and a noise square at 0.75 whose colours the background never has
    (red channel >= 200 in the square, <= 150 outside): ``([1, 3, H, W] 0-255, [1, 1, H, W])``."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 151, (1, 3, H, W), generator=g).float()
    img[:, 0, SQ[0], SQ[1]] = torch.randint(200, 256, (16, 16), generator=g).float()
    depth = torch.full((1, 1, H, W), 0.25)
    depth[..., SQ[0], SQ[1]] = 0.75
    return img, depth


CAM = Camera(tx=8 / W)  # background (0.25) moves 2 px, square (0.75) moves 6 px


def general_view(image, depth, camera, fill="edge"):
    """The renderer's general path (splat with packed keys, 2-D sample and fill) even for a sideways move, which
    :func:`render_view` sends down its row-by-row path (the fill still looks left and right only, as for any
    sideways move)."""
    tol = surface_tolerance(camera, tuple(image.shape[-2:]))
    return _render_general(image, depth, camera, tol, fill, vertical=False)


RENDER_PATHS = pytest.mark.parametrize("render", [render_view, general_view], ids=["rows", "general"])


@RENDER_PATHS
def test_each_plane_moves_by_its_exact_shift(render):
    img, depth = two_planes()
    out, out_depth = render(img, depth, CAM)
    # The square, moved 6 px, bit for bit.
    assert torch.equal(out[..., SQ[0], 26:42], img[..., SQ[0], SQ[1]])
    # The background, moved 2 px, where the square neither was nor is.
    rows = slice(0, 16)
    assert torch.equal(out[..., rows, 2:], img[..., rows, :-2])
    assert torch.equal(out[..., SQ[0], 44:], img[..., SQ[0], 42:-2])
    assert torch.equal(out_depth[..., SQ[0], 26:42], depth[..., SQ[0], SQ[1]])


@RENDER_PATHS
def test_the_strip_that_opens_is_filled_from_the_background_only(render):
    img, depth = two_planes()
    out, out_depth = render(img, depth, CAM)
    # Background left of the square lands at <= col 21; the square starts at col 26: cols 22-25 opened.
    strip = out[..., SQ[0], 22:26]
    assert (strip[:, 0] <= 150).all(), "square colour leaked into the disocclusion"
    assert torch.equal(out_depth[..., SQ[0], 22:26], torch.full_like(out_depth[..., SQ[0], 22:26], 0.25))
    # Edge extension: every strip pixel is a copy of a background pixel of the same row of the output.
    left_edge = out[..., SQ[0], 21:22]
    assert torch.equal(strip, left_edge.expand_as(strip))


def test_pivot_keeps_its_plane_still_and_a_still_camera_is_bit_exact():
    img, depth = two_planes()
    out, _ = render_view(img, depth, Camera(tx=8 / W, pivot=0.25))
    assert torch.equal(out[..., :16, :], img[..., :16, :])
    assert torch.equal(out[..., SQ[0], 40:], img[..., SQ[0], 40:])
    assert torch.equal(out[..., SQ[0], 24:40], img[..., SQ[0], SQ[1]])  # the square: 8 * 0.5 = 4 px
    same, same_depth = render_view(img, depth, Camera(tx=0.0))
    assert same is img and same_depth is depth
    stage = CompositeStage(CompositeOptions(parallax=ParallaxConfig("swing", amount=0.0)), depth=lambda f: np.full(
        f.shape[:2], 0.5, np.float32))
    frame = img[0].permute(1, 2, 0).to(torch.uint8).numpy()
    assert np.array_equal(stage(frame), frame)


@pytest.mark.parametrize("shift", [0.3, 0.55, 2.25])
def test_a_sub_pixel_move_shifts_a_plane_centroid_exactly(shift):
    img, depth = two_planes()
    redness = ((img[:, 0] >= 200).float() * 255.0)[:, None].expand(1, 3, H, W).contiguous()
    out, _ = render_view(redness, depth, Camera(tx=shift / 0.75 / W))
    xs = torch.arange(W, dtype=torch.float32)

    def centroid(t):
        m = t[0, 0]
        return float((m * xs).sum() / m.sum())

    assert abs(centroid(out) - centroid(redness) - shift) < 0.05
    assert abs(float(out[0, 0].sum() - redness[0, 0].sum())) / float(redness[0, 0].sum()) < 0.01


@pytest.mark.parametrize("shared", [True, False], ids=["one-frame-two-eyes", "two-frames"])
def test_the_row_path_renders_what_the_general_path_renders(shared):
    """Sideways moves (stereo eyes, swing/orbit) take the row-by-row path; on random piecewise-smooth scenes with
    fractional moves it must agree with the general path. They differ only by the general path's flow
    quantisation (a power-of-two step of at most 1/256 px), a few hundredths of a grey level."""
    g = torch.Generator().manual_seed(1)
    for trial in range(12):
        h, w = 40, 56
        img = torch.randint(0, 256, (1 if shared else 2, 3, h, w), generator=g).float()
        coarse = (torch.rand(img.shape[0], 1, h // 8, w // 8, generator=g) * 1024).round() / 1024
        mode = {"mode": "nearest"} if trial % 2 else {"mode": "bilinear", "align_corners": False}
        depth = torch.nn.functional.interpolate(coarse, size=(h, w), **mode)
        if shared:
            img, depth = img.expand(2, -1, -1, -1), depth.expand(2, -1, -1, -1)
        tx, pivot = (float(v) for v in torch.rand(2, generator=g))
        move = Camera(tx=0.4 * tx - 0.2, pivot=pivot)
        cams = [(move, Camera(tx=0.013, pivot=0.3)), (move, Camera(tx=-0.013, pivot=0.3))]
        fast, fast_depth = render_view(img, depth, cams)
        slow, slow_depth = general_view(img, depth, cams)
        assert (fast - slow).abs().max() < 0.05, trial
        assert (fast_depth - slow_depth).abs().max() < 1e-3, trial


def test_row_neighbours_are_the_nearest_solid_pixels_of_the_row():
    g = torch.Generator().manual_seed(2)
    solid = torch.rand(3, 7, 9, generator=g) > 0.6
    holes = (~solid).reshape(-1).nonzero().squeeze(1)
    left, has_left, right, has_right = _row_neighbours(holes, 9)
    flat = solid.reshape(-1)
    for i, hole in enumerate(holes.tolist()):
        row = hole // 9 * 9
        lefts = [p for p in range(row, hole) if flat[p]]
        rights = [p for p in range(hole + 1, row + 9) if flat[p]]
        assert bool(has_left[i]) == bool(lefts) and bool(has_right[i]) == bool(rights)
        assert not lefts or int(left[i]) == lefts[-1]
        assert not rights or int(right[i]) == rights[0]


@pytest.mark.parametrize("camera", [CAM, Camera(scale=0.2)], ids=["sideways", "dolly"])
def test_an_inpainter_sees_the_hole_with_the_foreground_masked_out(camera):
    img, depth = two_planes()
    seen = {}

    def inpainter(image, mask):
        seen["image"], seen["mask"] = image.clone(), mask.clone()
        return torch.full_like(image, 7.0)

    out, _ = render_view(img, depth, camera, fill=inpainter)
    edge, _ = render_view(img, depth, camera)
    mask = seen["mask"][0, 0]
    assert mask.any() and (seen["image"][0, 0][mask] <= 150).all(), "the inpainter saw square colour under its mask"
    changed = (out != edge).any(1)[0]
    assert changed.any() and bool(mask[changed].all()), "pixels outside the mask were repainted"
    opencv, _ = render_view(img, depth, camera, fill="opencv")
    assert (opencv[:, 0, SQ[0], 22:26] <= 150).all() if camera is CAM else opencv.shape == img.shape


def test_the_nearer_pixel_wins_where_two_land_on_the_same_target():
    depth = torch.tensor([[[[0.0, 1.0, 0.0, 0.0]]]])
    flow = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]]]])  # pixel 0 lands on pixel 1
    moved, _, covered = splat_flow(depth, flow)
    assert moved[0, 0, 0].tolist() == [0.0, 0.0, 0.0, 0.0] and covered[0, 0, 0].tolist() == [False, True, True, True]
    depth = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]])
    moved, _, covered = splat_flow(depth, flow)
    assert moved[0, 0, 0].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_background_fill_picks_the_far_side_in_two_dimensions():
    img = torch.zeros(1, 1, 5, 5)
    img[..., :, :2] = 10.0  # far, left
    img[..., :, 3:] = 99.0  # near, right
    depth = torch.where(img > 50, 1.0, 0.0)
    solid = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    solid[..., 2] = False
    out, out_depth = background_fill(img, depth, solid, tolerance=0.1)
    assert (out[..., 2] == 10.0).all() and (out_depth[..., 2] == 0.0).all()


def test_layered_renderer_moves_planes_and_leaves_no_hole():
    img, depth = two_planes()
    out, _ = render_layers(img, depth, CAM, layers=4)
    assert torch.allclose(out[..., SQ[0], 28:40], img[..., SQ[0], 22:34], atol=1e-3)
    assert torch.allclose(out[..., :12, 4:], img[..., :12, 2:-2], atol=1e-3)
    assert (out[:, 0, SQ[0], 22:26] <= 150 + 1e-3).all()


@pytest.mark.parametrize("camera", [CAM, Camera(scale=0.2)], ids=["sideways", "dolly"])
def test_renderer_runs_on_any_device_dtype_it_is_given(camera):
    img, depth = two_planes()
    out, _ = render_view(img.double(), depth.double(), CAM)
    assert out.dtype == torch.float64 and torch.equal(out[..., SQ[0], 26:42], img.double()[..., SQ[0], SQ[1]])
    reference, _ = render_view(img, depth, camera)
    for dtype in (torch.float16, torch.bfloat16):
        out, out_depth = render_view(img.to(dtype), depth.to(dtype), camera)
        assert out.dtype == out_depth.dtype == dtype
        # Only the final rounding to the half type differs (0-255 holds 8 bits of mantissa in bf16).
        assert torch.allclose(out.float(), reference, atol=1.0, rtol=0.01)


# ---------------------------------------------------------------- stereo


def test_stereo_eyes_move_half_the_disparity_each_way():
    img = torch.randint(0, 256, (1, 3, 20, 200)).float()
    depth = torch.ones(1, 1, 20, 200)
    left, right = eye_cameras(StereoConfig("sbs", divergence=2.0, convergence=0.0))
    out_l, _ = render_view(img, depth, left)
    out_r, _ = render_view(img, depth, right)
    assert torch.equal(out_l[..., 2:], img[..., :-2])
    assert torch.equal(out_r[..., :-2], img[..., 2:])


def test_stereo_packings_sizes_and_eye_order():
    left = torch.full((1, 3, 10, 20), 10.0)
    right = torch.full((1, 3, 10, 20), 200.0)
    for fmt, (h, w) in {"sbs": (10, 40), "hsbs": (10, 20), "tb": (20, 20), "htb": (10, 20), "cross": (10, 40),
                        "anaglyph": (10, 20)}.items():
        packed = pack_stereo(left, right, StereoConfig(fmt))
        assert tuple(packed.shape[-2:]) == (h, w) == packed_size(fmt, (10, 20)), fmt
    sbs = pack_stereo(left, right, StereoConfig("sbs"))
    assert (sbs[..., :20] == 10).all() and (sbs[..., 20:] == 200).all()  # left first
    half = pack_stereo(left, right, StereoConfig("hsbs"))
    assert (half[..., :10] == 10).all() and (half[..., 10:] == 200).all()
    tb = pack_stereo(left, right, StereoConfig("htb"))
    assert (tb[..., :5, :] == 10).all() and (tb[..., 5:, :] == 200).all()
    cross = pack_stereo(left, right, StereoConfig("cross"))
    assert (cross[..., :20] == 200).all() and (cross[..., 20:] == 10).all()
    with pytest.raises(InputError, match="even"):
        pack_stereo(left[..., :19], right[..., :19], StereoConfig("hsbs"))


def test_anaglyph_of_white_and_black_eyes_is_the_dubois_matrix_by_hand():
    white = torch.full((1, 3, 2, 2), 255.0)
    black = torch.zeros(1, 3, 2, 2)
    got = anaglyph(white, black)[0, :, 0, 0]
    by_hand = [min(255.0, max(0.0, 255.0 * sum(row))) for row in DUBOIS_LEFT]
    assert got.tolist() == pytest.approx(by_hand)
    got = anaglyph(black, white)[0, :, 0, 0]
    assert got.tolist() == pytest.approx([min(255.0, max(0.0, 255.0 * sum(row))) for row in DUBOIS_RIGHT])
    mid = torch.full((1, 3, 1, 1), 100.0)
    assert anaglyph(mid, mid, "gray")[0, :, 0, 0].tolist() == pytest.approx([100.0, 100.0, 100.0], abs=1e-3)


def test_mkv_output_carries_the_stereo_mode_tag(tmp_path):
    out = tmp_path / "sbs.mkv"
    with VideoWriter(out, 25, metadata={"stereo_mode": StereoConfig("sbs").mkv_stereo_mode}) as w:
        for _ in range(3):
            w.write(np.zeros((16, 32, 3), np.uint8))
    with av.open(str(out)) as c:
        assert c.streams.video[0].metadata.get("stereo_mode") == "left_right"


# ---------------------------------------------------------------- DOF and fog


def test_dof_keeps_the_focus_plane_exact_and_blur_grows_with_aperture():
    img, depth = two_planes()
    blurred = [depth_of_field(img, depth, focus=0.75, aperture=a) for a in (1.0, 3.0, 8.0)]
    for out in blurred:
        assert torch.equal(out[..., SQ[0], SQ[1]], img[..., SQ[0], SQ[1]])
    changes = [float((out - img)[..., :12, :].abs().mean()) for out in blurred]
    assert 0 < changes[0] < changes[1] < changes[2]


def test_dof_never_bleeds_a_sharp_foreground_onto_the_blurred_background():
    img = torch.zeros(1, 3, H, W)
    img[..., SQ[0], SQ[1]] = 255.0  # a white square in focus over a black background out of focus
    depth = torch.full((1, 1, H, W), 0.25)
    depth[..., SQ[0], SQ[1]] = 0.75
    out = depth_of_field(img, depth, focus=0.75, aperture=8.0)
    assert torch.equal(out[..., SQ[0], SQ[1]], img[..., SQ[0], SQ[1]])  # the edge stays sharp
    assert float(out[..., SQ[0], 10:20].max()) == 0.0 and float(out[..., 32:40, SQ[1]].max()) == 0.0


def test_fog_leaves_depth_one_alone_and_tends_to_its_colour_far_away():
    img, _ = two_planes()
    near = torch.ones(1, 1, H, W)
    assert torch.equal(fog(img, near, 5.0, (200.0, 210.0, 230.0)), img)
    far = torch.zeros(1, 1, H, W)
    thick = fog(img, far, 30.0, (200.0, 210.0, 230.0))
    assert torch.allclose(thick, torch.tensor([200.0, 210.0, 230.0]).view(1, 3, 1, 1).expand_as(img), atol=1e-6)
    thin = fog(img, far, 1.0, (200.0, 210.0, 230.0))
    assert float((thin - 215).abs().mean()) > float((thick - 215).abs().mean())


# ---------------------------------------------------------------- stage and paths


def test_camera_paths_start_at_the_original_view():
    for move in ("orbit", "swing", "dolly", "zoom"):
        assert camera_at(ParallaxConfig(move, amount=0.05, period=2.0), 0.0).still
        assert camera_at(ParallaxConfig(move, amount=0.05, period=2.0), 2.0).tx == pytest.approx(0.0, abs=1e-12)
    assert camera_at(ParallaxConfig("swing", amount=0.05, period=4.0), 1.0).tx == pytest.approx(0.05)
    assert camera_at(ParallaxConfig("dolly", amount=0.05), 2.0).scale > 0 > camera_at(
        ParallaxConfig("zoom", amount=0.05), 2.0).scale


def test_stage_renders_both_eyes_from_the_moved_camera():
    img, depth = two_planes()
    frame = img[0].permute(1, 2, 0).to(torch.uint8).numpy()
    d = depth[0, 0].numpy()
    opts = CompositeOptions(stereo=StereoConfig("sbs", divergence=100 * 4 / W, convergence=0.25))
    out = CompositeStage(opts, depth=lambda f: d)(frame)
    assert out.shape == (H, 2 * W, 3)
    # Each eye moves half the 4-px divergence times the square's 0.5 from the convergence depth: +1 and -1 px.
    assert np.array_equal(out[SQ[0], 21:37], frame[SQ[0], SQ[1]])
    assert np.array_equal(out[SQ[0], W + 19:W + 35], frame[SQ[0], SQ[1]])


def test_stage_reads_the_depth_view_and_refuses_without_one():
    from fomm.animate.outputs import FrameOutputs

    img, depth = two_planes()
    frame = img[0].permute(1, 2, 0).to(torch.uint8).numpy()
    stage = CompositeStage(CompositeOptions(fog=(5.0, (255.0, 255.0, 255.0))))
    outputs = FrameOutputs(prediction=torch.zeros(1, 3, H, W))
    with pytest.raises(InputError, match="depth"):
        stage(frame, outputs)
    outputs.views["depth"] = np.ones((H // 2, W // 2), np.float32)  # another size: resized
    assert np.array_equal(stage(frame, outputs), frame)


def test_options_are_range_checked():
    for bad in (dict(dof=(1.5, 2.0)), dict(fog=(-1.0, (0.0, 0.0, 0.0))), dict(plate_depth=2.0),
                dict(renderer="raytrace"), dict(layers=1)):
        with pytest.raises(InputError):
            CompositeOptions(**bad)
    with pytest.raises(InputError):
        StereoConfig("sbs3d")
    with pytest.raises(InputError):
        ParallaxConfig("spin")


# ---------------------------------------------------------------- fomm composite


def _clip(tmp_path, frames=4, size=(32, 48)):
    from fomm.io.writing import open_writer

    # An odd width goes into PNG frames: the MP4 writer pads odd sizes to even ones.
    video = str(tmp_path / "clip.mp4") if size[1] % 2 == 0 else f"{tmp_path}/clip/"
    g = np.random.default_rng(0)
    with open_writer(video, 25) as w:
        for _ in range(frames):
            w.write(g.integers(0, 256, (*size, 3), dtype=np.uint8))
    return video


def _depth_dir(tmp_path, frames=4, size=(32, 48), name="depth"):
    from fomm.compositing.depth.files import write_depth

    folder = tmp_path / name
    folder.mkdir()
    for i in range(frames):
        d = np.full(size, 0.2, np.float32)
        d[8:24, 12:36] = 0.9
        write_depth(folder / f"{i:06d}.png", d)
    return folder


def test_composite_writes_sbs_mkv_and_anaglyph(tmp_path):
    video, depth = _clip(tmp_path), _depth_dir(tmp_path)
    out = tmp_path / "out.mkv"
    res = run_main(["composite", video, "-o", out, "--depth", depth, "--stereo", "sbs", "--parallax", "orbit", "-q"])
    assert res.rc == 0, res.stderr
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.metadata.get("stereo_mode") == "left_right" and (s.width, s.height) == (96, 32)
    ana = tmp_path / "ana.mp4"
    res = run_main(["composite", video, "-o", ana, "--depth", depth, "--stereo", "anaglyph", "--dof", "0.9,2",
                    "--fog", "1,#c8d2e6", "-q"])
    assert res.rc == 0, res.stderr
    with av.open(str(ana)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (48, 32)
    assert not leftovers(tmp_path)


def test_composite_with_a_background_plate(tmp_path):
    from fomm.io.image import write_image

    video, depth = _clip(tmp_path), _depth_dir(tmp_path)
    plate = tmp_path / "plate.png"
    write_image(plate, np.full((64, 64, 3), 7, np.uint8))
    out = f"{tmp_path}/frames/"
    res = run_main(["composite", video, "-o", out, "--depth", depth, "--background", plate, "-q"])
    assert res.rc == 0, res.stderr
    from fomm.io.reading import iter_frames

    first = next(iter_frames(out))
    assert (first[:4, :4] == 7).all()  # far pixels show the plate


@pytest.mark.parametrize("case", ["short", "size", "option", "plate", "odd", "number", "lonely"])
def test_composite_refuses_bad_input_with_one_line(tmp_path, case):
    video = _clip(tmp_path, size=(32, 47) if case == "odd" else (32, 48))
    depth = _depth_dir(tmp_path, frames=3 if case == "short" else 4,
                       size=(32, 40) if case == "size" else ((32, 47) if case == "odd" else (32, 48)))
    out = tmp_path / "out.mkv"
    argv = ["composite", video, "-o", out, "--depth", depth, "--stereo", "sbs"]
    extra, match = {
        "short": ([], "3 frames"), "size": ([], "40x32"), "option": (["--parallax", "spin"], "--parallax"),
        "plate": (["--background", tmp_path / "missing.png"], "missing.png"),
        "odd": (["--stereo", "hsbs"], "even"), "number": (["--divergence", "lots"], "--divergence"),
        "lonely": (["--pivot", "0.3"], "--pivot only applies with --parallax"),
    }[case]
    assert_refused(argv + [str(e) for e in extra], inputs=[video, depth], outputs=[out], match=match)
    assert not leftovers(tmp_path)
