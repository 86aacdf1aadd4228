"""What every gloss recogniser offers, and what training, decoding and inference rely on.

A recogniser maps raw features to an :class:`Encoded` sequence (``encode``), that sequence to
CTC logits and, under teacher forcing, attention-decoder logits (``heads``); ``decoder`` is its
attention decoder, or None for a CTC-only model. Nothing else about a model is assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from signlab.models.transformer import TransformerDecoder


@dataclass
class Encoded:
    out: Tensor  # (B, T', d)
    lengths: Tensor  # (B,)
    padding_mask: Tensor  # (B, T') True at padding
    middle_ctc_logits: Tensor | None = None  # (B, T', V) the CTC head on the encoder's middle layer (self-conditioning)


@dataclass
class RecognizerOutput:
    ctc_logits: Tensor  # (B, T', V)
    lengths: Tensor  # (B,) valid CTC frames
    decoder_logits: Tensor | None  # (B, L, V), None for CTC-only models
    attention: Tensor | None = None  # (B, L, T') the decoder's cross-attention, when asked for
    middle_ctc_logits: Tensor | None = None  # (B, T', V) see :class:`Encoded`


class GlossModel(Protocol):
    decoder: TransformerDecoder | None

    def encode(self, features: Tensor, lengths: Tensor) -> Encoded: ...

    def heads(self, enc: Encoded, decoder_input: Tensor | None = None) -> RecognizerOutput: ...
