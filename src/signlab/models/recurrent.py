"""The CSLR field's standard encoder (VAC, SMKD, CorrNet): 1-D temporal convolutions, then a
bidirectional LSTM. Convolutions see a sign's few frames, the LSTM the sentence; both bring an
order to the frames that self-attention must learn, which is why this encoder learns from a few
hundred clips where a Transformer's CTC head stays all-blank.

Padding never changes a clip's output: the backward LSTM reads each clip reversed within its own
length (an index gather, not packed sequences, so the ONNX export keeps dynamic shapes).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from signlab.models.transformer import Middle


class TemporalConv(nn.Module):
    """Kernel-5 convolution over time, LayerNorm, GELU, dropout; padded frames read as zeros."""

    def __init__(self, d_model: int, dropout: float, kernel_size: int = 5):
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(d_model)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        h = self.conv((x * keep).transpose(1, 2)).transpose(1, 2)
        return x + self.drop(self.act(self.norm(h)))


def reverse_within(x: Tensor, lengths: Tensor) -> Tensor:
    """Each (B, T, D) row's first ``lengths[b]`` frames in reverse order; padding stays in place.
    Its own inverse."""
    t = torch.arange(x.size(1), device=x.device)[None]
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return x.gather(1, index[..., None].expand(-1, -1, x.size(2)))


class BiLSTMLayer(nn.Module):
    """Forward and backward LSTMs of ``d_model // 2`` units each, outputs concatenated."""

    def __init__(self, d_model: int):
        super().__init__()
        self.forward_lstm = nn.LSTM(d_model, d_model // 2, batch_first=True)
        self.backward_lstm = nn.LSTM(d_model, d_model // 2, batch_first=True)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        ahead = self.forward_lstm(x)[0]
        behind = reverse_within(self.backward_lstm(reverse_within(x, lengths))[0], lengths)
        return torch.cat([ahead, behind], -1)


class ConvBiLSTMEncoder(nn.Module):
    """``conv_layers`` temporal convolutions, then ``num_layers`` BiLSTM layers (dropout between),
    then LayerNorm: (B, T, d_model) -> (B, T, d_model)."""

    def __init__(self, d_model: int, num_layers: int, dropout: float, conv_layers: int = 1):
        super().__init__()
        if d_model % 2:
            raise ValueError(f"model.d_model={d_model} must be even: the BiLSTM gives each direction half")
        self.convs = nn.ModuleList(TemporalConv(d_model, dropout) for _ in range(conv_layers))
        self.layers = nn.ModuleList(BiLSTMLayer(d_model) for _ in range(num_layers))
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, padding_mask: Tensor, middle: Middle | None = None) -> Tensor:
        keep = (~padding_mask)[..., None].to(x.dtype)
        lengths = keep[..., 0].sum(1).long()
        for conv in self.convs:
            x = conv(x, keep)
        for i, layer in enumerate(self.layers):
            x = self.drop(layer(x, lengths))
            if middle is not None and i == (len(self.layers) - 1) // 2:
                x = middle(x) * keep
        return self.norm(x) * keep
