"""The models shipped in fomm/weights: present, small, loadable, the CLI default, and better than copying."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fomm.cli.main import main as cli
from fomm.errors import InputError
from fomm.pretrained import DEFAULT_MODEL, REGISTRY, get_pretrained, list_pretrained, load_pretrained

NETWORKS = {"fomm": {"generator", "kp_detector"}, "monkeynet": {"generator", "kp_detector"},
            "x2face": {"state_dict"}}


def test_shipped_models_are_installed_small_and_inference_only():
    names = [m.name for m in list_pretrained()]
    assert {"actions-64", "shapes-64", "monkeynet-actions-64", "x2face-actions-64"} <= set(names)
    for entry in list_pretrained():
        assert entry.path.stat().st_size <= 30 * 2 ** 20
        c = torch.load(entry.path, map_location="cpu", weights_only=True)
        assert NETWORKS[entry.model] <= set(c), entry.name
        assert not any(k.startswith(("optimizer_", "scheduler_")) or k == "discriminator" for k in c), entry.name


@pytest.mark.parametrize("name", ["monkeynet-actions-64", "x2face-actions-64"])
def test_shipped_baselines_animate_through_the_cli(tmp_path, name):
    """`fomm animate --pretrained NAME --example` runs each baseline on its body example pair."""
    from PIL import Image

    from fomm.assets import example_path
    from fomm.io.reading import probe_video

    out = tmp_path / "frames/"
    assert cli(["animate", "--pretrained", name, "--example", "-o", str(out) + "/", "-q"]) == 0
    frames = sorted(out.glob("*.png"))
    entry = REGISTRY[name]
    assert len(frames) == probe_video(example_path(entry.example_driving)).num_frames
    first, mid = (np.asarray(Image.open(frames[i]), dtype=np.float32) for i in (0, len(frames) // 2))
    assert first.shape == (64, 64, 3) and first.std() > 5  # a picture, not a flat colour
    # the output follows the driving video (X2Face's only a little: ~0.5 grey levels here, its L1 is copy's level)
    assert np.abs(first - mid).mean() > 0.25


def test_unknown_shipped_model_names_the_choices():
    with pytest.raises(InputError, match="actions-64"):
        get_pretrained("vox-999")


def test_cli_default_is_the_shipped_actions_model(tmp_path):
    out = tmp_path / "frames/"
    assert cli(["animate", "--example", "-o", str(out) + "/", "-q"]) == 0
    frames = sorted(out.glob("*.png"))
    entry = REGISTRY[DEFAULT_MODEL]
    from fomm.assets import example_path
    from fomm.io.reading import probe_video

    assert len(frames) == probe_video(example_path(entry.example_driving)).num_frames
    from PIL import Image

    assert Image.open(frames[0]).size == (64, 64)


def _l1_vs_copy(model, strip: np.ndarray) -> tuple[float, float]:
    """Reconstruction protocol on one 64x64 strip clip: frame 0 is the source, every frame drives (absolute)."""
    frames = [strip[:, 64 * t:64 * t + 64] for t in range(strip.shape[1] // 64)]
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        kp_s = model.kp_detector(video[:1])
        kp_d = model.kp_detector(video)
        pred = model.generator(video[:1], kp_source=kp_s, kp_driving=kp_d)["prediction"]
    return float((pred - video).abs().mean()), float((video[:1] - video).abs().mean())


def test_shapes_model_reconstructs_far_better_than_copying_the_source(data_dir):
    from PIL import Image

    model = load_pretrained("shapes-64")
    test = sorted((data_dir / "shapes" / "test").iterdir())[:8]
    ours, copy = zip(*(_l1_vs_copy(model, np.asarray(Image.open(p).convert("RGB"))) for p in test), strict=True)
    # measured on 200 test clips: 0.0044 vs 0.0247
    assert np.mean(ours) < 0.5 * np.mean(copy)


def test_actions_model_beats_copying_on_held_out_performers(data_dir):
    from PIL import Image

    from fomm.datasets.splits import load_split

    model = load_pretrained("actions-64")
    clips = [p for p in load_split()["test"]]
    ours, copy = zip(*(_l1_vs_copy(model, np.asarray(Image.open(data_dir / "actions" / p).convert("RGB")))
                       for p in clips), strict=True)
    # The target: at least 40% below copying the source on the leak-free test split. Here (video-averaged
    # strips) 0.01193 vs 0.01990, 40.07%; `fomm eval` on decoded clips 0.0119 vs 0.0199, 40.3% (see README).
    assert np.mean(ours) <= 0.6 * np.mean(copy)
