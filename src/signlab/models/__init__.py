"""Plain ``nn.Module`` models, usable without the trainer.

Imports only torch, :mod:`signlab.config` and the leaf :mod:`signlab.pose` layout: never the data
pipeline, training or inference. :mod:`signlab.models.interface` is what the rest of signlab
may assume about a gloss recogniser.
"""

from __future__ import annotations

from torch import nn

from signlab.config import ModelConfig
from signlab.models.frontend import Stats, auto_subsampling, subsampled_lengths
from signlab.models.hybrid import HybridCTCAttentionModel
from signlab.models.tcn import TCNCTCModel

__all__ = ["HybridCTCAttentionModel", "TCNCTCModel", "auto_subsampling", "build_recognizer",
           "subsampled_lengths"]


def build_recognizer(cfg: ModelConfig, input_dim: int, vocab_size: int, stats: Stats | None = None,
                     pose_layout: bool = False) -> nn.Module:
    """The gloss recogniser named by ``cfg.type``, standardising with ``stats`` when given;
    ``pose_layout``: the input is pose/holistic-540 (:mod:`signlab.kinds`)."""
    sub = auto_subsampling(pose_layout) if cfg.subsampling == "auto" else cfg.subsampling
    if cfg.type == "tcn":
        model: nn.Module = TCNCTCModel(input_dim, vocab_size, cfg.d_model, cfg.num_encoder_layers, cfg.tcn_kernel_size,
                                       cfg.dropout, sub, pose_layout, cfg.hand_shape)
    else:
        model = HybridCTCAttentionModel(input_dim, vocab_size, cfg.d_model, cfg.nhead, cfg.num_encoder_layers,
                                        cfg.num_decoder_layers, cfg.dim_feedforward, cfg.dropout, sub,
                                        pose_layout=pose_layout, hand_shape=cfg.hand_shape, encoder=cfg.encoder,
                                        kernel_size=cfg.tcn_kernel_size, self_conditioning=cfg.intermediate_ctc > 0)
    if stats is not None:
        model.frontend.normalize.set_stats(stats.mean, stats.std)
    return model
