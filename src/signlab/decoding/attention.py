"""Attention-decoder decoding, batched and incremental (cached keys and values)."""

from __future__ import annotations

import torch
from torch import Tensor

from signlab.models.transformer import TransformerDecoder
from signlab.vocab import EOS, SOS


def max_output_lengths(memory_lengths: Tensor, limit: int) -> Tensor:
    """Hypotheses may not outgrow their input: at most one token per encoder frame, and ``limit``."""
    return memory_lengths.clamp(max=limit)


@torch.no_grad()
def attention_greedy_decode(
    decoder: TransformerDecoder, memory: Tensor, memory_padding_mask: Tensor | None, memory_lengths: Tensor, max_len: int = 100
) -> list[list[int]]:
    """Greedy decoding of a whole batch at once; each sample stops at ``<eos>`` or its length limit."""
    batch = memory.size(0)
    limits = max_output_lengths(memory_lengths, max_len)
    state = decoder.init_state(memory, memory_padding_mask)
    tokens = torch.full((batch,), SOS, dtype=torch.long, device=memory.device)
    out = torch.zeros((batch, int(limits.max()) if batch else 0), dtype=torch.long, device=memory.device)
    done = torch.zeros(batch, dtype=torch.bool, device=memory.device)
    for t in range(out.size(1)):
        logits, state = decoder.step(tokens, state)
        tokens = logits.argmax(-1)
        done |= t >= limits
        tokens = tokens.masked_fill(done, EOS)
        out[:, t] = tokens
        done |= tokens == EOS
        if bool(done.all()):
            break
    hyps = []
    for row in out.tolist():
        hyps.append(row[: row.index(EOS)] if EOS in row else row)
    return hyps
