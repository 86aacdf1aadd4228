"""Plain ``nn.Module`` models, usable without the trainer."""

from __future__ import annotations

from torch import nn

from signlab.config import ModelConfig
from signlab.models.hybrid import GlossDecoder, HybridCTCAttentionModel, subsampled_lengths
from signlab.models.tcn import TCNCTCModel

__all__ = ["GlossDecoder", "HybridCTCAttentionModel", "TCNCTCModel", "build_recognizer", "subsampled_lengths"]


def build_recognizer(cfg: ModelConfig, input_dim: int, vocab_size: int) -> nn.Module:
    """The gloss recogniser named by ``cfg.type``."""
    if cfg.type == "tcn":
        return TCNCTCModel(
            input_dim, vocab_size, cfg.d_model, cfg.num_encoder_layers, cfg.tcn_kernel_size, cfg.dropout, cfg.subsampling
        )
    return HybridCTCAttentionModel(
        input_dim,
        vocab_size,
        cfg.d_model,
        cfg.nhead,
        cfg.num_encoder_layers,
        cfg.num_decoder_layers,
        cfg.dim_feedforward,
        cfg.dropout,
        cfg.subsampling,
    )
