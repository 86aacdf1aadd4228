"""Decoders for the CTC and attention heads, behind one entry point. Imports the leaf modules and
:mod:`signlab.models` (the model interface and the Transformer decoder) only.

========== ================================================================================
method     what it does
========== ================================================================================
ctc_greedy best label per frame, repeats merged, blanks dropped
ctc_beam   CTC prefix beam search (frame-synchronous, batched)
attention  attention-decoder beam search (batched, cached); ``beam_size=1`` is greedy
joint      attention beam search with CTC prefix scores, weight ``ctc_weight``, merged with the
           ``rescore`` n-best lists: the same joint score ranks both, so joint is never below
           either search by that score
rescore    CTC prefix beam n-best lists re-ranked with attention scores
========== ================================================================================
"""

from __future__ import annotations

from typing import get_args

import torch
from torch import Tensor

from signlab.config import DecodingConfig
from signlab.decoding.beam import attention_rescore, beam_search, merge_nbest
from signlab.decoding.ctc import ctc_greedy_decode, ctc_prefix_beam_search
from signlab.errors import SignlabError
from signlab.models.interface import Encoded, GlossModel, RecognizerOutput

METHODS = get_args(DecodingConfig.model_fields["method"].annotation)


@torch.no_grad()
def decode_batch(
    model: GlossModel, features: Tensor, lengths: Tensor, opts: DecodingConfig, enc: Encoded | None = None
) -> tuple[list[list[int]], RecognizerOutput]:
    """Best token ids per sample, and the model output (for the blank ratio), for one batch.

    ``enc`` reuses an encoder pass already made for these features.
    """
    method = opts.method
    enc = model.encode(features, lengths) if enc is None else enc
    out = model.heads(enc)
    if method == "ctc_greedy":
        return ctc_greedy_decode(out.ctc_logits, out.lengths), out
    if method == "ctc_beam":
        return [h[0].tokens if h else [] for h in ctc_prefix_beam_search(out.ctc_logits, out.lengths, opts.beam_size)], out
    decoder = model.decoder
    if decoder is None:
        raise SignlabError(f"decoding {method!r} needs an attention decoder; this model has only a CTC head: "
                           "use ctc_greedy or ctc_beam")
    weight = opts.ctc_weight if method != "attention" else 0.0
    if method == "rescore" or weight > 0:  # joint at weight 0 is attention decoding: CTC has no say
        rescored = attention_rescore(decoder, enc.out, enc.padding_mask, out.ctc_logits, out.lengths, opts.beam_size,
                                     weight, opts.length_penalty, opts.length_bonus)
        if method == "rescore":
            return [h[0].tokens if h else [] for h in rescored], out
    nbest = beam_search(decoder, enc.out, enc.padding_mask, enc.lengths, opts.beam_size, opts.max_len,
                        opts.length_penalty, out.ctc_logits, out.lengths, weight, opts.length_bonus)
    if weight > 0:
        nbest = [merge_nbest(a, b, opts.beam_size) for a, b in zip(nbest, rescored)]
    return [h[0].tokens if h else [] for h in nbest], out
