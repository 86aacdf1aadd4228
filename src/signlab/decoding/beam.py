"""Batched beam search for the Transformer decoders, optionally joint with CTC prefix scores.

All samples and all beams of a batch are one (B * K) decoder batch, and every step feeds only
the newest token, reading earlier keys and values from the decoder cache. At each step the 2K
best continuations of a sample are ranked; those among the first K that end in ``<eos>`` are
finished hypotheses (a sample keeps its K best), and the first K that do not are the next beams.
Finished hypotheses are ranked by ``score / ((5 + length) / 6) ** length_penalty`` (GNMT),
length counting ``<eos>``; a ``length_bonus`` per token (ESPnet's ``penalty``) re-ranks the
final n-best list.

A sample is done when no open beam can still beat its K-th finished hypothesis, or at its length
limit (at most one token per encoder frame, and ``max_len``), where its open beams are finished
as they are. Every step adds a log-probability (<= 0) to a score, so an open beam's score is an
upper bound on what it can still reach, and divided by the length penalty at the limit, on its
ranking. Stopping instead at the first K finished hypotheses, as many implementations do, can
keep short ones that ended early while better, longer beams were still open (on the
long-sentence benchmark this was rare: the attention decoder's deletions are skipped clauses
that its own scores prefer, see the README).

With ``ctc_weight`` > 0 (joint CTC / attention decoding, as in ESPnet) each beam's candidates
are the ``1.5 * K`` best labels by attention, scored by
``(1 - ctc_weight) * attention + ctc_weight * CTC prefix`` log-probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from signlab.decoding.ctc import (
    NEG_INF,
    CTCPrefixScorer,
    ctc_prefix_beam_search,
    log_probs,
)
from signlab.models.transformer import TransformerDecoder
from signlab.vocab import BLANK, EOS, PAD, SOS

NEVER_OUTPUT = torch.tensor([PAD, BLANK, SOS])  # tokens a decoder may never emit


@dataclass
class Hypothesis:
    tokens: list[int]  # without <sos> / <eos>
    score: float  # summed log-probabilities (joint score with CTC)
    ranking: float  # score after the length penalty, what the n-best list is sorted by


def length_penalty(length: int, alpha: float) -> float:
    return ((5 + length) / 6) ** alpha if alpha else 1.0


@torch.no_grad()
def beam_search(
    decoder: TransformerDecoder,
    memory: Tensor,
    memory_padding_mask: Tensor | None,
    memory_lengths: Tensor,
    beam_size: int = 4,
    max_len: int = 100,
    alpha: float = 0.0,
    ctc_logits: Tensor | None = None,
    ctc_lengths: Tensor | None = None,
    ctc_weight: float = 0.0,
    bonus: float = 0.0,
) -> list[list[Hypothesis]]:
    """n-best lists (best first) for a batch of encoder outputs; ``bonus`` per output token is
    added to the rankings of the finished n-best lists before they are sorted the last time.

    Beams, scores and finished hypotheses live on the model's device; each step reads back one
    tensor, which samples are done, and the n-best lists come back once at the end.
    """
    k, device, b = beam_size, memory.device, memory.size(0)
    limit_list = memory_lengths.clamp(max=max_len).tolist()  # one output token per encoder frame at most
    limit = torch.tensor(limit_list, device=device)
    # a sample's best possible ranking at its limit divides an open score by this
    penalty_at_limit = torch.tensor([length_penalty(n + 1, alpha) for n in limit_list], device=device, dtype=torch.float64)
    longest = max(limit_list, default=0)
    # the K best finished hypotheses of every sample, best first (ranking -inf: an empty slot)
    fin_rank = torch.full((b, k), NEG_INF, device=device, dtype=torch.float64)
    fin_score = torch.full((b, k), NEG_INF, device=device, dtype=torch.promote_types(memory.dtype, torch.float32))
    fin_tokens = torch.full((b, k, longest), PAD, device=device, dtype=torch.long)
    fin_len = torch.zeros((b, k), device=device, dtype=torch.long)
    live = (limit > 0).nonzero()[:, 0]  # samples still decoding; every other tensor holds their rows only
    a = len(live)
    state = decoder.init_state(memory[live], None if memory_padding_mask is None else memory_padding_mask[live])
    joint = ctc_weight > 0
    if joint:
        scorer = CTCPrefixScorer(ctc_logits[live], ctc_lengths[live], EOS).select(torch.arange(a, device=device).repeat_interleave(k))
    scores = torch.full((a, k), NEG_INF, device=device, dtype=fin_score.dtype)
    scores[:, 0] = 0.0  # K identical <sos> beams; only one may expand
    tokens = torch.full((a * k, 1), SOS, dtype=torch.long, device=device)
    step = 0
    while a:
        logits, state = decoder.step(tokens[:, -1], state)
        logp = log_probs(logits).index_fill(1, NEVER_OUTPUT.to(device), NEG_INF)  # (A*K, V)
        if joint:
            att, labels = logp.topk(min(logp.size(-1), max(k, math.ceil(1.5 * k))), dim=-1)  # (A*K, C)
            ctc, ctc_r = scorer.score(labels)
            delta = (ctc - scorer.prefix_score[:, None]).nan_to_num(nan=NEG_INF, neginf=NEG_INF)  # dead: -inf - -inf
            cand = (1 - ctc_weight) * att + ctc_weight * delta
        else:
            labels, cand = None, logp
        width = cand.size(-1)
        top, flat = (scores.reshape(-1, 1) + cand).reshape(a, k * width).topk(min(2 * k, k * width), dim=-1)
        column = flat % width
        rows = torch.arange(a, device=device)[:, None] * k + flat // width  # (A, 2K) parent rows
        label = labels[rows, column] if joint else column
        is_eos = label == EOS
        # the first K candidates not ending in <eos> are the next beams (at most K of 2K can end)
        pick = ((~is_eos) & (torch.cumsum(~is_eos, dim=1) <= k)).nonzero()[:, 1].reshape(a, k)
        new_rows = rows.gather(1, pick).reshape(-1)
        new_label = label.gather(1, pick).reshape(-1)
        # <eos> among the K best candidates finishes a hypothesis (the tokens of its parent)
        ended = is_eos[:, :k] & (top[:, :k] > NEG_INF)
        ended_tokens = tokens[rows[:, :k]][..., 1:]  # (A, K, step)
        scores = top.gather(1, pick)
        tokens = torch.cat([tokens[new_rows], new_label[:, None]], 1)
        state = state.select(new_rows)  # beams move only within their own sample
        if joint:
            scorer = scorer.advance(new_rows, column.gather(1, pick).reshape(-1), ctc, ctc_r, new_label)
        step += 1
        # at its length limit a sample's open beams end as they are, without <eos>
        at_limit = step >= limit[live]
        opened = at_limit[:, None] & (scores > NEG_INF)
        penalty = length_penalty(step, alpha)  # ended: step - 1 tokens and <eos>; open: step tokens
        cand_rank = torch.cat([fin_rank[live], torch.where(ended, top[:, :k].double() / penalty, NEG_INF),
                               torch.where(opened, scores.double() / penalty, NEG_INF)], 1)
        cand_score = torch.cat([fin_score[live], top[:, :k], scores], 1)
        cand_tokens = torch.cat([fin_tokens[live], F.pad(ended_tokens, (0, longest - step + 1), value=PAD),
                                 F.pad(tokens[:, 1:].reshape(a, k, step), (0, longest - step), value=PAD)], 1)
        cand_len = torch.cat([fin_len[live], torch.full((a, k), step - 1, device=device),
                              torch.full((a, k), step, device=device)], 1)
        # a stable sort keeps the earlier of equal rankings first: finished, then ended, then open
        best = cand_rank.sort(dim=1, descending=True, stable=True).indices[:, :k]
        rank = cand_rank.gather(1, best)
        fin_rank[live], fin_score[live] = rank, cand_score.gather(1, best)
        fin_tokens[live] = cand_tokens.gather(1, best[..., None].expand(a, k, longest))
        fin_len[live] = cand_len.gather(1, best)
        # done: at the limit, or no open beam can end above the K-th finished hypothesis
        kth = rank[:, -1]
        settled = (kth > NEG_INF) & (kth >= scores.max(1).values.double() / penalty_at_limit[live])
        keep = (~(at_limit | settled)).nonzero()[:, 0]  # the one read-back a step
        if len(keep) < a:  # drop finished samples from the batch: no more work on them
            live, a = live[keep], len(keep)
            beam_rows = (keep[:, None] * k + torch.arange(k, device=device)).reshape(-1)
            scores, tokens, state = scores[keep], tokens[beam_rows], state.select(beam_rows, samples=keep)
            if joint:
                scorer = scorer.select(beam_rows)
    ranks, values, seqs, lens = fin_rank.tolist(), fin_score.tolist(), fin_tokens.tolist(), fin_len.tolist()
    return [with_bonus([Hypothesis(seqs[i][j][: lens[i][j]], values[i][j], ranks[i][j]) for j in range(k)
                        if ranks[i][j] > NEG_INF], bonus) for i in range(b)]


def with_bonus(nbest: list[Hypothesis], bonus: float) -> list[Hypothesis]:
    """The n-best list re-ranked with ``bonus`` added per output token (best first)."""
    if not bonus:
        return nbest
    return sorted((Hypothesis(h.tokens, h.score, h.ranking + bonus * len(h.tokens)) for h in nbest), key=lambda h: -h.ranking)


@torch.no_grad()
def attention_rescore(
    decoder: TransformerDecoder,
    memory: Tensor,
    memory_padding_mask: Tensor | None,
    ctc_logits: Tensor,
    ctc_lengths: Tensor,
    beam_size: int = 4,
    ctc_weight: float = 0.3,
    alpha: float = 0.0,
    bonus: float = 0.0,
) -> list[list[Hypothesis]]:
    """CTC prefix beam search n-best lists, re-ranked by ``w * CTC + (1 - w) * attention`` (with
    the length penalty ``alpha`` and ``bonus`` per token, as :func:`beam_search` ranks).

    The attention score of every hypothesis of every sample comes from one teacher-forced
    decoder pass: log P(tokens + <eos> | x); the CTC score is the exact log P_ctc(tokens | x)
    over all alignments (one ``ctc_loss`` call), not the beam's pruned sum, so a hypothesis
    scores the same here as in joint :func:`beam_search`.
    """
    nbest = ctc_prefix_beam_search(ctc_logits, ctc_lengths, beam_size)
    if not any(nbest):
        return [[] for _ in nbest]
    # K rows per sample (a short list padded with its first hypothesis), so that the decoder reads
    # each sample's encoder output once for all its rows
    k, device = max(map(len, nbest)), memory.device
    seqs = [[h.tokens for h in hyps] + [hyps[0].tokens if hyps else []] * (k - len(hyps)) for hyps in nbest]
    longest = max(len(s) for hyps in seqs for s in hyps) + 1
    inp = torch.full((len(nbest) * k, longest), PAD, dtype=torch.long, device=device)
    tgt = torch.full_like(inp, PAD)
    for r, s in enumerate(s for hyps in seqs for s in hyps):
        inp[r, : len(s) + 1] = torch.tensor([SOS, *s])
        tgt[r, : len(s) + 1] = torch.tensor([*s, EOS])
    logp = log_probs(decoder(inp, memory, memory_padding_mask))
    att = logp.gather(2, tgt.clamp(min=0)[..., None])[..., 0].masked_fill(tgt == PAD, 0.0).sum(1)
    index = torch.arange(len(nbest), device=device).repeat_interleave(k)
    ctc = -F.ctc_loss(log_probs(ctc_logits)[index].transpose(0, 1), inp[:, 1:].clamp(min=0), ctc_lengths[index],
                      (tgt != PAD).sum(1) - 1, blank=BLANK, reduction="none")
    joint = (ctc_weight * ctc.double() + (1 - ctc_weight) * att.double()).view(len(nbest), k).tolist()
    out = []
    for hyps, values in zip(nbest, joint):
        ranked = [Hypothesis(h.tokens, v, v / length_penalty(len(h.tokens) + 1, alpha)) for h, v in zip(hyps, values)]
        out.append(with_bonus(sorted(ranked, key=lambda h: -h.ranking), bonus))
    return out


def merge_nbest(a: list[Hypothesis], b: list[Hypothesis], k: int) -> list[Hypothesis]:
    """The ``k`` best of two n-best lists ranked the same way (best first; a hypothesis in both
    counts once)."""
    seen, out = set(), []
    for h in sorted(a + b, key=lambda h: -h.ranking):
        if tuple(h.tokens) not in seen:
            seen.add(tuple(h.tokens))
            out.append(h)
    return out[:k]
