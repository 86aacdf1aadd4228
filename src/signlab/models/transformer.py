"""Pre-LN Transformer encoder and decoder used by every signlab model.

Attention goes through ``F.scaled_dot_product_attention``. Padding is a boolean mask, True at
padded positions, and is honoured everywhere, so a clip gives the same output alone or padded
in a batch. The decoder can run step by step with a key/value cache (:class:`DecoderState`),
which batched beam search reorders with :meth:`DecoderState.select`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PositionalEncoding(nn.Module):
    """Sinusoidal positions added to the input (Vaswani et al.), then dropout."""

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 4096):
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div)
        self.register_buffer("pe", pe, persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        return self.dropout(x + self.pe[offset : offset + x.size(1)])


def _heads(x: Tensor, nhead: int) -> Tensor:
    b, t, d = x.shape
    return x.view(b, t, nhead, d // nhead).transpose(1, 2)


def _merge(x: Tensor) -> Tensor:
    b, h, t, hd = x.shape
    return x.transpose(1, 2).reshape(b, t, h * hd)


def keep_mask(padding_mask: Tensor | None) -> Tensor | None:
    """(B, S) True-at-padding -> (B, 1, 1, S) True-where-attention-is-allowed."""
    return None if padding_mask is None else ~padding_mask[:, None, None, :]


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, nhead: int, dropout: float):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model {d_model} is not divisible by nhead {nhead}")
        self.nhead, self.dropout = nhead, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        q, k, v = (_heads(t, self.nhead) for t in self.qkv(x).chunk(3, dim=-1))
        if cache is not None:  # incremental decoding: x holds only the newest position(s)
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            causal = causal and x.size(1) > 1
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=causal
        )
        return self.out(_merge(y)), (k, v)


class CrossAttention(nn.Module):
    def __init__(self, d_model: int, nhead: int, dropout: float):
        super().__init__()
        self.nhead, self.dropout = nhead, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv(memory).chunk(2, dim=-1)
        return _heads(k, self.nhead), _heads(v, self.nhead)

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor | None) -> Tensor:
        q = _heads(self.q(x), self.nhead)
        y = F.scaled_dot_product_attention(
            q, kv[0], kv[1], attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(_merge(y))


def feed_forward(d_model: int, dim_feedforward: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_model, dim_feedforward), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim_feedforward, d_model)
    )


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, nhead, dropout)
        self.ff = feed_forward(d_model, dim_feedforward, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask)[0])
        return x + self.drop(self.ff(self.norm2(x)))


class TransformerEncoder(nn.Module):
    def __init__(self, d_model: int, nhead: int, num_layers: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        mask = keep_mask(padding_mask)
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.self_attn = SelfAttention(d_model, nhead, dropout)
        self.cross_attn = CrossAttention(d_model, nhead, dropout)
        self.ff = feed_forward(d_model, dim_feedforward, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory_kv: tuple[Tensor, Tensor],
        memory_mask: Tensor | None,
        cache: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, kv = self.self_attn(self.norm1(x), causal=True, cache=cache)
        x = x + self.drop(h)
        x = x + self.drop(self.cross_attn(self.norm2(x), memory_kv, memory_mask))
        return x + self.drop(self.ff(self.norm3(x))), kv


@dataclass
class DecoderState:
    """Everything incremental decoding keeps between steps, batch-first in every tensor."""

    memory_kv: list[tuple[Tensor, Tensor]]  # per layer, computed once from the encoder output
    memory_mask: Tensor | None  # (B, 1, 1, S) keep-mask
    self_kv: list[tuple[Tensor, Tensor]] | None = None  # per layer, grows by one position a step
    length: int = 0

    def select(self, index: Tensor, same_memory: bool = False) -> DecoderState:
        """Keep / reorder / repeat batch entries (beam search). ``same_memory``: every new row reads
        the same encoder output as its old one (beams reordered within their sample), so the
        cross-attention keys and values are kept as they are instead of copied."""

        def pick(kv: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            return kv[0].index_select(0, index), kv[1].index_select(0, index)

        if same_memory:
            memory_kv, memory_mask = self.memory_kv, self.memory_mask
        else:
            memory_kv = [pick(kv) for kv in self.memory_kv]
            memory_mask = None if self.memory_mask is None else self.memory_mask.index_select(0, index)
        return DecoderState(memory_kv, memory_mask, None if self.self_kv is None else [pick(kv) for kv in self.self_kv],
                            self.length)


class TransformerDecoder(nn.Module):
    """Token embedding + positions + causal decoder layers with cross-attention + output layer."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        nhead: int,
        num_layers: int,
        dim_feedforward: int,
        dropout: float,
        max_len: int = 1024,
    ):
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = PositionalEncoding(d_model, dropout, max_len)
        self.layers = nn.ModuleList(DecoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, vocab_size)

    def init_state(self, memory: Tensor, memory_padding_mask: Tensor | None) -> DecoderState:
        kv = [layer.cross_attn.memory_kv(memory) for layer in self.layers]
        return DecoderState(kv, keep_mask(memory_padding_mask))

    def forward(self, tokens: Tensor, memory: Tensor, memory_padding_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing: (B, L) tokens -> (B, L, V) logits."""
        state = self.init_state(memory, memory_padding_mask)
        x = self.pos(self.embed(tokens) * math.sqrt(self.d_model))
        for layer, kv in zip(self.layers, state.memory_kv):
            x, _ = layer(x, kv, state.memory_mask)
        return self.output(self.norm(x))

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """One incremental step: (B,) newest tokens -> (B, V) logits for the next position."""
        x = self.pos(self.embed(tokens[:, None]) * math.sqrt(self.d_model), offset=state.length)
        new_kv = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, state.memory_kv[i], state.memory_mask, None if state.self_kv is None else state.self_kv[i])
            new_kv.append(kv)
        logits = self.output(self.norm(x[:, -1]))
        return logits, DecoderState(state.memory_kv, state.memory_mask, new_kv, state.length + 1)
