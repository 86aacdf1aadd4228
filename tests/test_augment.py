import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from signlab import pose
from signlab.config import AugmentationConfig
from signlab.data.augment import (
    AugmentedDataset,
    BatchMix,
    FeatureAugmentation,
    FeatureDropout,
    FeatureNoise,
    FrameDropout,
    FrameShift,
    HandDropout,
    Mirror,
    PoseAugmentation,
    PoseNoise,
    RandomPoseScale,
    RandomRotation3D,
    RandomShear,
    RandomTranslation,
    TemporalFeatureMask,
    TemporalMask,
    TimeWarp,
    recipe,
    resample,
)
from signlab.data.grammar import Grammar
from signlab.data.synthetic import SyntheticSigner, make_lexicon, sample_signer

TEMPORAL = [TimeWarp(0.4, p=1), FrameDropout(0.9, p=1), FrameShift(5, p=1), TemporalMask(3, 10, p=1)]
POSE = [RandomRotation3D(30, p=1), RandomPoseScale(0.3, p=1), RandomShear(0.3, p=1), RandomTranslation(0.3, p=1),
        PoseNoise(0.05, p=1), HandDropout(10, p=1), PoseAugmentation(p=1.0)]
FEATURES = [FeatureDropout(0.3, p=1), FeatureNoise(0.1, p=1), TemporalFeatureMask(2, 5, p=1), FeatureAugmentation()]


def body_clip(seed=0, glosses=("ME", "STORE", "GO")) -> np.ndarray:
    g = Grammar()
    x = SyntheticSigner(make_lexicon(g.glosses, 0), sample_signer(np.random.default_rng(seed))).render(glosses, np.random.default_rng(seed))
    return pose.normalize_body(x)


@settings(max_examples=30, deadline=None)
@given(t=st.integers(1, 40), d=st.sampled_from([1, 7, 1024]), seed=st.integers(0, 10**6),
       index=st.integers(0, len(TEMPORAL) + len(FEATURES) - 1))
def test_temporal_and_feature_transforms_keep_a_frame_and_never_make_nan(t, d, seed, index):
    aug = (TEMPORAL + FEATURES)[index]
    x = np.random.default_rng(seed).normal(size=(t, d)).astype(np.float32)
    y = aug(x, np.random.default_rng(seed))
    assert y.dtype == np.float32 and y.ndim == 2 and y.shape[1] == d and len(y) >= 1 and np.isfinite(y).all()
    np.testing.assert_array_equal(aug(x, np.random.default_rng(seed)), y)


@settings(max_examples=30, deadline=None)
@given(t=st.integers(1, 30), seed=st.integers(0, 10**6), index=st.integers(0, len(POSE) + len(TEMPORAL) - 1))
def test_pose_transforms_keep_layout_visibility_and_masks(t, seed, index):
    aug = (POSE + TEMPORAL)[index]
    x = body_clip(seed % 7)[:t]
    y = aug(x, np.random.default_rng(seed))
    assert y.dtype == np.float32 and y.shape[1] == 540 and len(y) >= 1 and np.isfinite(y).all()
    if len(y) == len(x) and not isinstance(aug, (FrameShift, TemporalMask, PoseAugmentation)):
        np.testing.assert_array_equal(y[:, pose.VISIBILITY_COLUMNS], x[:, pose.VISIBILITY_COLUMNS])
        lost = pose.part_mask(x) & ~pose.part_mask(y)
        assert not lost.any() or isinstance(aug, HandDropout)  # only a hand dropout removes a part
        assert not (pose.part_mask(y) & ~pose.part_mask(x)).any()  # nothing appears from nowhere


def test_rotation_keeps_every_bone_length_and_the_visibility():
    x = body_clip(2)
    y = RandomRotation3D(25, p=1)(x, np.random.default_rng(0))
    np.testing.assert_array_equal(y[:, pose.VISIBILITY_COLUMNS], x[:, pose.VISIBILITY_COLUMNS])
    px, py = pose.points(x), pose.points(y)
    for a, b in [(pose.LEFT_SHOULDER, pose.LEFT_ELBOW), (pose.RIGHT_ELBOW, pose.RIGHT_WRIST), (11, 12)]:
        np.testing.assert_allclose(np.linalg.norm(py[:, a] - py[:, b], axis=1), np.linalg.norm(px[:, a] - px[:, b], axis=1), atol=1e-5)
    hand = pose.HAND_POINT_SLICES["right_hand"]
    seen = pose.part_mask(x)[:, 2]
    for a, b in [(0, 5), (5, 8), (0, 17)]:  # bones inside the hand, whose depth is wrist-relative
        da = np.linalg.norm(px[seen, hand][:, a] - px[seen, hand][:, b], axis=1)
        db = np.linalg.norm(py[seen, hand][:, a] - py[seen, hand][:, b], axis=1)
        np.testing.assert_allclose(db, da, atol=1e-5)
    assert not np.allclose(px, py)


