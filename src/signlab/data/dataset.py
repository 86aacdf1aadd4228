"""Gloss-recognition dataset, its collate function, and length-bucketed batching."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from signlab.data.features import FeatureError, Preprocessor, ScanResult, view_path
from signlab.vocab import EOS, PAD, SOS, Vocabulary

log = logging.getLogger(__name__)


def pick_frames(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` frames evenly spaced over the whole of ``x``, first and last included (frames are
    dropped when ``n`` is smaller, repeated when it is larger)."""
    return x[np.linspace(0, len(x) - 1, n).round().astype(np.int64)]


def resample_frames(x: np.ndarray, max_frames: int) -> np.ndarray:
    """Uniformly pick ``max_frames`` frames from a longer clip: the whole sentence stays."""
    return x if len(x) <= max_frames else pick_frames(x, max_frames)


def pad_clips(clips: Sequence[np.ndarray], max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Clips resampled to at most ``max_frames`` and zero-padded into one (B, T, D) float32
    array, with their (B,) int64 lengths: a batch for inference."""
    chunk = [resample_frames(c, max_frames) for c in clips]
    lengths = np.array([len(c) for c in chunk], np.int64)
    x = np.zeros((len(chunk), lengths.max(), chunk[0].shape[1]), np.float32)
    for i, c in enumerate(chunk):
        x[i, : len(c)] = c
    return x, lengths


class GlossDataset(Dataset):
    """Yields a clip's body-relative features with its CTC targets and decoder tokens.

    ``decoder_input = <sos> + ids``, ``decoder_target = ids + <eos>``. Features are not
    standardised here (the model's front end does that with the train statistics), so
    augmentation can work in body coordinates.
    """

    def __init__(self, scan: ScanResult, prep: Preprocessor, vocab: Vocabulary, max_frames: int):
        self.scan, self.samples = scan, scan.samples
        self.lengths = [min(n, max_frames) for n in scan.lengths]
        self.prep, self.vocab, self.max_frames = prep, vocab, max_frames

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        ids = self.vocab.encode(sample.glosses)
        x = resample_frames(self.scan.features(index, self.prep), self.max_frames)
        return {
            "id": sample.id,
            "glosses": " ".join(sample.glosses),
            "features": torch.from_numpy(np.ascontiguousarray(x)),
            "ctc_target": torch.tensor(ids, dtype=torch.long),
            "decoder_input": torch.tensor([SOS, *ids], dtype=torch.long),
            "decoder_target": torch.tensor([*ids, EOS], dtype=torch.long),
        }


class FeatureViews(Dataset):
    """A clip's features as one of its views, drawn afresh each epoch from (seed, epoch, index):
    ``extract i3d --views K`` wrote the clean features and K - 1 of the clip's augmented videos
    (manifest column ``views``). A view that cannot be read, or that ``usable(index, frames)``
    rejects (too short for its targets), gives the clean features instead, with one warning."""

    def __init__(self, base: GlossDataset, seed: int = 0, usable: Callable[[int, int], bool] | None = None):
        self.base, self.seed, self.usable, self.epoch, self.warned = base, seed, usable, 0, False
        self.lengths = base.lengths

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        item = self.base[index]
        sample = self.base.samples[index]
        views = int(sample.extra.get("views") or 1)
        view = int(np.random.default_rng([self.seed, self.epoch, index, 1]).integers(views)) if views > 1 else 0
        if view:
            try:
                x = self.base.prep(self.base.prep.read(view_path(sample.features, view)), sample.where)
            except FeatureError as exc:
                if not self.warned:
                    log.warning("%s: feature view %d unusable (%s); training uses the clean features where a view "
                                "fails", sample.where, view, exc)
                    self.warned = True
                return item
            x = resample_frames(x, self.base.max_frames)
            if self.usable is None or self.usable(index, len(x)):
                item["features"] = torch.from_numpy(np.ascontiguousarray(x))
        return item


def hybrid_collate_fn(batch: Sequence[dict]) -> dict:
    """Pad a list of samples into batch tensors (padding value 0 = ``<pad>``).

    Returns ``features`` (B, T, D), ``padding_mask`` (B, T, True at padding), ``lengths``,
    ``ctc_targets`` (B, L) with ``target_lengths``, ``decoder_input`` / ``decoder_target``
    (B, L + 1), and the sample ``ids`` and reference ``glosses``.
    """
    lengths = torch.tensor([len(b["features"]) for b in batch])
    features = pad_sequence([b["features"] for b in batch], batch_first=True)
    return {
        "ids": [b["id"] for b in batch],
        "glosses": [b["glosses"] for b in batch],
        "features": features,
        "lengths": lengths,
        "padding_mask": torch.arange(features.size(1))[None] >= lengths[:, None],
        "ctc_targets": pad_sequence([b["ctc_target"] for b in batch], batch_first=True, padding_value=PAD),
        "target_lengths": torch.tensor([len(b["ctc_target"]) for b in batch]),
        "decoder_input": pad_sequence([b["decoder_input"] for b in batch], batch_first=True, padding_value=PAD),
        "decoder_target": pad_sequence([b["decoder_target"] for b in batch], batch_first=True, padding_value=PAD),
    }


class EpochBatchSampler(Sampler[list[int]]):
    """Batches drawn afresh each epoch from (seed, epoch), the same in every process; under DDP each
    of the ``num_replicas`` processes takes every ``num_replicas``-th batch. ``set_epoch`` (called
    by the trainer) also tells ``on_epoch``, e.g. a dataset whose augmentation follows the epoch."""

    def __init__(self, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 on_epoch: Callable[[int], None] | None = None):
        self.seed, self.num_replicas, self.rank, self.on_epoch, self.epoch = seed, num_replicas, rank, on_epoch, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.on_epoch is not None:
            self.on_epoch(epoch)

    def batches(self, rng: np.random.Generator) -> list[list[int]]:
        """Every process's batches of this epoch."""
        raise NotImplementedError

    def __iter__(self):
        yield from self.batches(np.random.default_rng([self.seed, self.epoch]))[self.rank :: self.num_replicas]


class LengthBucketBatchSampler(EpochBatchSampler):
    """Batches of similar length, so padding stays small; reshuffled every epoch.

    Indices are shuffled, cut into chunks of ``batch_size * bucket_batches``, sorted by length
    within a chunk and batched; the batch order is shuffled again. Under DDP each of the
    ``num_replicas`` processes takes every ``num_replicas``-th batch; for training
    (``pad_replicas``) the batch list is padded so every process runs the same number of steps.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        bucket_batches: int = 50,
        pad_replicas: bool = True,
        on_epoch: Callable[[int], None] | None = None,
    ):
        super().__init__(seed, num_replicas, rank, on_epoch)
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.bucket_batches, self.pad_replicas = bucket_batches, pad_replicas

    def batches(self, rng: np.random.Generator) -> list[list[int]]:
        n = len(self.lengths)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, n, chunk):
            idx = order[start : start + chunk]
            idx = idx[np.argsort(self.lengths[idx], kind="stable")]
            batches.extend(idx[i : i + self.batch_size].tolist() for i in range(0, len(idx), self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.pad_replicas and batches and len(batches) % self.num_replicas:
            batches += batches[: self.num_replicas - len(batches) % self.num_replicas]
        return batches

    def __len__(self) -> int:
        n = math.ceil(len(self.lengths) / self.batch_size)  # chunks hold whole batches
        if self.pad_replicas:
            return math.ceil(n / self.num_replicas)
        return len(range(self.rank, n, self.num_replicas))


def eval_loader(scan: ScanResult, prep: Preprocessor, vocab: Vocabulary, max_frames: int, batch_size: int) -> DataLoader:
    """Batches of similar length, in a fixed order, for decoding a whole split."""
    ds = GlossDataset(scan, prep, vocab, max_frames)
    sampler = LengthBucketBatchSampler(ds.lengths, batch_size, shuffle=False, pad_replicas=False)
    return DataLoader(ds, batch_sampler=sampler, collate_fn=hybrid_collate_fn)
