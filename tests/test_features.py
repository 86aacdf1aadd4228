import dataclasses
import logging

import numpy as np
import pytest

from tests.conftest import REPO
from signlab.config import load_config
from signlab.data import features
from signlab.data.features import (
    SCAN_CHUNK,
    FeatureError,
    has_glosses,
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
from signlab.tasks import get_task


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


@pytest.fixture
def many_clips(tmp_path, rng):
    """Over two scan chunks of tiny clips: a NaN one every 97 rows, a still one every 131, no glosses every 89."""
    samples = []
    for i in range(2 * SCAN_CHUNK + 37):
        x = rng.normal(size=(int(rng.integers(3, 12)), 8)).astype(np.float32)
        if i % 97 == 5:
            x[1, 1] = np.nan
        if i % 131 == 7:
            x = np.ones((6, 8), np.float32)
        np.save(tmp_path / f"{i}.npy", x)
        samples.append(Sample(id=str(i), split="train", features=tmp_path / f"{i}.npy", glosses=("A",) if i % 89 else (),
                              source="m.csv", row=i + 2))
    return samples + [Sample(id="gone", split="train", features=tmp_path / "gone.npy", glosses=("A",), source="m.csv", row=9999)]


def scanned(result):
    return [s.id for s in result.samples], result.lengths, [(e.sample.id, e.kind, e.message) for e in result.excluded]


def test_a_big_split_is_scanned_by_processes_as_by_one_and_the_scan_is_cached(many_clips, tmp_path, monkeypatch, caplog):
    """Two worker processes give the same rows, lengths, exclusions (reasons and all) and statistics
    as one process; the result is cached, read back without scanning, and made again when a file
    changes or the cache is damaged."""
    prep, options = Preprocessor(plain(8)), {"check": has_glosses, "motion_floor": 1e-3}
    one, two = RunningStats(8), RunningStats(8)
    serial = scan(many_clips, prep, stats=one, workers=1, **options)
    cache = tmp_path / "run" / "scan-train.npz"
    parallel = scan(many_clips, prep, stats=two, workers=2, saved_scan=cache, **options)
    assert scanned(parallel) == scanned(serial) and parallel.arrays is None and serial.arrays is not None
    assert {e.kind for e in serial.excluded} == {"missing", "nonfinite", "low_motion", "no_glosses"}
    for a, b in ((one.n, two.n), (one.mean, two.mean), (one.m2, two.m2)):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    assert cache.is_file()

    def no_workers(*args, **kwargs):
        raise AssertionError("scanned again")

    monkeypatch.setattr(features, "ProcessPoolExecutor", no_workers)
    three = RunningStats(8)
    assert scanned(scan(many_clips, prep, stats=three, workers=2, saved_scan=cache, **options)) == scanned(serial)
    np.testing.assert_array_equal(three.mean, two.mean)
    monkeypatch.undo()
    changed = np.load(many_clips[0].features)
    changed[0, 0] = np.inf
    np.save(many_clips[0].features, changed)  # same size: its time of change tells
    again = scan(many_clips, prep, stats=RunningStats(8), workers=2, saved_scan=cache, **options)
    assert ("0", "nonfinite") in [(e.sample.id, e.kind) for e in again.excluded]
    cache.write_bytes(b"not a zip")
    with caplog.at_level(logging.WARNING):
        assert scanned(scan(many_clips, prep, workers=2, saved_scan=cache, **options)) == scanned(again)
    assert "scan-train.npz cannot be used" in caplog.text and "scanning again" in caplog.text


def test_training_caches_the_scans_of_big_splits_in_the_run_folder(many_clips, tmp_path, monkeypatch):
    rows = [dataclasses.replace(s, split="dev" if int(s.row) % 3 == 0 else "train") for s in many_clips]
    cfg = load_config(REPO / "configs" / "hybrid.yaml", ["model.input_dim=8", "data.feature_kind=custom-8",
                                                          "data.scan_workers=2"])
    first = get_task("gloss").prepare(rows, cfg, None, None, scan_cache=tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["scan-train.npz"]  # dev: one chunk, one process
    monkeypatch.setattr(features, "ProcessPoolExecutor", None)  # resumed: nothing to scan again
    second = get_task("gloss").prepare(rows, cfg, first.vocab, first.stats, scan_cache=tmp_path / "run")
    assert second.splits["train"].samples == first.splits["train"].samples
