import numpy as np
import pytest
import torch

from signlab.data.dataset import (
    GlossDataset,
    LengthBucketBatchSampler,
    hybrid_collate_fn,
    resample_frames,
)
from signlab.data.features import Preprocessor, ScanResult
from signlab.data.manifest import Sample
from signlab.kinds import plain
from signlab.vocab import EOS, PAD, SOS, Vocabulary


@pytest.fixture
def dataset(rng):
    samples = [Sample(id=f"c{i}", split="train", features=None, glosses=g) for i, g in
               enumerate([("ME", "GO"), ("YOU", "GO", "HOME"), ("ME",)])]
    arrays = [rng.normal(size=(t, 4)).astype(np.float32) for t in (7, 12, 30)]
    vocab = Vocabulary.build(s.glosses for s in samples)
    return GlossDataset(ScanResult(samples, [7, 12, 30], arrays), Preprocessor(plain(4)), vocab, max_frames=20)


def test_items_carry_ctc_and_decoder_targets(dataset):
    item = dataset[1]
    ids = dataset.vocab.encode(["YOU", "GO", "HOME"])
    assert item["ctc_target"].tolist() == ids
    assert item["decoder_input"].tolist() == [SOS, *ids] and item["decoder_target"].tolist() == [*ids, EOS]
    assert item["features"].shape == (12, 4) and item["features"].dtype == torch.float32
    assert dataset[2]["features"].shape == (20, 4) and dataset.lengths == [7, 12, 20]  # resampled to max_frames
    np.testing.assert_array_equal(dataset[0]["features"].numpy(), dataset.scan.arrays[0])  # not standardised here


def test_collate_pads_and_masks(dataset):
    batch = hybrid_collate_fn([dataset[0], dataset[1]])
    assert batch["features"].shape == (2, 12, 4) and batch["lengths"].tolist() == [7, 12]
    assert batch["padding_mask"][0].tolist() == [False] * 7 + [True] * 5 and not batch["padding_mask"][1].any()
    assert (batch["features"][0, 7:] == 0).all()
    assert batch["ctc_targets"].shape == (2, 3) and batch["ctc_targets"][0, 2] == PAD
    assert batch["target_lengths"].tolist() == [2, 3]
    assert batch["decoder_input"][0].tolist() == [SOS, *dataset.vocab.encode(["ME", "GO"]), PAD]
    assert batch["ids"] == ["c0", "c1"] and batch["glosses"] == ["ME GO", "YOU GO HOME"]


def test_resample_keeps_the_whole_clip():
    x = np.arange(10)[:, None].astype(np.float32)
    assert resample_frames(x, 4)[:, 0].tolist() == [0, 3, 6, 9]
    assert resample_frames(x, 20) is x


def test_bucket_sampler_covers_every_sample_once_in_batches_of_similar_length(rng):
    lengths = rng.integers(10, 300, 103)
    sampler = LengthBucketBatchSampler(lengths, 8, seed=1, bucket_batches=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13
    assert sorted(i for b in batches for i in b) == list(range(103))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < np.ptp(lengths) / 3  # far less padding than random batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert list(LengthBucketBatchSampler(lengths, 8, seed=1, bucket_batches=4)) == batches  # reproducible


def test_bucket_sampler_splits_work_between_ddp_processes(rng):
    lengths = rng.integers(10, 300, 45)
    ranks = [LengthBucketBatchSampler(lengths, 4, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    b0, b1 = list(ranks[0]), list(ranks[1])
    assert len(b0) == len(b1) == len(ranks[0]) == 6  # 12 batches, padded to an even count
    assert {i for b in b0 + b1 for i in b} == set(range(45))
    evals = [LengthBucketBatchSampler(lengths, 4, shuffle=False, num_replicas=2, rank=r, pad_replicas=False) for r in (0, 1)]
    seen = [i for s in evals for b in s for i in b]
    assert sorted(seen) == list(range(45)) and [len(s) for s in evals] == [6, 6]  # no sample counted twice


def test_sampler_epoch_reaches_the_dataset():
    seen = []
    sampler = LengthBucketBatchSampler([3, 4], 2, on_epoch=seen.append)
    sampler.set_epoch(4)
    assert seen == [4]
