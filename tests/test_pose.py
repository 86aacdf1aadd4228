import numpy as np
import pytest

from signlab import pose
from signlab.data.grammar import Grammar
from signlab.data.synthetic import SyntheticSigner, make_lexicon, sample_signer


def clip(seed=0) -> np.ndarray:
    g = Grammar()
    signer = SyntheticSigner(make_lexicon(g.glosses, 0), sample_signer(np.random.default_rng(seed)))
    return signer.render(("ME", "STORE", "GO"), np.random.default_rng(seed))


def test_layout_is_540_values_in_four_parts():
    assert pose.POSE_FEATURE_DIM == 540
    assert [pose.PART_SLICES[p].stop - pose.PART_SLICES[p].start for p in pose.PARTS] == [132, 63, 63, 282]
    assert pose.XYZ_COLUMNS.shape == (169, 3)
    cols = np.concatenate([pose.XYZ_COLUMNS.ravel(), pose.VISIBILITY_COLUMNS])
    assert sorted(cols.tolist()) == list(range(540))  # every value is a coordinate or a visibility


def test_face_indices_are_mediapipes_lips_eyes_brows_nose_tip_and_chin():
    fm = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")
    groups = [fm.FACEMESH_LIPS, fm.FACEMESH_LEFT_EYE, fm.FACEMESH_RIGHT_EYE, fm.FACEMESH_LEFT_EYEBROW, fm.FACEMESH_RIGHT_EYEBROW]
    expected = set().union(*({i for e in g for i in e} for g in groups)) | {1, 152}
    assert set(pose.FACE_INDICES.tolist()) == expected and len(pose.FACE_INDICES) == 94


def test_body_normalisation_removes_camera_position_and_distance():
    x = clip()
    moved = x.copy()
    pts = pose.points(x)
    mask = pose.point_mask(x)[..., None]
    moved_pts = pts * 0.6 + np.array([0.2, -0.1, 0.0]) * np.array([1, 1, 0])  # further away, shifted
    moved = pose.with_points(x, moved_pts * mask)
    a, b = pose.normalize_body(x), pose.normalize_body(moved)
    np.testing.assert_allclose(a, b, atol=1e-5)
    sh = pose.points(a)[:, [pose.LEFT_SHOULDER, pose.RIGHT_SHOULDER], :2]
    assert abs(np.linalg.norm(sh[:, 0] - sh[:, 1], axis=1).mean() - 1) < 1e-5  # unit = shoulder width
    assert np.abs(sh.mean(axis=(0, 1))).max() < 1e-5  # origin between the shoulders


def test_normalisation_keeps_missing_parts_zero_and_visibility_untouched():
    x = clip()
    x[5:9, pose.PART_SLICES["left_hand"]] = 0
    out = pose.normalize_body(x)
    assert not out[5:9, pose.PART_SLICES["left_hand"]].any()
    np.testing.assert_array_equal(out[:, pose.VISIBILITY_COLUMNS], x[:, pose.VISIBILITY_COLUMNS])
    np.testing.assert_array_equal(pose.part_mask(out), pose.part_mask(x))


def test_no_body_means_no_normalisation():
    assert pose.normalize_body(np.zeros((4, 540), np.float32)) is None


def test_masks_and_motion_energy():
    x = clip()
    x[0, pose.PART_SLICES["face"]] = 0
    parts = pose.part_mask(x)
    assert parts.shape == (len(x), 4) and not parts[0, 3] and parts[1, 3]
    assert pose.value_mask(x)[0, pose.PART_SLICES["face"]].sum() == 0
    energy = pose.motion_energy(x)
    assert energy.shape == (len(x),) and energy[0] == 0 and energy[1:].max() > 0
    assert pose.motion_energy(np.repeat(x[:1], 5, 0)).max() == 0


def test_mean_motion_of_pose_and_of_other_features():
    x = clip()
    assert pose.mean_motion(x, True) == pytest.approx(pose.motion_energy(x).mean())
    assert pose.mean_motion(x[:1], True) == 0.0 and pose.mean_motion(np.repeat(x[:1], 5, 0), True) == 0.0
    i3d = np.zeros((4, 1024), np.float32)
    i3d[2:, 600] = 3.0  # one step of 3 in a column past the pose layout's 540
    assert pose.mean_motion(i3d, False) == pytest.approx(3 / 4)
