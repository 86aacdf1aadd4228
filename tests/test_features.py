import logging

import numpy as np
import pytest

from signlab.data.features import (
    FeatureError,
    Preprocessor,
    load_features,
    report_exclusions,
    resolve_kind,
    scan,
)
from signlab.data.manifest import Sample
from signlab.data.stats import RunningStats
from signlab.errors import SignlabError
from signlab.kinds import HOLISTIC, plain


@pytest.fixture
def files(tmp_path, rng):
    good = rng.normal(size=(20, 8)).astype(np.float32)
    np.save(tmp_path / "good.npy", good)
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage that is not an array")
    np.save(tmp_path / "empty.npy", np.zeros((0, 8), np.float32))
    nan = good.copy()
    nan[3, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "dim.npy", good[:, :5])
    np.save(tmp_path / "flat.npy", good[0])
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return tmp_path


@pytest.mark.parametrize("name, kind", [
    ("missing.npy", "missing"), ("corrupt.npy", "corrupt"), ("empty.npy", "empty"), ("nan.npy", "nonfinite"),
    ("dim.npy", "dim"), ("flat.npy", "shape"), ("obj.npy", "corrupt"),
])
def test_each_bad_file_is_named_with_its_problem(files, name, kind):
    with pytest.raises(FeatureError) as err:
        load_features(files / name, expected_dim=8)
    assert err.value.kind == kind and name in str(err.value)


def test_good_file_loads_as_float32(files):
    x = load_features(files / "good.npy", 8)
    assert x.dtype == np.float32 and x.shape == (20, 8)


def test_scan_excludes_bad_rows_with_reasons_and_counts(files, caplog):
    names = ["good", "missing", "corrupt", "empty", "nan", "dim", "good"]
    samples = [Sample(id=f"{n}{i}", split="train", features=files / f"{n}.npy", glosses=("A",), source="m.csv", row=i + 2)
               for i, n in enumerate(names)]
    stats = RunningStats(8)
    result = scan(samples, Preprocessor(plain(8)), stats=stats, check=lambda s, x: ("too_short", "x") if s.row == 8 else None)
    assert [s.id for s in result.samples] == ["good0"]
    assert sorted(e.kind for e in result.excluded) == ["corrupt", "dim", "empty", "missing", "nonfinite", "too_short"]
    assert stats.n[0] == 20  # only the kept clip fed the statistics
    with caplog.at_level(logging.WARNING):
        report_exclusions(result.excluded, "train", len(samples))
    assert "excluded 6 of 7 rows" in caplog.text and "m.csv:3 (id missing1)" in caplog.text
    assert "re-extract" in caplog.text  # what to do


def test_scan_drops_the_cache_when_it_would_be_too_big(files):
    samples = [Sample(id=str(i), split="train", features=files / "good.npy") for i in range(3)]
    assert scan(samples, Preprocessor(plain(8))).arrays is not None
    assert scan(samples, Preprocessor(plain(8)), cache_bytes=1000).arrays is None


def test_pose_clip_without_a_body_is_excluded(tmp_path):
    np.save(tmp_path / "nobody.npy", np.zeros((5, 540), np.float32))
    result = scan([Sample(id="n", split="train", features=tmp_path / "nobody.npy")], Preprocessor(HOLISTIC))
    assert result.excluded[0].kind == "no_body"
    assert Preprocessor(HOLISTIC, pose_normalize=False)(np.zeros((5, 540), np.float32)).shape == (5, 540)


def test_the_feature_kind_is_declared_not_guessed_from_the_width(tmp_path, caplog):
    x = np.random.default_rng(0).normal(size=(6, 540)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)

    def rows(kind):
        return [Sample(id="a", split="train", features=tmp_path / "a.npy", kind=kind)]

    plain_540 = resolve_kind(rows("custom-540"), "auto")
    assert plain_540.name == "custom-540" and not plain_540.pose  # as wide as Holistic pose, but declared plain
    assert Preprocessor(plain_540)(x) is x  # so no body-relative normalisation
    caplog.set_level(logging.INFO, logger="signlab")
    assert resolve_kind(rows(""), "auto") == HOLISTIC  # undeclared: the width's usual kind, and the log says so
    assert "no feature_kind in the manifest" in caplog.text
    assert resolve_kind(rows(""), "custom-540").name == "custom-540"  # the config declares it
    with pytest.raises(SignlabError, match="declared i3d-1024, which has 1024 values a frame, but they have 540"):
        resolve_kind(rows("i3d-1024"), "auto")
    with pytest.raises(SignlabError, match="data.feature_kind is pose/holistic-540 but the manifest declares custom-540"):
        resolve_kind(rows("custom-540"), "pose/holistic-540")


def test_the_extractor_s_part_mask_travels_with_pose_features(tmp_path):
    from signlab import pose

    x = np.random.default_rng(1).normal(size=(5, 540)).astype(np.float32)
    np.save(tmp_path / "clip.npy", x)
    prep = Preprocessor(HOLISTIC, pose_normalize=False)
    np.testing.assert_array_equal(prep.read(tmp_path / "clip.npy"), x)  # no mask beside it: as written
    mask = np.ones((5, 4), bool)
    mask[2, 1] = False  # the left hand was not detected in frame 2
    np.save(tmp_path / "clip.mask.npy", mask)
    read = prep.read(tmp_path / "clip.npy")
    assert (read[2, pose.PART_SLICES["left_hand"]] == 0).all() and (read[2, pose.PART_SLICES["face"]] == x[2, pose.PART_SLICES["face"]]).all()
    np.testing.assert_array_equal(np.delete(read, 2, 0), np.delete(x, 2, 0))
    np.testing.assert_array_equal(Preprocessor(plain(540)).read(tmp_path / "clip.npy"), x)  # masks belong to the pose kind
    np.save(tmp_path / "clip.mask.npy", np.ones((4, 4), bool))  # from another extraction
    result = scan([Sample(id="c", split="train", features=tmp_path / "clip.npy")], prep)
    assert not result.samples and result.excluded[0].kind == "corrupt" and "clip.mask.npy" in result.excluded[0].message
