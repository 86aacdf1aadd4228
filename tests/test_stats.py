import numpy as np

from signlab.data.stats import MIN_STD, UNINFORMATIVE_STD, FeatureStats, RunningStats


def test_streaming_statistics_match_numpy(rng):
    chunks = [rng.normal(3, 2, (n, 5)) for n in (1, 7, 100, 3)]
    rs = RunningStats(5)
    for c in chunks:
        rs.update(c)
    s = rs.finalize()
    allx = np.concatenate(chunks)
    np.testing.assert_allclose(s.mean, allx.mean(0), rtol=1e-5)
    np.testing.assert_allclose(s.std, allx.std(0), rtol=1e-5)


def test_invalid_values_are_left_out_and_unseen_dims_read_as_zero(rng):
    x = rng.normal(0, 1, (50, 3))
    valid = np.ones_like(x, bool)
    valid[:20, 0] = False
    valid[:, 2] = False
    x[:20, 0] = 0.0  # a missed detection
    rs = RunningStats(3)
    rs.update(x[:25], valid[:25])
    rs.update(x[25:], valid[25:])
    s = rs.finalize()
    np.testing.assert_allclose(s.mean[0], x[20:, 0].mean(), rtol=1e-6)
    np.testing.assert_allclose(s.std[0], x[20:, 0].std(), rtol=1e-6)
    assert s.mean[2] == 0 and s.std[2] == UNINFORMATIVE_STD  # never seen in train: whatever it holds later reads as 0


def test_near_constant_dims_are_floored_constant_ones_read_as_zero_and_stats_round_trip(tmp_path):
    rs = RunningStats(3)
    rs.update(np.array([[1.0, 5.0, 2.0], [1.0, 7.0, 2.0001]]))
    s = rs.finalize()
    assert s.std[2] == np.float32(MIN_STD)  # barely moves: floored, not blown up at test time
    assert s.std[0] == UNINFORMATIVE_STD and abs((3.0 - s.mean[0]) / s.std[0]) < 1e-5  # constant (a filled-in column)
    s.save(tmp_path / "stats.npz")
    loaded = FeatureStats.load(tmp_path / "stats.npz")
    np.testing.assert_array_equal(loaded.mean, s.mean)
