"""Sentence-level data (the SignTalk workflow): splits, dual-view dataset, class-balanced batches.

A manifest row is a clip of one sentence: ``sentence_id`` (or, without one, clips with the same
``text`` are the same sentence), ``text`` / ``sentence``, optional ``category`` and
``text_variations`` (a JSON list of paraphrases, any of which is a correct translation).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from signlab.data.augment import Augmentation
from signlab.data.dataset import EpochBatchSampler, pick_frames, resample_frames
from signlab.data.features import Preprocessor, ScanResult
from signlab.data.manifest import Sample
from signlab.errors import SignlabError
from signlab.vocab import EOS, PAD, SOS, Vocabulary, tokenize_words


def sentence_key(sample: Sample) -> str:
    """Which sentence a clip shows: its sentence_id, else its text."""
    sid = sample.extra.get("sentence_id", "").strip()
    return sid if sid else sample.text.strip().lower()


def variations(sample: Sample) -> list[str]:
    """Every accepted translation of the clip: its text and its text_variations."""
    texts = [sample.text] if sample.text else []
    raw = sample.extra.get("text_variations", "")
    if raw:
        try:
            more = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SignlabError(f"{sample.where}: text_variations is not a JSON list ({exc})") from exc
        if not isinstance(more, list) or not all(isinstance(t, str) for t in more):
            raise SignlabError(f"{sample.where}: text_variations must be a JSON list of strings")
        texts += [t for t in more if t not in texts]
    return texts


def even_odd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The clip's even and odd frames: its two views (a clip under 4 frames is both)."""
    return (x[0::2], x[1::2]) if len(x) >= 4 else (x, x)


def at_clip_rate(view: np.ndarray, half: int, whole: int, seq_len: int) -> np.ndarray:
    """A training view (``half`` frames of a ``whole``-frame clip, then augmented) at the frame
    rate the whole clip has at inference (resampled to at most ``seq_len``): frames repeated or
    dropped evenly. Measured on the sentence demo: views at half the inference rate left the gloss
    head at 0.68 nats per gloss on training clips as inference sees them, against 0.14 in training."""
    return pick_frames(view, min(seq_len, max(1, round(len(view) * min(whole, seq_len) / max(half, 1)))))