def test_time_warp_never_blends_a_hand_with_a_missing_one():
    x = body_clip(1)
    x[::2, pose.PART_SLICES["left_hand"]] = 0  # the hand flickers in and out
    y = resample(x, len(x) * 2 - 3, pose.value_mask)
    hand = y[:, pose.PART_SLICES["left_hand"]]
    present = np.any(hand != 0, axis=1)
    # every frame is either a real detection (matching one of the input's) or exactly zero
    assert present.any() and (~present).any()
    assert np.all(pose.part_mask(y)[:, 1] == present)


def test_nothing_flips_left_and_right_unless_asked():
    x = body_clip(3)
    for aug in POSE + TEMPORAL:
        y = aug(x, np.random.default_rng(1))
        pts = pose.points(y)
        body = pose.part_mask(y)[:, 0]
        assert (pts[body, pose.RIGHT_SHOULDER, 0] < pts[body, pose.LEFT_SHOULDER, 0]).all(), aug  # not mirrored


def test_mirror_swaps_the_hands_and_is_its_own_inverse():
    x = body_clip(4)
    x[:10, pose.PART_SLICES["left_hand"]] = 0
    y = Mirror(p=1)(x, np.random.default_rng(0))
    np.testing.assert_array_equal(pose.part_mask(y)[:, [1, 2]], pose.part_mask(x)[:, [2, 1]])
    np.testing.assert_array_equal(pose.points(y)[:, pose.LEFT_WRIST, 0], -pose.points(x)[:, pose.RIGHT_WRIST, 0])
    np.testing.assert_array_equal(y[:, pose.VISIBILITY_COLUMNS][:, 11], x[:, pose.VISIBILITY_COLUMNS][:, 12])
    np.testing.assert_allclose(Mirror(p=1)(y, np.random.default_rng(0)), x)
    assert not PoseAugmentation().transforms or not any(isinstance(t, Mirror) for t in PoseAugmentation().transforms)
    assert any(isinstance(t, Mirror) for t in PoseAugmentation(mirror=True).transforms)


def test_face_mirror_maps_mediapipe_contours_onto_their_partners():
    fm = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")
    partner = dict(zip(pose.FACE_INDICES.tolist(), pose.FACE_INDICES[pose.FACE_MIRROR].tolist()))

    def mirrored(edges):
        return {frozenset((partner[a], partner[b])) for a, b in edges}

    assert mirrored(fm.FACEMESH_LIPS) == {frozenset(e) for e in fm.FACEMESH_LIPS}
    assert mirrored(fm.FACEMESH_LEFT_EYE) == {frozenset(e) for e in fm.FACEMESH_RIGHT_EYE}
    assert mirrored(fm.FACEMESH_LEFT_EYEBROW) == {frozenset(e) for e in fm.FACEMESH_RIGHT_EYEBROW}
    assert {i for i, j in partner.items() if i == j} == {0, 1, 13, 14, 17, 152}  # the midline


def test_seed_fixes_and_temporal_edge_cases():
    x = np.arange(10, dtype=np.float32)[:, None]
    shifted = FrameShift(3, p=1)(x, np.random.default_rng(5))
    assert (np.diff(shifted[:, 0]) >= 0).all()  # no wrap-around: time still runs forwards
    assert TemporalMask(2, 10, p=1)(x[:3], np.random.default_rng(0)).tolist() == x[:3].tolist()  # too short to mask
    assert len(FrameDropout(1.0, p=1)(x, np.random.default_rng(0))) == 1  # never empty


def test_augmented_dataset_applies_the_kind_s_recipe_and_reseeds_per_epoch():
    items = [{"features": torch.from_numpy(body_clip(0))}, {"features": torch.randn(20, 1024)}]
    base = type("Base", (), {"__len__": lambda s: 2, "__getitem__": lambda s, i: items[i]})()
    assert isinstance(recipe(pose_layout=True), PoseAugmentation)
    assert isinstance(recipe(pose_layout=False), FeatureAugmentation)
    for i, key in enumerate(("features", "features")):
        ds = AugmentedDataset(base, recipe(i == 0, AugmentationConfig()), seed=1)
        a = ds[i][key]
        assert type(a) is type(items[i][key]) and a.dtype == items[i][key].dtype
        b = AugmentedDataset(base, recipe(i == 0, AugmentationConfig()), seed=1)[i][key]
        assert np.array_equal(np.asarray(a), np.asarray(b))
    ds = AugmentedDataset(base, PoseAugmentation(p=1.0), seed=1)
    first = ds[0]["features"]
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["features"], first)
    vetoed = AugmentedDataset(base, TimeWarp(0.5, p=1), usable=lambda index, frames: False)
    assert torch.equal(vetoed[0]["features"], items[0]["features"])  # the clip as it is, never a dummy


