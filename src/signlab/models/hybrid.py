"""Hybrid CTC + Attention gloss recogniser (the ASL seed's architecture).

features (B, T, D) -> standardise -> Linear + LayerNorm + dropout -> optional stride-2 convolutions
-> positions -> Transformer encoder -> CTC head            -> CTC logits (B, T', V)
                                    \\-> Transformer decoder (cross-attention) -> decoder logits (B, L, V)

The attention decoder's cross-entropy gives every output token a direct gradient, which keeps
the shared encoder from settling into the all-blank CTC solution.
"""

from __future__ import annotations

from torch import Tensor, nn

from signlab.models.frontend import FrontEnd
from signlab.models.interface import Encoded, RecognizerOutput
from signlab.models.transformer import (
    PositionalEncoding,
    TransformerDecoder,
    TransformerEncoder,
)


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
        pose_layout: bool = False,
        hand_shape: bool = False,
    ):
        super().__init__()
        self.subsampling = subsampling
        self.frontend = FrontEnd(input_dim, d_model, dropout, subsampling, pose_layout, hand_shape)
        self.pos = PositionalEncoding(d_model, dropout, max_len)
        self.encoder = TransformerEncoder(d_model, nhead, num_encoder_layers, dim_feedforward, dropout)
        self.ctc_head = nn.Linear(d_model, vocab_size)
        self.decoder = TransformerDecoder(vocab_size, d_model, nhead, num_decoder_layers, dim_feedforward, dropout)

    def encode(self, features: Tensor, lengths: Tensor) -> Encoded:
        """Raw (body-relative) features -> encoder output; standardisation happens in the front end."""
        x, lengths, mask = self.frontend(features, lengths)
        return Encoded(self.encoder(self.pos(x), mask), lengths, mask)

    def heads(self, enc: Encoded, decoder_input: Tensor | None = None, need_attention: bool = False) -> RecognizerOutput:
        """CTC logits, and decoder logits under teacher forcing when ``decoder_input`` is given
        (with ``need_attention``, also the last decoder layer's cross-attention)."""
        dec = attention = None
        if decoder_input is not None and need_attention:
            dec, attention = self.decoder.forward_with_attention(decoder_input, enc.out, enc.padding_mask)
        elif decoder_input is not None:
            dec = self.decoder(decoder_input, enc.out, enc.padding_mask)
        return RecognizerOutput(self.ctc_head(enc.out), enc.lengths, dec, attention)

    def forward(self, features: Tensor, lengths: Tensor, decoder_input: Tensor | None = None) -> RecognizerOutput:
        return self.heads(self.encode(features, lengths), decoder_input)
