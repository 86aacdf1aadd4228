"""Decoders for the CTC and attention heads, behind one entry point."""

from __future__ import annotations

from typing import get_args

import torch
from torch import Tensor, nn

from signlab.config import DecodingConfig
from signlab.decoding.attention import attention_greedy_decode
from signlab.decoding.ctc import ctc_greedy_decode
from signlab.errors import SignlabError
from signlab.models.hybrid import RecognizerOutput

METHODS = get_args(DecodingConfig.model_fields["method"].annotation)


@torch.no_grad()
def decode_batch(
    model: nn.Module, features: Tensor, lengths: Tensor, method: str, max_len: int = 100
) -> tuple[list[list[int]], RecognizerOutput]:
    """Token ids per sample, and the model output (for the blank ratio), for one batch."""
    if method not in METHODS:
        raise SignlabError(f"unknown decoding method {method!r}; choose one of {', '.join(METHODS)}")
    enc = model.encode(features, lengths)
    out = RecognizerOutput(model.ctc_head(enc.out), enc.lengths, None)
    if method == "ctc_greedy":
        return ctc_greedy_decode(out.ctc_logits, out.lengths), out
    decoder = getattr(model, "decoder", None)
    if decoder is None:
        raise SignlabError(f"decoding {method!r} needs an attention decoder; this model has only a CTC head: use ctc_greedy")
    return attention_greedy_decode(decoder, enc.out, enc.padding_mask, enc.lengths, max_len), out
