"""Plain reference decoders: one sample at a time, no cache, no batching.

They define what the batched decoders in :mod:`signlab.decoding` must return (the tests compare
the two exactly). The attention decoder is re-run over the whole prefix at every step, for every
beam separately, as the SignTalk seed's ``_beam_search_single`` does; CTC prefix probabilities
are recomputed from scratch for every hypothesis; CTC prefix beam search keeps its beams in a
dictionary, as the textbook algorithm does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from signlab.decoding.beam import NEVER_OUTPUT, Hypothesis, length_penalty, with_bonus
from signlab.decoding.ctc import NEG_INF, log_probs
from signlab.models.transformer import TransformerDecoder
from signlab.vocab import BLANK, EOS, SOS


def ctc_prefix_logprob(logp: Tensor, prefix: list[int], whole: bool = False) -> float:
    """log P(prefix + anything | x), or log P(exactly prefix | x) with ``whole``, for (T, V) log-probs."""
    t_max = logp.size(0)
    r_label = [NEG_INF] * t_max  # paths emitting the prefix, ending in its last label at t
    r_blank = [0.0] * t_max
    acc = 0.0
    for t in range(t_max):
        acc += float(logp[t, BLANK])
        r_blank[t] = acc
    psi = 0.0
    last = None
    for c in prefix:
        new_label, new_blank = [NEG_INF] * t_max, [NEG_INF] * t_max
        phi = [r_blank[t] if c == last else _lse(r_label[t], r_blank[t]) for t in range(t_max)]
        new_label[0] = float(logp[0, c]) if last is None else NEG_INF
        terms = [new_label[0]]
        for t in range(1, t_max):
            new_label[t] = _lse(new_label[t - 1], phi[t - 1]) + float(logp[t, c])
            new_blank[t] = _lse(new_label[t - 1], new_blank[t - 1]) + float(logp[t, BLANK])
            terms.append(phi[t - 1] + float(logp[t, c]))
        psi = _lse(*terms)
        r_label, r_blank, last = new_label, new_blank, c
    return _lse(r_label[-1], r_blank[-1]) if whole else psi


def reference_ctc_prefix_beam_search(logp: Tensor, beam_size: int) -> list[tuple[list[int], float]]:
    """(prefix, log P) n-best of one clip's (T, V) log-probabilities: the rules of
    :func:`~signlab.decoding.ctc.ctc_prefix_beam_search` (labels: the frame's ``beam_size`` best)."""
    beams = {(): (0.0, NEG_INF)}  # prefix -> (log P ending in blank, log P ending in a label)
    for frame in logp.tolist():
        allowed = sorted(range(len(frame)), key=lambda c: -frame[c])[:beam_size]
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix, blank=NEG_INF, label=NEG_INF):
            old = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
            old[0], old[1] = _lse(old[0], blank), _lse(old[1], label)

        for prefix, (pb, pl) in beams.items():
            total = _lse(pb, pl)
            last = prefix[-1] if prefix else None
            for c in allowed:
                if c == BLANK:
                    add(prefix, blank=total + frame[BLANK])
                elif c == last:
                    add(prefix, label=pl + frame[c])  # the repeat collapses
                    add(prefix + (c,), label=pb + frame[c])  # a new label after a blank
                else:
                    add(prefix + (c,), label=total + frame[c])
        ranked = sorted(nxt.items(), key=lambda kv: -_lse(*kv[1]))[:beam_size]
        beams = {p: (v[0], v[1]) for p, v in ranked if _lse(*v) > NEG_INF}
    return sorted(([list(p), _lse(*v)] for p, v in beams.items()), key=lambda h: -h[1])


def _lse(*xs: float) -> float:
    peak = max(xs)
    return peak if peak == NEG_INF else peak + math.log(sum(math.exp(x - peak) for x in xs))


@torch.no_grad()
def reference_beam_search(
    decoder: TransformerDecoder,
    memory: Tensor,
    limit: int,
    beam_size: int = 4,
    alpha: float = 0.0,
    ctc_logp: Tensor | None = None,
    ctc_weight: float = 0.0,
    bonus: float = 0.0,
) -> list[Hypothesis]:
    """The rules of :func:`~signlab.decoding.beam.beam_search` for one unpadded sample (1, S, d)."""
    k = beam_size
    beams = [([], 0.0)] + [([], NEG_INF)] * (k - 1)
    finished: list[Hypothesis] = []
    for step in range(limit):
        rows, labels = [], []
        for seq, score in beams:
            logp = log_probs(decoder(torch.tensor([[SOS, *seq]], device=memory.device), memory)[0, -1])
            logp[NEVER_OUTPUT] = NEG_INF
            if ctc_weight > 0:
                att, cand = logp.topk(min(len(logp), max(k, math.ceil(1.5 * k))))
                base = ctc_prefix_logprob(ctc_logp, seq)
                deltas = []
                for c in cand.tolist():
                    full = ctc_prefix_logprob(ctc_logp, seq, whole=True) if c == EOS else ctc_prefix_logprob(ctc_logp, seq + [c])
                    deltas.append(full - base if base > NEG_INF else NEG_INF)
                rows.append(score + (1 - ctc_weight) * att + ctc_weight * torch.tensor(deltas, dtype=att.dtype))
                labels.append(cand.tolist())
            else:
                rows.append(score + logp)
                labels.append(list(range(len(logp))))
        width = len(labels[0])
        top, flat = torch.cat(rows).topk(min(2 * k, k * width))
        next_beams = []
        for rank, (value, index) in enumerate(zip(top.tolist(), flat.tolist())):
            parent, label = divmod(index, width)
            label = labels[parent][label]
            seq = beams[parent][0]
            if label == EOS:
                if rank < k and value > NEG_INF:
                    finished.append(Hypothesis(seq, value, value / length_penalty(len(seq) + 1, alpha)))
            elif len(next_beams) < k:
                next_beams.append((seq + [label], value))
        beams = next_beams
        finished = sorted(finished, key=lambda h: -h.ranking)[:k]
        if step + 1 >= limit:
            ends = [Hypothesis(seq, value, value / length_penalty(len(seq), alpha)) for seq, value in beams if value > NEG_INF]
            return with_bonus(sorted(finished + ends, key=lambda h: -h.ranking)[:k], bonus)
        # done when no open beam can reach the K-th finished hypothesis: scores only fall
        reachable = max(value for _, value in beams) / length_penalty(limit + 1, alpha)
        if len(finished) == k and finished[-1].ranking >= reachable:
            break
    return with_bonus(finished, bonus)


@torch.no_grad()
def reference_greedy(decoder: TransformerDecoder, memory: Tensor, limit: int) -> list[int]:
    """Argmax token after token until <eos> or the length limit."""
    tokens = [SOS]
    for _ in range(limit):
        nxt = int(decoder(torch.tensor([tokens], device=memory.device), memory)[0, -1].argmax())
        if nxt == EOS:
            break
        tokens.append(nxt)
    return tokens[1:]
