"""Hybrid CTC + Attention gloss recogniser (the ASL seed's architecture).

features (B, T, D) -> Linear + LayerNorm + dropout -> optional stride-2 convolutions
-> positions -> Transformer encoder -> CTC head            -> CTC logits (B, T', V)
                                    \\-> GlossDecoder (cross-attention) -> decoder logits (B, L, V)

The attention decoder's cross-entropy gives every output token a direct gradient, which keeps
the shared encoder from settling into the all-blank CTC solution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from signlab.models.transformer import PositionalEncoding, TransformerDecoder, TransformerEncoder


@dataclass
class Encoded:
    out: Tensor  # (B, T', d)
    lengths: Tensor  # (B,)
    padding_mask: Tensor  # (B, T') True at padding


@dataclass
class RecognizerOutput:
    ctc_logits: Tensor  # (B, T', V)
    lengths: Tensor  # (B,) valid CTC frames
    decoder_logits: Tensor | None  # (B, L, V), None for CTC-only models


def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def subsampled_lengths(lengths: Tensor | int, factor: int):
    """Frames left after ``log2(factor)`` stride-2 convolutions (kernel 3, padding 1)."""
    for _ in range(factor.bit_length() - 1):
        lengths = (lengths - 1) // 2 + 1
    return lengths


class ConvSubsampling(nn.Module):
    """Stride-2 1-D convolutions that shorten the sequence by ``factor`` (1, 2 or 4)."""

    def __init__(self, d_model: int, factor: int):
        super().__init__()
        self.factor = factor
        self.convs = nn.ModuleList(
            nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1) for _ in range(factor.bit_length() - 1)
        )
        self.act = nn.GELU()

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        for conv in self.convs:
            x = x * ~padding_mask(lengths, x.size(1))[..., None]  # padding must read as zeros
            x = self.act(conv(x.transpose(1, 2)).transpose(1, 2))
            lengths = subsampled_lengths(lengths, 2)
        return x, lengths


class InputProjection(nn.Sequential):
    """Any feature dim (1024 for I3D, 540 for pose) to d_model, as in the seed's I3DBackbone."""

    def __init__(self, input_dim: int, d_model: int, dropout: float):
        super().__init__(nn.Linear(input_dim, d_model), nn.LayerNorm(d_model), nn.Dropout(dropout))


class GlossDecoder(TransformerDecoder):
    """3-layer (by default) Transformer decoder with cross-attention over the encoder output."""


class HybridCTCAttentionModel(nn.Module):
    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 3,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        subsampling: int = 1,
        max_len: int = 4096,
    ):
        super().__init__()
        self.subsampling = subsampling
        self.project = InputProjection(input_dim, d_model, dropout)
        self.subsample = ConvSubsampling(d_model, subsampling)
        self.pos = PositionalEncoding(d_model, dropout, max_len)
        self.encoder = TransformerEncoder(d_model, nhead, num_encoder_layers, dim_feedforward, dropout)
        self.ctc_head = nn.Linear(d_model, vocab_size)
        self.decoder = GlossDecoder(vocab_size, d_model, nhead, num_decoder_layers, dim_feedforward, dropout)

    def encode(self, features: Tensor, lengths: Tensor) -> Encoded:
        x, lengths = self.subsample(self.project(features), lengths)
        mask = padding_mask(lengths, x.size(1))
        return Encoded(self.encoder(self.pos(x), mask), lengths, mask)

    def forward(self, features: Tensor, lengths: Tensor, decoder_input: Tensor | None = None) -> RecognizerOutput:
        enc = self.encode(features, lengths)
        dec = None if decoder_input is None else self.decoder(decoder_input, enc.out, enc.padding_mask)
        return RecognizerOutput(self.ctc_head(enc.out), enc.lengths, dec)