def split_by_sentence(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Train / validation with no sentence in both. Sentences with a single clip stay in train
    (a lone validation clip has nothing to be retrieved against); about ``val_fraction`` of the
    clips of the others go to validation, whole sentences at a time."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[sentence_key(s)].append(s)
    candidates = sorted(k for k, g in groups.items() if len(g) > 1)
    order = [candidates[i] for i in np.random.default_rng(seed).permutation(len(candidates))]
    target, val_keys, taken = val_fraction * len(samples), set(), 0
    for key in order:
        if taken >= target:
            break
        val_keys.add(key)
        taken += len(groups[key])
    return [s for s in samples if sentence_key(s) not in val_keys], [s for s in samples if sentence_key(s) in val_keys]


def split_by_signer(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out whole signers (about ``val_fraction`` of the clips) for validation."""
    signers = sorted({s.signer for s in samples})
    if len(signers) < 2:
        raise SignlabError("a split by signer needs at least two signers in the manifest's signer column")
    order = [signers[i] for i in np.random.default_rng(seed).permutation(len(signers))]
    counts = {g: sum(s.signer == g for s in samples) for g in signers}
    held, taken = set(), 0
    for g in order[:-1]:  # at least one signer stays in train
        if taken >= val_fraction * len(samples):
            break
        held.add(g)
        taken += counts[g]
    return [s for s in samples if s.signer not in held], [s for s in samples if s.signer in held]


class SentenceDataset(Dataset):
    """Clips with their sentence label and text tokens.

    With ``views`` (training), each item holds two views of the clip (``a``, ``b``): its even and
    its odd frames, each augmented by its own transform, for the contrastive loss; the text target
    is one of the sentence's accepted variations. Without, the whole clip as ``a`` and the
    canonical text, plus, with ``halves``, its unaugmented even / odd frames (``even``, ``odd``).
    """

    def __init__(self, scan: ScanResult, prep: Preprocessor, vocab: Vocabulary, labels: dict[str, int], seq_len: int,
                 views: tuple[Augmentation, Augmentation] | None = None, seed: int = 0, halves: bool = False,
                 glosses: Sequence[str] | None = None):
        self.scan, self.samples = scan, scan.samples
        self.prep, self.vocab, self.labels, self.seq_len = prep, vocab, labels, seq_len
        self.views, self.seed, self.epoch, self.halves = views, seed, 0, halves
        self.texts = [variations(s) for s in self.samples]
        # the gloss head's targets (index + 1: 0 is CTC's blank), when training with one
        index = {g: i + 1 for i, g in enumerate(glosses or ())}
        self.gloss_ids = [[index[g] for g in s.glosses] for s in self.samples] if glosses else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def _tokens(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.vocab.encode(tokenize_words(text))
        return torch.tensor([SOS, *ids]), torch.tensor([*ids, EOS])

    def __getitem__(self, index: int) -> dict:
        x = self.scan.features(index, self.prep)
        sample = self.samples[index]
        item = {"id": sample.id, "label": self.labels[sentence_key(sample)], "text": sample.text,
                "glosses": " ".join(sample.glosses)}
        halves = even_odd(x)
        if self.views is None:
            item["a"] = torch.from_numpy(np.ascontiguousarray(resample_frames(x, self.seq_len)))
            if self.halves:
                for key, half in zip(("even", "odd"), halves):
                    item[key] = torch.from_numpy(np.ascontiguousarray(resample_frames(half, self.seq_len)))
            item["decoder_input"], item["decoder_target"] = self._tokens(sample.text)
            return item
        rng = np.random.default_rng([self.seed, self.epoch, index])
        for key, half, augment in zip(("a", "b"), halves, self.views):
            view = at_clip_rate(augment(half, rng), len(half), len(x), self.seq_len)
            item[key] = torch.from_numpy(np.ascontiguousarray(view))
        texts = self.texts[index]
        item["decoder_input"], item["decoder_target"] = self._tokens(texts[int(rng.integers(len(texts)))])
        if self.gloss_ids is not None:
            item["gloss_targets"] = torch.tensor(self.gloss_ids[index])
        return item


def sentence_collate(batch: Sequence[dict]) -> dict:
    out: dict = {"ids": [b["id"] for b in batch], "texts": [b["text"] for b in batch], "glosses": [b["glosses"] for b in batch],
                 "labels": torch.tensor([b["label"] for b in batch])}
    for key in ("a", "b", "even", "odd"):
        if key in batch[0]:
            out[key] = pad_sequence([b[key] for b in batch], batch_first=True)
            out[f"{key}_lengths"] = torch.tensor([len(b[key]) for b in batch])
    out["decoder_input"] = pad_sequence([b["decoder_input"] for b in batch], batch_first=True, padding_value=PAD)
    out["decoder_target"] = pad_sequence([b["decoder_target"] for b in batch], batch_first=True, padding_value=PAD)
    if "gloss_targets" in batch[0]:
        out["gloss_targets"] = pad_sequence([b["gloss_targets"] for b in batch], batch_first=True)
        out["gloss_lengths"] = torch.tensor([len(b["gloss_targets"]) for b in batch])
    return out


class ClassBalancedSampler(EpochBatchSampler):
    """Batches of ``batch_size // k`` sentences with ``k`` clips each, so every anchor of the
    contrastive loss has positives. Clips are drawn without replacement where a sentence has k,
    with replacement otherwise; ``len(dataset) // batch_size`` batches an epoch, reshuffled from
    (seed, epoch); under DDP each process takes every ``num_replicas``-th batch."""

    def __init__(self, labels: Sequence[int], batch_size: int, k: int = 2, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0, on_epoch: Callable[[int], None] | None = None):
        if batch_size < k or batch_size % k:
            raise SignlabError(f"batch size {batch_size} must be a multiple of data.instances_per_class {k}")
        super().__init__(seed, num_replicas, rank, on_epoch)
        self.by_label: dict[int, list[int]] = defaultdict(list)
        for i, label in enumerate(labels):
            self.by_label[label].append(i)
        self.labels_list = sorted(self.by_label)
        self.batch_size, self.k = batch_size, k
        self.num_batches = max(1, len(labels) // batch_size)

    def batches(self, rng: np.random.Generator) -> list[list[int]]:
        per_batch = min(len(self.labels_list), self.batch_size // self.k)
        total = self.num_replicas * math.ceil(self.num_batches / self.num_replicas)
        batches = []
        for _ in range(total):
            chosen = rng.choice(len(self.labels_list), size=per_batch, replace=False)
            batch = []
            for c in chosen:
                pool = self.by_label[self.labels_list[c]]
                batch += rng.choice(pool, size=self.k, replace=len(pool) < self.k).tolist()
            batches.append(batch)
        return batches

    def __len__(self) -> int:
        return math.ceil(self.num_batches / self.num_replicas)
