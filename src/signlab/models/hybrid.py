"""Hybrid CTC + Attention gloss recogniser (the ASL seed's architecture).

features (B, T, D) -> standardise -> Linear + LayerNorm + dropout -> optional stride-2 convolutions
-> encoder (positions + Transformer, or convolutions + BiLSTM) -> CTC head -> CTC logits (B, T', V)
                                    \\-> Transformer decoder (cross-attention) -> decoder logits (B, L, V)

The attention decoder's cross-entropy gives every output token a direct gradient, which keeps
the shared encoder from settling into the all-blank CTC solution.
"""

from __future__ import annotations

from torch import Tensor, nn

from signlab.models.frontend import FrontEnd
from signlab.models.interface import Encoded, RecognizerOutput
from signlab.models.recurrent import ConvBiLSTMEncoder
from signlab.models.tcn import TCNEncoder
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
        encoder: str = "transformer",
        kernel_size: int = 5,
        self_conditioning: bool = False,
    ):
        super().__init__()
        self.subsampling = subsampling
        self.frontend = FrontEnd(input_dim, d_model, dropout, subsampling, pose_layout, hand_shape)
        if encoder == "bilstm":  # recurrence orders the frames: no positions
            self.pos, self.encoder = nn.Dropout(dropout), ConvBiLSTMEncoder(d_model, num_encoder_layers, dropout)
        elif encoder == "tcn":
            self.pos, self.encoder = nn.Dropout(dropout), TCNEncoder(d_model, num_encoder_layers, kernel_size, dropout)
        else:
            self.pos = PositionalEncoding(d_model, dropout, max_len)
            self.encoder = TransformerEncoder(d_model, nhead, num_encoder_layers, dim_feedforward, dropout)
        self.ctc_head = nn.Linear(d_model, vocab_size)
        self.decoder = TransformerDecoder(vocab_size, d_model, nhead, num_decoder_layers, dim_feedforward, dropout)
        # self-conditioned CTC (Nozaki & Komatsu, 2021): the CTC head reads the middle layer too, and its
        # label posteriors are added back into the sequence, so the layers above see what was recognised
        self.middle_norm = nn.LayerNorm(d_model) if self_conditioning else None
        self.condition = nn.Linear(vocab_size, d_model) if self_conditioning else None

    def encode(self, features: Tensor, lengths: Tensor) -> Encoded:
        """Raw (body-relative) features -> encoder output; standardisation happens in the front end."""
        x, lengths, mask = self.frontend(features, lengths)
        middle_logits: list[Tensor] = []

        def middle(h: Tensor) -> Tensor:
            middle_logits.append(self.ctc_head(self.middle_norm(h)))
            return h + self.condition(middle_logits[0].softmax(-1))

        out = self.encoder(self.pos(x), mask, middle if self.condition is not None else None)
        return Encoded(out, lengths, mask, middle_logits[0] if middle_logits else None)

    def heads(self, enc: Encoded, decoder_input: Tensor | None = None, need_attention: bool = False) -> RecognizerOutput:
        """CTC logits, and decoder logits under teacher forcing when ``decoder_input`` is given
        (with ``need_attention``, also the last decoder layer's cross-attention)."""
        dec = attention = None
        if decoder_input is not None and need_attention:
            dec, attention = self.decoder.forward_with_attention(decoder_input, enc.out, enc.padding_mask)
        elif decoder_input is not None:
            dec = self.decoder(decoder_input, enc.out, enc.padding_mask)
        return RecognizerOutput(self.ctc_head(enc.out), enc.lengths, dec, attention, enc.middle_ctc_logits)

    def forward(self, features: Tensor, lengths: Tensor, decoder_input: Tensor | None = None) -> RecognizerOutput:
        return self.heads(self.encode(features, lengths), decoder_input)
