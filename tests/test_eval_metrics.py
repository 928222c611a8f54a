"""Known-answer tests of the pure metric functions (no detectors involved)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fomm.eval import metrics as M


def _video(t=5, h=16, w=16, seed=0):
    return np.random.default_rng(seed).random((t, h, w, 3)).astype(np.float32)


def test_identical_videos_score_zero_on_every_metric():
    v = _video()
    assert M.l1(v, v) == 0.0
    kp = [np.random.default_rng(t).random((68, 2)) * 16 for t in range(5)]
    assert M.akd_per_frame(kp, kp, (16, 16)).mean == 0.0
    assert M.mkr_per_frame(kp, kp).mean == 0.0
    emb = [np.random.default_rng(t).random(128) for t in range(5)]
    assert M.aed_per_frame(emb, emb).mean == 0.0


def test_l1_known_value_and_frame_then_video_average():
    real = np.zeros((2, 4, 4, 3), np.float32)
    gen = real.copy()
    gen[0] = 0.5  # frame 0 differs by 0.5 everywhere, frame 1 is exact
    s = M.l1_per_frame(gen, real)
    np.testing.assert_allclose(s.per_frame, [0.5, 0.0])
    assert M.l1(gen, real) == pytest.approx(0.25)
    # uint8 input is read as /255, so values stay in [0, 1]
    assert M.l1(np.full((1, 2, 2, 3), 255, np.uint8), np.zeros((1, 2, 2, 3), np.uint8)) == 1.0


def test_l1_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        M.l1(_video(t=4), _video(t=5))


@pytest.mark.parametrize("dx,dy,expected", [(3.0, 0.0, 1.5), (2.0, -4.0, 3.0), (5.0, 5.0, 5.0)])
def test_akd_of_a_known_shift_at_256(dx, dy, expected):
    # AKD is the mean absolute *coordinate* difference: a (dx, dy) shift gives (|dx| + |dy|) / 2, not the norm.
    real = [np.random.default_rng(1).random((68, 2)) * 256 for _ in range(3)]
    gen = [k + [dx, dy] for k in real]
    s = M.akd_per_frame(gen, real, (256, 256))
    np.testing.assert_allclose(s.per_frame, expected)
    assert s.frames_scored == 3


def test_akd_is_in_pixels_of_a_256_frame():
    real = [np.array([[10.0, 20.0], [30.0, 40.0]])]
    gen = [real[0] + [1.0, 1.0]]
    assert M.akd_per_frame(gen, real, (64, 64)).mean == pytest.approx(4.0)  # 1 px at 64 -> 4 px at 256
    assert M.akd_per_frame(gen, real, (512, 512)).mean == pytest.approx(0.5)
    # non-square frames scale x and y separately
    assert M.akd_per_frame([real[0] + [2.0, 0.0]], real, (128, 512)).mean == pytest.approx(0.5)


def test_akd_counts_frames_without_detections_instead_of_dropping_them_silently():
    k = np.zeros((5, 2))
    real = [k, None, k, k]
    gen = [k + 2, k, None, k + 4]
    s = M.akd_per_frame(gen, real, (256, 256))
    assert s.missing_real == 1 and s.missing_generated == 1 and s.frames_scored == 2
    assert math.isnan(s.per_frame[1]) and math.isnan(s.per_frame[2])
    assert s.mean == pytest.approx(3.0)


def test_akd_uses_only_keypoints_detected_on_both_frames():
    real = np.array([[0.0, 0.0], [10.0, 10.0], [np.nan, np.nan]])
    gen = np.array([[np.nan, np.nan], [12.0, 14.0], [5.0, 5.0]])
    assert M.akd_per_frame([gen], [real], (256, 256)).mean == pytest.approx(3.0)


def test_mkr_fraction_of_ground_truth_keypoints_missing_on_generated():
    real = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [np.nan, np.nan]])
    gen = np.array([[1.0, 1.0], [np.nan, np.nan], [np.nan, np.nan], [4.0, 4.0]])  # 2 of 3 real keypoints missing
    s = M.mkr_per_frame([gen, None, gen], [real, real, None])
    np.testing.assert_allclose(s.per_frame[:2], [2 / 3, 1.0])  # no person at all on the generated frame -> 1
    assert math.isnan(s.per_frame[2])
    assert (s.missing_real, s.missing_generated) == (1, 1)
    assert s.mean == pytest.approx((2 / 3 + 1.0) / 2)


def test_aed_is_squared_euclidean_distance_of_embeddings():
    a = np.zeros(128)
    b = np.zeros(128)
    b[:2] = [3.0, 4.0]
    s = M.aed_per_frame([b, None, a], [a, a, None])
    assert s.per_frame[0] == pytest.approx(25.0)  # ||b - a||^2 = 3^2 + 4^2, not the distance 5
    assert (s.missing_generated, s.missing_real, s.frames_scored) == (1, 1, 1)


def test_dataset_mean_averages_videos_and_reports_how_many():
    assert M.dataset_mean([1.0, 3.0, float("nan"), None]) == (2.0, 2)
    mean, n = M.dataset_mean([float("nan")])
    assert math.isnan(mean) and n == 0


def test_scale_keypoints_maps_pixel_centres():
    np.testing.assert_allclose(M.scale_keypoints(np.array([[0.0, 63.0]]), (64, 64)), [[1.5, 253.5]])
