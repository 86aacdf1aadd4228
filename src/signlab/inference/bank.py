"""The sentence engine's memory: encoders (PyTorch or ONNX Runtime), the embedding bank of known
clips, sentence prototypes, and building a bank from scanned clips."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch

from signlab.atomic import load_npz, save_npz
from signlab.config import SentenceConfig
from signlab.data.dataset import pad_clips, pick_frames
from signlab.data.features import Preprocessor, ScanResult
from signlab.data.sentence import sentence_key
from signlab.errors import SignlabError
from signlab.inference.onnx import onnx_session
from signlab.models.frontend import subsampled_lengths
from signlab.models.sentence import SignTranslationModel

class Encoding(NamedTuple):
    """An encoder's answer for a batch of (B, T, D) clips."""

    embedding: np.ndarray  # (B, E)
    projected: np.ndarray  # (B, T', P)
    gloss_logits: np.ndarray | None  # (B, T', G + 1); None without a gloss head
    context: np.ndarray | None  # (B, T', d_model), what the text decoder reads; None from an encoder.onnx exported before it had it


class Encoder(Protocol):
    def __call__(self, features: np.ndarray, lengths: np.ndarray) -> Encoding:
        """(B, T, D) float32 raw features, (B,) int64 lengths -> :class:`Encoding`."""


class TorchEncoder:
    def __init__(self, model: SignTranslationModel, device: str | torch.device = "cpu"):
        self.model, self.device = model.to(device).eval(), torch.device(device)

    @torch.no_grad()
    def __call__(self, features: np.ndarray, lengths: np.ndarray) -> Encoding:
        enc = self.model.encode(torch.from_numpy(features).to(self.device), torch.from_numpy(lengths).to(self.device))
        glosses = None if enc.gloss_logits is None else enc.gloss_logits.float().cpu().numpy()
        return Encoding(enc.embedding.float().cpu().numpy(), enc.projected.float().cpu().numpy(), glosses,
                        enc.context.float().cpu().numpy())


class OnnxEncoder:
    """The exported encoder (``encoder.onnx``) on ONNX Runtime's CPU provider."""

    def __init__(self, path: str | Path):
        self.session = onnx_session(path)
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, features: np.ndarray, lengths: np.ndarray) -> Encoding:
        out = dict(zip(self.outputs, self.session.run(None, {"features": features.astype(np.float32),
                                                             "lengths": lengths.astype(np.int64)})))
        return Encoding(out["embedding"], out["projected"], out.get("gloss_logits"), out.get("context"))


@dataclass
class EncodedClips:
    embeddings: np.ndarray  # (N, E)
    sequences: np.ndarray  # (N, dtw_frames, P) float16
    gloss_log_probs: list[np.ndarray] | None  # per clip, the gloss head's CTC log-probabilities (T', G + 1), if any
    contexts: list[np.ndarray] | None = None  # per clip, the encoder's (T', d_model) frames, when asked for and given


