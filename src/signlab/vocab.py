"""Gloss vocabulary and word tokenizer with the fixed special tokens of signlab.

``<pad>=0 <unk>=1 <blank>=2 <sos>=3 <eos>=4`` in every vocabulary, so CTC heads, decoders and
saved bundles agree on them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from signlab.atomic import load_json, write_json
from signlab.errors import SignlabError

PAD, UNK, BLANK, SOS, EOS = 0, 1, 2, 3, 4
SPECIAL_TOKENS = ("<pad>", "<unk>", "<blank>", "<sos>", "<eos>")


class Vocabulary:
    """Token <-> id mapping: the special tokens first, then tokens by frequency, then name."""

    def __init__(self, tokens: Sequence[str]):
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise SignlabError(f"a vocabulary must start with {SPECIAL_TOKENS}, got {tuple(tokens[:5])}")
        if len(set(tokens)) != len(tokens):
            dupes = sorted(t for t, c in Counter(tokens).items() if c > 1)
            raise SignlabError(f"vocabulary has duplicate tokens: {dupes[:10]}")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        counts = Counter(tok for seq in sequences for tok in seq)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls([*SPECIAL_TOKENS, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.index.get(t, UNK) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids to tokens, dropping pad/blank/sos/eos (``<unk>`` stays visible)."""
        return [self.tokens[i] for i in ids if i not in (PAD, BLANK, SOS, EOS)]

    def unknown(self, tokens: Iterable[str]) -> set[str]:
        return {t for t in tokens if t not in self.index}

    def save(self, path: str | Path) -> None:
        write_json(path, {"tokens": self.tokens})

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        data = load_json(path, "vocabulary")
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise SignlabError(f"{path} is not a signlab vocabulary: it needs {{\"tokens\": [...strings]}}")
        try:
            return cls(tokens)
        except SignlabError as exc:
            raise SignlabError(f"{path}: {exc}") from None


_PUNCTUATION = re.compile(r"[^\w\s'-]|(?<!\w)'|'(?!\w)")


def tokenize_words(text: str) -> list[str]:
    """Spoken-language text to word tokens: lower case, punctuation removed, apostrophes kept."""
    return _PUNCTUATION.sub(" ", text.lower()).split()