def test_batch_mixing_keeps_both_targets_feasible():
    features = torch.randn(4, 10, 3)
    lengths = torch.tensor([10, 4, 7, 2])
    for kind in ("mixup", "cutmix"):
        mix = BatchMix(**{kind: 1.0}, alpha=0.4)
        m = mix(features, lengths, np.random.default_rng(0))
        assert 0.5 <= m.lam <= 1 and sorted(m.partner.tolist()) == [0, 1, 2, 3]
        assert torch.equal(m.lengths, torch.maximum(lengths, lengths[m.partner]))
        assert m.features.shape == features.shape
    assert BatchMix(0.0, 0.0)(features, lengths, np.random.default_rng(0)) is None


def test_video_augmentation_keeps_dtype_range_and_frame_size_and_never_flips():
    from signlab.data.augment.video import RECIPES, VideoAugmentation

    frames = np.zeros((30, 48, 40, 3), np.uint8)
    frames[:, 10:20, 5:15] = 200  # a bright square on the left of every frame
    for intensity in RECIPES:
        aug = VideoAugmentation(intensity)
        for k in range(10):
            out = aug(frames, np.random.default_rng(k))
            assert out.dtype == np.uint8 and out.shape[1:] == frames.shape[1:] and 1 <= len(out)
            as_float = aug(frames.astype(np.float32) / 255, np.random.default_rng(k))
            assert as_float.dtype == np.float32 and 0 <= as_float.min() and as_float.max() <= 1
            assert np.abs(as_float * 255 - out).max() <= 1  # the same draw, whatever the input's dtype
            bright = out.mean(axis=(0, 3)) > 100
            if bright.any():  # rotations and zooms of 15 degrees / 10% leave the square on the left
                assert np.flatnonzero(bright.any(0)).mean() < 20
    assert np.array_equal(VideoAugmentation()(frames, np.random.default_rng(3)), VideoAugmentation()(frames, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="one of light, medium, heavy"):
        VideoAugmentation("extreme")


def test_video_augmentation_on_threads_gives_what_one_thread_gives_and_warps_as_opencv_does(monkeypatch):
    import cv2

    from signlab.data.augment import video
    from signlab.data.augment.video import RECIPES, VideoAugmentation, warp_maps

    clip = np.random.default_rng(0).random((40, 32, 48, 3), dtype=np.float32)
    for intensity in RECIPES:
        for k in range(8):
            one = VideoAugmentation(intensity)(clip, np.random.default_rng(k))
            assert np.array_equal(VideoAugmentation(intensity, threads=3)(clip, np.random.default_rng(k)), one)
            with monkeypatch.context() as m:  # a frame at a time: each frame warped alone
                m.setattr(video, "CHUNK", 1)
                assert np.array_equal(VideoAugmentation(intensity)(clip, np.random.default_rng(k)), one)
    ramp = np.broadcast_to(np.linspace(0, 255, 48).astype(np.uint8)[None, :, None], (32, 48, 3)).copy()
    matrix = cv2.getRotationMatrix2D((24, 16), 9.0, 1.04)  # what the maps stand for: warpAffine's matrix
    by_maps = cv2.remap(ramp, *warp_maps(9.0, 1.04, 48, 32), cv2.INTER_LINEAR)
    assert np.abs(by_maps.astype(int) - cv2.warpAffine(ramp, matrix, (48, 32)))[3:-3, 3:-3].max() <= 1


def test_video_noise_is_gaussian_with_the_recipes_spread_and_new_in_every_frame():
    from signlab.data.augment.video import RECIPES, VideoAugmentation, noise_bank

    add, subtract = noise_bank(0.03 * 255)
    levels = add.astype(np.float64) - subtract
    assert abs(levels.mean()) < 0.01 and abs(levels.std() - 0.03 * 255) < 0.05 and levels.min() < -25 and levels.max() > 25
    noise_only = VideoAugmentation("medium")
    noise_only.r = dataclasses.replace(RECIPES["medium"], rotation_p=0, scale_p=0, color_p=0, noise_p=1, speed_p=0, crop_p=0,
                                       jitter_p=0)
    grey = np.full((6, 32, 32, 3), 128, np.uint8)
    noise = noise_only(grey, np.random.default_rng(0)).astype(np.float64) - 128
    assert abs(noise.std() - 0.03 * 255) < 0.3 and abs(noise.mean()) < 0.2
    assert all(not np.array_equal(noise[i], noise[i + 1]) for i in range(5))  # each frame reads its own window