def encode_clips(encoder: Encoder, clips: Sequence[np.ndarray], seq_len: int, dtw_frames: int, subsampling: int = 1,
                 batch_size: int = 32, keep_context: bool = False) -> EncodedClips:
    """Embeddings, DTW sequences (each clip's projected frames resampled to ``dtw_frames`` and
    scaled to unit length: a step of DTW then costs 0-2, whatever the model's scale), with a
    gloss head its CTC log-probabilities over each clip's frames, and with ``keep_context`` the
    encoder's frames for the text decoder (so a clip is encoded once for retrieval and translation)."""
    embs, seqs, glosses, contexts = [], [], [], []
    for start in range(0, len(clips), batch_size):
        x, lengths = pad_clips(clips[start : start + batch_size], seq_len)
        emb, proj, logits, context = encoder(x, lengths)
        embs.append(emb)
        valid_frames = subsampled_lengths(lengths, subsampling)
        if keep_context and context is not None:
            contexts += [context[i, :n] for i, n in enumerate(valid_frames.tolist())]
        if logits is not None:
            shifted = logits - logits.max(-1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
            glosses += [log_probs[i, :n] for i, n in enumerate(valid_frames.tolist())]
        for i, n in enumerate(valid_frames.tolist()):
            valid = proj[i, :n]
            picked = pick_frames(valid, dtw_frames)
            picked = picked / np.linalg.norm(picked, axis=1, keepdims=True).clip(1e-8)
            seqs.append(picked.astype(np.float16))
    return EncodedClips(np.concatenate(embs), np.stack(seqs), glosses if logits is not None else None,
                        contexts if len(contexts) == len(clips) else None)


@dataclass
class EmbeddingBank:
    embeddings: np.ndarray  # (N, E) float32, unit length
    sequences: np.ndarray  # (N, L, P) float16: projected frames resampled to L, for DTW
    sentences: np.ndarray  # (N,) sentence keys
    texts: np.ndarray  # (N,)
    clip_ids: np.ndarray  # (N,)
    glosses: np.ndarray | None = None  # (N,) each clip's glosses, space-separated, where the manifest had them

    def __len__(self) -> int:
        return len(self.embeddings)

    def save(self, path: str | Path) -> None:
        extra = {} if self.glosses is None else {"glosses": self.glosses.astype(str)}
        save_npz(path, embeddings=self.embeddings, sequences=self.sequences, sentences=self.sentences.astype(str),
                 texts=self.texts.astype(str), clip_ids=self.clip_ids.astype(str), **extra)

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingBank:
        z = load_npz(path, ("embeddings", "sequences", "sentences", "texts", "clip_ids"), "embedding bank", ("glosses",))
        n = len(z["embeddings"])
        if z["embeddings"].ndim != 2 or z["sequences"].ndim != 3 or any(len(v) != n for v in z.values()):
            raise SignlabError(f"{path}: the bank's arrays disagree in shape ({', '.join(f'{k} {v.shape}' for k, v in z.items())}): "
                               "rebuild it with `signlab sentence index`")
        return cls(z["embeddings"], z["sequences"], z["sentences"], z["texts"], z["clip_ids"], z.get("glosses"))

    def phrase_glosses(self) -> dict[str, tuple[str, ...]]:
        """Each sentence's glosses (from its first clip that has them); empty without glosses."""
        book: dict[str, tuple[str, ...]] = {}
        if self.glosses is not None:
            for key, g in zip(self.sentences.tolist(), self.glosses.tolist()):
                if g and key not in book:
                    book[key] = tuple(g.split())
        return book

    def prototypes(self, min_clips: int = 2) -> Prototypes:
        """Mean (re-normalised) embedding of each sentence with at least ``min_clips`` clips."""
        keys, inverse, counts = np.unique(self.sentences, return_inverse=True, return_counts=True)
        sums = np.zeros((len(keys), self.embeddings.shape[1]), np.float64)
        np.add.at(sums, inverse, self.embeddings)
        keep = counts >= min_clips
        vectors = sums[keep] / np.linalg.norm(sums[keep], axis=1, keepdims=True).clip(1e-8)
        return Prototypes(keys[keep], vectors.astype(np.float32), counts[keep])


@dataclass
class Prototypes:
    keys: np.ndarray
    vectors: np.ndarray  # (K, E), unit length
    counts: np.ndarray
    position: dict[str, int] = field(init=False, repr=False)  # sentence key -> row

    def __post_init__(self) -> None:
        self.position = {k: i for i, k in enumerate(self.keys.tolist())}

    def save(self, path: str | Path) -> None:
        save_npz(path, sentence_ids=self.keys.astype(str), embeddings=self.vectors, counts=self.counts)

    @classmethod
    def load(cls, path: str | Path) -> Prototypes:
        z = load_npz(path, ("sentence_ids", "embeddings", "counts"), "prototype file")
        return cls(z["sentence_ids"], z["embeddings"], z["counts"])


def build_bank(encoder: Encoder, scan_result: ScanResult, prep: Preprocessor, cfg: SentenceConfig,
               subsampling: int) -> EmbeddingBank:
    enc = encode_clips(encoder, scan_result.all_features(prep), cfg.data.seq_len, cfg.engine.dtw.frames, subsampling)
    samples = scan_result.samples
    glosses = np.array([" ".join(s.glosses) for s in samples]) if any(s.glosses for s in samples) else None
    return EmbeddingBank(enc.embeddings, enc.sequences, np.array([sentence_key(s) for s in samples]),
                         np.array([s.text for s in samples]), np.array([s.id for s in samples]), glosses)
