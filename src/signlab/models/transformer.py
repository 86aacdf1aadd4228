"""Pre-LN Transformer encoder and decoder used by every signlab model.

Attention goes through ``F.scaled_dot_product_attention``. Padding is a boolean mask, True at
padded positions, and is honoured everywhere, so a clip gives the same output alone or padded
in a batch. The decoder can run step by step with a key/value cache (:class:`DecoderState`),
which batched beam search reorders with :meth:`DecoderState.select`. The decoder's batch may hold
several rows per encoder output (the beams of a sample, consecutive): cross-attention then reads
each sample's keys and values once for all its rows instead of a copy per row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


Cache = tuple[Tensor, Tensor]  # an encoder output's keys and values for cross-attention, (B, H, S, hd) each
Middle = Callable[[Tensor], Tensor]  # what an encoder does to its sequence after its middle layer (self-conditioning)


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, nhead: int, dropout: float):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model {d_model} is not divisible by nhead {nhead}")
        self.nhead, self.dropout = nhead, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        q, k, v = (_heads(t, self.nhead) for t in self.qkv(x).chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=causal
        )
        return self.out(_merge(y))

    def step(self, x: Tensor, cache: SelfCache | None, rows: Tensor | None) -> tuple[Tensor, SelfCache]:
        """One new position (N, 1, D) attending to itself and the cached earlier positions of rows
        ``rows`` (default: the same rows) of ``cache``; returns the output and the cache extended."""
        n, _, d = x.shape
        new = self.qkv(x).view(n, 3, d).transpose(0, 1)  # (3, N, D): q, k, v
        cache = SelfCache.start(new[1:]) if cache is None else cache.extend(new[1:], rows)
        k, v = (t.view(len(t), n, self.nhead, -1).permute(1, 2, 0, 3) for t in cache.kv.unbind(1))  # (N, H, L, hd)
        y = F.scaled_dot_product_attention(_heads(new[0, :, None], self.nhead), k, v)
        return self.out(_merge(y)), cache

    def step_with_past(self, x: Tensor, past: Cache) -> tuple[Tensor, Cache]:
        """New positions (N, L, D) attending causally to themselves and the P positions before them,
        whose keys, transposed, (N, H, hd, P), and values (N, H, P, hd) are ``past``; returns the
        output and the keys and values of all P + L positions the same way. A pure function of its
        inputs, what the ONNX export traces (keys kept transposed, so no step copies them to
        multiply); :meth:`step` is the in-place path the PyTorch beam search takes."""
        q, k, v = (_heads(t, self.nhead) for t in self.qkv(x).chunk(3, dim=-1))
        k_t, v = torch.cat([past[0], k.transpose(2, 3)], 3), torch.cat([past[1], v], 2)
        length, total = q.size(2), v.size(2)
        allowed = torch.arange(total, device=x.device)[None] <= torch.arange(length, device=x.device)[:, None] + (total - length)
        return self.out(_merge(attend(q, k_t, v, allowed))), (k_t, v)


def attend(q: Tensor, k_t: Tensor, v: Tensor, allowed: Tensor) -> Tensor:
    """Scaled dot-product attention with transposed keys (..., hd, S) and a boolean mask."""
    return attend_weights(q, k_t, allowed) @ v


def attend_weights(q: Tensor, k_t: Tensor, allowed: Tensor | None) -> Tensor:
    """The weights of scaled dot-product attention, transposed keys (..., hd, S), boolean mask."""
    scores = (q @ k_t) * (q.size(-1) ** -0.5)
    return (scores if allowed is None else scores.masked_fill(~allowed, float("-inf"))).softmax(-1)


@dataclass
class SelfCache:
    """A decoder's own keys and values in incremental decoding, position-major, (L, 2, N, D) in a
    buffer with room to grow, and a spare one of the same size: reordering the rows (beams) copies
    into the spare, appending a position writes in place, so a step allocates nothing. The cache
    an :meth:`extend` is called on shares those buffers and must not be used again."""

    buffer: Tensor  # (capacity, 2, N, D)
    spare: Tensor
    length: int

    @staticmethod
    def start(kv: Tensor, capacity: int = 32) -> SelfCache:
        buffer = kv.new_empty((capacity, *kv.shape))
        buffer[0] = kv
        return SelfCache(buffer, torch.empty_like(buffer), 1)

    @property
    def kv(self) -> Tensor:
        return self.buffer[: self.length]

    def extend(self, kv: Tensor, rows: Tensor | None) -> SelfCache:
        """Rows ``rows`` of this cache (default: all, in order) with ``kv`` (2, N, D) appended."""
        length, n = self.length, kv.size(1)
        buffer, spare = self.buffer, self.spare
        if length == len(buffer) or n != buffer.size(2):  # full, or samples left the batch: new buffers
            old = self.kv if rows is None else self.kv.index_select(2, rows)
            buffer = kv.new_empty((max(len(buffer), 2 * length), *kv.shape))
            buffer[:length], spare = old, torch.empty_like(buffer)
        elif rows is not None:
            torch.index_select(self.kv, 2, rows, out=spare[:length])
            buffer, spare = spare, buffer
        buffer[length] = kv
        return SelfCache(buffer, spare, length + 1)


class CrossAttention(nn.Module):
    def __init__(self, d_model: int, nhead: int, dropout: float):
        super().__init__()
        self.nhead, self.dropout = nhead, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv(memory).chunk(2, dim=-1)
        return _heads(k, self.nhead).contiguous(), _heads(v, self.nhead).contiguous()  # read at every step

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor | None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """(N, L, D) queries against (B, H, S, hd) keys and values, N = B * rows per sample; with
        ``need_weights``, also the attention weights averaged over heads, (N, L, S), computed with
        the keys detached: a loss on them trains where the decoder looks, not the encoder."""
        q = _heads(self.q(x), self.nhead)  # (N, H, L, hd)
        (n, h, length, hd), b = q.shape, kv[0].size(0)
        # the rows of a sample become more query positions of one attention call (a view when N == B)
        q = q.view(b, n // b, h, length, hd).transpose(1, 2).reshape(b, h, -1, hd)
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        weights = None
        if need_weights:
            weights = attend_weights(q, kv[0].detach().transpose(2, 3), mask).mean(1)
            weights = weights.view(b, n // b, length, -1).reshape(n, length, -1)
        return self.out(_merge(y.view(b, h, n // b, length, hd).transpose(1, 2).reshape(n, h, length, hd))), weights

    def forward_transposed(self, x: Tensor, kv_t: Cache, keep: Tensor) -> Tensor:
        """:meth:`forward` (no dropout) with transposed keys (B, H, hd, S), for the ONNX export;
        ``keep`` (B, 1, 1, S) is True at valid frames."""
        q = _heads(self.q(x), self.nhead)
        (n, h, length, hd), b = q.shape, kv_t[0].size(0)
        q = q.view(b, n // b, h, length, hd).transpose(1, 2).reshape(b, h, -1, hd)
        y = attend(q, kv_t[0], kv_t[1], keep)
        return self.out(_merge(y.view(b, h, n // b, length, hd).transpose(1, 2).reshape(n, h, length, hd)))


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
        x = x + self.drop(self.attn(self.norm1(x), mask))
        return x + self.drop(self.ff(self.norm2(x)))


class TransformerEncoder(nn.Module):
    def __init__(self, d_model: int, nhead: int, num_layers: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, middle: Middle | None = None) -> Tensor:
        mask = keep_mask(padding_mask)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask)
            if middle is not None and i == (len(self.layers) - 1) // 2:
                x = middle(x)
        return self.norm(x)


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.self_attn = SelfAttention(d_model, nhead, dropout)
        self.cross_attn = CrossAttention(d_model, nhead, dropout)
        self.ff = feed_forward(d_model, dim_feedforward, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory_kv: Cache, memory_mask: Tensor | None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        x = x + self.drop(self.self_attn(self.norm1(x), causal=True))
        return self._rest(x, memory_kv, memory_mask, need_weights)

    def step(self, x: Tensor, memory_kv: Cache, memory_mask: Tensor | None, cache: SelfCache | None,
             rows: Tensor | None) -> tuple[Tensor, SelfCache]:
        h, cache = self.self_attn.step(self.norm1(x), cache, rows)
        return self._rest(x + self.drop(h), memory_kv, memory_mask)[0], cache

    def step_with_past(self, x: Tensor, memory_kv_t: Cache, keep: Tensor, past: Cache) -> tuple[Tensor, Cache]:
        """:meth:`step` as a pure function (:meth:`SelfAttention.step_with_past`), keys transposed."""
        h, kv = self.self_attn.step_with_past(self.norm1(x), past)
        x = x + h
        x = x + self.cross_attn.forward_transposed(self.norm2(x), memory_kv_t, keep)
        return x + self.ff(self.norm3(x)), kv

    def _rest(self, x: Tensor, memory_kv: Cache, memory_mask: Tensor | None,
              need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        h, weights = self.cross_attn(self.norm2(x), memory_kv, memory_mask, need_weights)
        x = x + self.drop(h)
        return x + self.drop(self.ff(self.norm3(x))), weights


@dataclass
class DecoderState:
    """Everything incremental decoding keeps between steps: per sample, the encoder output's keys
    and values (computed once); per row, the decoder's own (:class:`SelfCache`). Reordering rows
    is deferred to the next step, which does it together with appending the new position."""

    memory_kv: list[Cache]  # per layer, batch-first (B, H, S, hd)
    memory_mask: Tensor | None  # (B, 1, 1, S) keep-mask
    self_kv: list[SelfCache] | None = None  # per layer, grows by one position a step
    rows: Tensor | None = None  # the cache rows each row continues (None: its own)

    @property
    def length(self) -> int:
        """Positions decoded so far."""
        return 0 if self.self_kv is None else self.self_kv[0].length

    def select(self, rows: Tensor, samples: Tensor | None = None) -> DecoderState:
        """The state of rows ``rows`` of this one (beams reordered within their samples), keeping
        the encoder outputs of ``samples`` only (default: all, unchanged)."""
        memory_kv, memory_mask = self.memory_kv, self.memory_mask
        if samples is not None:
            memory_kv = [(k.index_select(0, samples), v.index_select(0, samples)) for k, v in memory_kv]
            memory_mask = None if memory_mask is None else memory_mask.index_select(0, samples)
        return DecoderState(memory_kv, memory_mask, self.self_kv, rows if self.rows is None else self.rows[rows])


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
        return self._teacher_forcing(tokens, memory, memory_padding_mask, need_weights=False)[0]

    def forward_with_attention(self, tokens: Tensor, memory: Tensor,
                               memory_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Teacher forcing, and the last layer's cross-attention weights averaged over heads,
        (B, L, S), as :meth:`CrossAttention.forward` gives them."""
        return self._teacher_forcing(tokens, memory, memory_padding_mask, need_weights=True)

    def _teacher_forcing(self, tokens: Tensor, memory: Tensor, memory_padding_mask: Tensor | None,
                         need_weights: bool) -> tuple[Tensor, Tensor | None]:
        state = self.init_state(memory, memory_padding_mask)
        x, weights = self.pos(self.embed(tokens) * math.sqrt(self.d_model)), None
        for i, (layer, kv) in enumerate(zip(self.layers, state.memory_kv)):
            x, weights = layer(x, kv, state.memory_mask, need_weights and i == len(self.layers) - 1)
        return self.output(self.norm(x)), weights

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """One incremental step: (N,) newest tokens -> (N, V) logits for the next position; N is a
        multiple of the state's samples, each sample's rows consecutive."""
        x = self.pos(self.embed(tokens[:, None]) * math.sqrt(self.d_model), offset=state.length)
        new_kv = []
        for i, layer in enumerate(self.layers):
            x, kv = layer.step(x, state.memory_kv[i], state.memory_mask, None if state.self_kv is None else state.self_kv[i],
                               state.rows)
            new_kv.append(kv)
        logits = self.output(self.norm(x[:, -1]))
        return logits, DecoderState(state.memory_kv, state.memory_mask, new_kv)

    def memory_kv_t(self, memory: Tensor) -> list[Cache]:
        """Every layer's cross-attention keys, transposed, (B, H, hd, S), and values (B, H, S, hd)."""
        return [(k.transpose(2, 3), v) for k, v in (layer.cross_attn.memory_kv(memory) for layer in self.layers)]

    def forward_with_past(self, tokens: Tensor, past: list[Cache], memory_kv_t: list[Cache],
                          memory_keep: Tensor) -> tuple[Tensor, list[Cache]]:
        """(N, L) tokens after P decoded positions -> (N, L, V) logits, and every layer's keys
        (transposed) and values of all P + L positions, (N, H, hd, P + L) and (N, H, P + L, hd).
        ``past`` holds them for the P earlier positions, ``memory_kv_t`` is :meth:`memory_kv_t`,
        ``memory_keep`` (B, S) is True at valid frames; N is a multiple of B, each sample's rows
        consecutive. With P = 0 this is teacher forcing, with L = 1 one incremental step, without
        dropout: a pure function of its inputs, the graph the ONNX export holds."""
        x = self.pos(self.embed(tokens) * math.sqrt(self.d_model), offset=past[0][1].size(2))
        keep, present = memory_keep[:, None, None, :], []
        for layer, kv, before in zip(self.layers, memory_kv_t, past):
            x, now = layer.step_with_past(x, kv, keep, before)
            present.append(now)
        return self.output(self.norm(x)), present
