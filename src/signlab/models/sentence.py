"""Sentence model of the SignTalk workflow: a clip embedding for retrieval, and text generation.

features (B, T, D) -> front end (standardise, with pose the hands' shapes, project to ``proj_dim``) = projected frames
  -> positions -> Transformer encoder (padding-masked) -> context (B, T, embed_dim)
     -> mean over valid frames -> LayerNorm -> L2 normalised clip embedding (B, embed_dim)
     -> text decoder (cross-attention over the context) -> word logits
  masked-frame modelling: some projected frames replaced by a learned token, reconstructed
  from the context (an auxiliary loss, as in the seed)

The projected frames are what the inference engine's DTW re-ranking compares. With glosses in the
manifest, a gloss head on the context (CTC) recognises the signs frame by frame: the engine's
evidence of which phrase was signed, or that none was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signlab.config import SentenceModelConfig
from signlab.models.frontend import FrontEnd, auto_subsampling
from signlab.models.transformer import (
    PositionalEncoding,
    TransformerDecoder,
    TransformerEncoder,
)


@dataclass
class SentenceEncoding:
    embedding: Tensor  # (B, E), unit length
    context: Tensor  # (B, T', E)
    projected: Tensor  # (B, T', P) frames after the front end
    lengths: Tensor  # (B,)
    padding_mask: Tensor  # (B, T') True at padding
    gloss_logits: Tensor | None = None  # (B, T', G + 1): the gloss head's CTC logits (blank first), if it has one


class SignTranslationModel(nn.Module):
    def __init__(self, input_dim: int, vocab_size: int, cfg: SentenceModelConfig = SentenceModelConfig(),
                 pose_layout: bool = False):
        super().__init__()
        sub = auto_subsampling(pose_layout) if cfg.subsampling == "auto" else cfg.subsampling
        self.frontend = FrontEnd(input_dim, cfg.proj_dim, cfg.encoder_dropout, sub, pose_layout, cfg.hand_shape)
        self.subsampling = sub
        self.to_model = nn.Linear(cfg.proj_dim, cfg.embed_dim)
        self.pos = PositionalEncoding(cfg.embed_dim, cfg.encoder_dropout)
        self.encoder = TransformerEncoder(cfg.embed_dim, cfg.attn_heads, cfg.encoder_layers, cfg.encoder_ff_dim,
                                          cfg.encoder_dropout)
        self.pool_norm = nn.LayerNorm(cfg.embed_dim)
        self.decoder = TransformerDecoder(vocab_size, cfg.embed_dim, cfg.attn_heads, cfg.decoder_layers,
                                          cfg.embed_dim * 4, cfg.encoder_dropout)
        self.mask_token = nn.Parameter(torch.zeros(cfg.proj_dim))
        self.mask_decoder = nn.Sequential(nn.LayerNorm(cfg.embed_dim), nn.Linear(cfg.embed_dim, cfg.embed_dim), nn.GELU(),
                                          nn.Linear(cfg.embed_dim, cfg.proj_dim))
        # glosses recognised frame by frame (CTC, blank = 0): evidence of which phrase, or of none
        self.gloss_head = nn.Linear(cfg.embed_dim, len(cfg.glosses) + 1) if cfg.glosses else None

    def project(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Projected frames (B, T', P), lengths and padding mask."""
        return self.frontend(features, lengths)

    def encode_projected(self, projected: Tensor, lengths: Tensor, padding_mask: Tensor) -> SentenceEncoding:
        context = self.encoder(self.pos(self.to_model(projected)), padding_mask)
        keep = (~padding_mask)[..., None].to(context.dtype)
        pooled = (context * keep).sum(1) / keep.sum(1).clamp(min=1)  # padded frames do not count
        embedding = F.normalize(self.pool_norm(pooled), dim=-1)
        glosses = None if self.gloss_head is None else self.gloss_head(context)
        return SentenceEncoding(embedding, context, projected, lengths, padding_mask, glosses)

    def encode(self, features: Tensor, lengths: Tensor) -> SentenceEncoding:
        return self.encode_projected(*self.project(features, lengths))

    def forward(self, features: Tensor, lengths: Tensor, decoder_input: Tensor | None = None) -> tuple[SentenceEncoding, Tensor | None]:
        enc = self.encode(features, lengths)
        logits = None if decoder_input is None else self.decoder(decoder_input, enc.context, enc.padding_mask)
        return enc, logits

    def masked_frame_loss(self, enc: SentenceEncoding, ratio: float, generator: torch.Generator | None = None) -> Tensor:
        """Replace a random ``ratio`` of valid projected frames by the mask token and reconstruct
        them from the encoder's context (smooth L1 on the masked frames only)."""
        valid = ~enc.padding_mask
        draw = torch.rand(valid.shape, generator=generator, device="cpu").to(valid.device)
        mask = (draw < ratio) & valid
        if not mask.any():  # at least one masked frame per batch
            first = valid.nonzero()[0]
            mask[first[0], first[1]] = True
        target = enc.projected.detach()
        masked = torch.where(mask[..., None], self.mask_token.to(target.dtype), enc.projected)
        context = self.encoder(self.pos(self.to_model(masked)), enc.padding_mask)
        return F.smooth_l1_loss(self.mask_decoder(context)[mask], target[mask])


class SentenceEncoderExport(nn.Module):
    """What the engine needs from a clip, as one traceable module: embedding, projected frames,
    the context the text decoder reads and, with a gloss head, its logits."""

    def __init__(self, model: SignTranslationModel):
        super().__init__()
        self.model = model

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        enc = self.model.encode(features, lengths)
        return (enc.embedding, enc.projected, enc.context) + (() if enc.gloss_logits is None else (enc.gloss_logits,))
