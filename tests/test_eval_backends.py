"""Backend checks on real images: dlib landmarks/embeddings, MediaPipe pose, the face-alignment weights message."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fomm.errors import FommError
from fomm.eval import metrics as M
from fomm.io.clips import read_clip

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def faces():
    from fomm.perception.backends import DlibFaces

    return DlibFaces()


def _face_256(data_dir, rel: str) -> np.ndarray:
    return np.asarray(Image.open(data_dir / "faces" / rel).convert("RGB").resize((256, 256), Image.BICUBIC))


@pytest.fixture(scope="module")
def portrait(data_dir) -> np.ndarray:
    # Scaled so the whole face box lies inside a 256 crop taken 8 px in, leaving room to shift it by up to 8 px.
    return np.asarray(Image.open(data_dir / "faces/tpsmm/source.png").convert("RGB").resize((272, 270), Image.BICUBIC))


def test_backends_record_name_and_version(faces):
    assert faces.info["name"] == "dlib" and "dlib-bin" in faces.info["version"]


def test_identical_face_video_scores_zero(faces, portrait):
    from fomm.eval.protocol import MetricSuite, score_video

    video = np.stack([portrait[8:264, 8:264], portrait[4:260, 10:266]])
    out = score_video(video, video.copy(), MetricSuite(landmarks=faces, embedding=faces))
    for name in ("l1", "akd", "aed"):
        assert out[name]["mean"] == 0.0 and out[name]["frames_scored"] == 2


@pytest.mark.parametrize("dx,dy", [(8, 0), (5, -3), (-6, 5), (0, 8)])
def test_dlib_akd_of_a_shifted_real_face_is_exactly_the_shift(faces, portrait, dx, dy):
    real = portrait[8:264, 8:264]
    shifted = portrait[8 - dy : 264 - dy, 8 - dx : 264 - dx]  # face content moves by (+dx, +dy)
    box = faces.face_box(real)
    assert box is not None and min(box) >= 8 and max(box) < 248  # box inside the frame before and after the shift
    kr = faces.landmarks_in_box(real, box)
    kg = faces.landmarks_in_box(shifted, (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy))
    assert M.akd_per_frame([kg], [kr], (256, 256)).mean == (abs(dx) + abs(dy)) / 2


def test_dlib_akd_with_detection_tracks_the_shift(faces, portrait):
    # With detection the face box itself jitters by a few pixels, so AKD is the shift up to that jitter.
    real = portrait[8:264, 8:264]
    shifted = portrait[0:256, 4:260]  # (+4, +8)
    akd = M.akd_per_frame([faces.detect(shifted)], [faces.detect(real)], (256, 256)).mean
    assert akd == pytest.approx(6.0, abs=1.5)


def test_dlib_aed_same_person_smaller_than_different_people(faces, data_dir):
    base = "x2face-voxceleb"
    same_a = _face_256(data_dir, f"{base}/Taylor_Swift/1.6/vBgiDYBCuxY/0000200.jpg")
    same_b = _face_256(data_dir, f"{base}/Taylor_Swift/1.6/vBgiDYBCuxY/0000250.jpg")
    others = [
        _face_256(data_dir, f"{base}/audio_faces/Peter_Capaldi/1.6/uAgUjSqIj7U/0001375.jpg"),
        _face_256(data_dir, f"{base}/audio_faces/Retta/1.6/ALELNl9E1Jc/0002725.jpg"),
        _face_256(data_dir, f"{base}/audio_faces/Maya_Rudolph/1.6/Ylm6PVkbwhs/0004500.jpg"),
    ]
    ea, eb = faces.embed(same_a), faces.embed(same_b)
    same = M.aed_per_frame([eb], [ea]).mean
    diff = M.aed_per_frame([faces.embed(o) for o in others], [ea] * 3)
    assert diff.frames_scored == 3
    # dlib's documented same-person threshold is 0.6 on the distance; AED is squared, so 0.36 here
    assert same < 0.6 ** 2 < np.nanmin(diff.per_frame)


def test_dlib_reports_no_face_as_none(faces):
    assert faces.detect(np.full((128, 128, 3), 127, np.uint8)) is None
    assert faces.embed(np.zeros((128, 128, 3), np.uint8)) is None


def test_face_alignment_without_cached_weights_says_where_to_put_them(tmp_path, monkeypatch):
    from fomm.perception.backends import FaceAlignmentLandmarks, make_landmark_backend

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FommError) as err:
        FaceAlignmentLandmarks()
    msg = str(err.value)
    assert "face-alignment weights not found" in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert "s3fd" in msg and "2DFAN-4" in msg and "dlib" in msg
    with pytest.raises(FommError, match="face-alignment weights"):
        make_landmark_backend("face-alignment")
    with pytest.raises(FommError, match="unknown landmark backend"):
        make_landmark_backend("openpose")


@pytest.mark.slow
def test_mediapipe_blanked_lower_half_gives_positive_mkr(data_dir):
    pytest.importorskip("mediapipe")
    from fomm.perception.backends import MediaPipePose

    pose = MediaPipePose()
    assert pose.info["name"] == "mediapipe-pose" and "0.10" in pose.info["version"]
    real = read_clip(data_dir / "actions/test/00000002.jpg")[::15]
    blanked = real.copy()
    blanked[:, 32:] = 0  # legs gone
    kr = [pose.detect(f) for f in real]
    kg = [pose.detect(f) for f in blanked]
    assert all(k is not None for k in kr)  # padding + upscaling finds the 64x64 person on every frame
    assert M.mkr_per_frame(kr, kr).mean == 0.0
    mkr = M.mkr_per_frame(kg, kr)
    assert mkr.mean > 0.1 and mkr.missing_real == 0
    # keypoints come back in the 64x64 frame's pixels (the padding lets a few fall just outside it)
    pts = np.concatenate([k[np.isfinite(k).all(axis=1)] for k in kr])
    assert pts.min() > -32 and pts.max() < 96 and 20 < np.median(pts) < 44
