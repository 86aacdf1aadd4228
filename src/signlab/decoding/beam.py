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


def limits(memory_lengths: Tensor, max_len: int) -> list[int]:
    """Output-length limit per sample: one token per encoder frame at most, and ``max_len``."""
    return memory_lengths.clamp(max=max_len).tolist()


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
    added to the rankings of the finished n-best lists before they are sorted the last time."""
    k, device = beam_size, memory.device
    limit = limits(memory_lengths, max_len)
    finished: list[list[Hypothesis]] = [[] for _ in limit]
    live = [i for i, lim in enumerate(limit) if lim > 0]  # samples still decoding; tensors hold their rows only
    rows_of = torch.tensor(live, device=device, dtype=torch.long).repeat_interleave(k)  # K beam rows per sample
    state = decoder.init_state(memory, memory_padding_mask).select(rows_of)
    joint = ctc_weight > 0
    scorer = CTCPrefixScorer(ctc_logits, ctc_lengths, EOS).select(rows_of) if joint else None
    scores = torch.full((len(live), k), NEG_INF, device=device, dtype=torch.promote_types(memory.dtype, torch.float32))
    scores[:, 0] = 0.0  # K identical <sos> beams; only one may expand
    tokens = torch.full((len(live) * k, 1), SOS, dtype=torch.long, device=device)
    step = 0
    while live:
        a = len(live)
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
        # <eos> among the K best candidates finishes a hypothesis
        top_list = top.tolist()
        ended = [(r, j) for r, j in is_eos[:, :k].nonzero().tolist() if top_list[r][j] > NEG_INF]
        if ended:
            seqs = tokens[:, 1:].tolist()
            for r, j in ended:
                seq = seqs[rows[r, j].item()]
                value = top_list[r][j]
                _keep_best(finished[live[r]], Hypothesis(seq, value, value / length_penalty(len(seq) + 1, alpha)), k)
        scores = top.gather(1, pick)
        tokens = torch.cat([tokens[new_rows], new_label[:, None]], 1)
        state = state.select(new_rows, same_memory=True)  # beams move only within their own sample
        if joint:
            scorer = scorer.advance(new_rows, column.gather(1, pick).reshape(-1), ctc, ctc_r, new_label)
        step += 1
        best_open = scores.max(1).values.tolist()
        keep = []
        for r, i in enumerate(live):
            if step >= limit[i]:  # length limit: open beams end here, without <eos>
                open_scores, open_seqs = scores[r].tolist(), tokens[r * k:(r + 1) * k, 1:].tolist()
                for value, seq in zip(open_scores, open_seqs):
                    if value > NEG_INF:
                        _keep_best(finished[i], Hypothesis(seq, value, value / length_penalty(len(seq), alpha)), k)
            elif not _settled(finished[i], best_open[r], length_penalty(limit[i] + 1, alpha), k):
                keep.append(r)
        if len(keep) < a:  # drop finished samples from the batch: no more work on them
            live = [live[r] for r in keep]
            index = torch.tensor(keep, device=device, dtype=torch.long)
            beam_rows = (index[:, None] * k + torch.arange(k, device=device)).reshape(-1)
            scores, tokens, state = scores[index], tokens[beam_rows], state.select(beam_rows)
            if joint:
                scorer = scorer.select(beam_rows)
    return [with_bonus(f, bonus) for f in finished]


def with_bonus(nbest: list[Hypothesis], bonus: float) -> list[Hypothesis]:
    """The n-best list re-ranked with ``bonus`` added per output token (best first)."""
    if not bonus:
        return nbest
    return sorted((Hypothesis(h.tokens, h.score, h.ranking + bonus * len(h.tokens)) for h in nbest), key=lambda h: -h.ranking)


def _keep_best(finished: list[Hypothesis], hyp: Hypothesis, k: int) -> None:
    """Add ``hyp`` to a best-first list that keeps at most ``k`` (an equal ranking goes after)."""
    at = next((n for n, h in enumerate(finished) if h.ranking < hyp.ranking), len(finished))
    if at < k:
        finished.insert(at, hyp)
        del finished[k:]


def _settled(finished: list[Hypothesis], best_open: float, penalty_at_limit: float, k: int) -> bool:
    """True when no open beam (best score ``best_open``) can end above the K-th finished one."""
    return len(finished) == k and finished[-1].ranking >= best_open / penalty_at_limit


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
    owner = [i for i, hyps in enumerate(nbest) for _ in hyps]
    seqs = [h.tokens for hyps in nbest for h in hyps]
    if not seqs:
        return [[] for _ in nbest]
    longest = max(len(s) for s in seqs) + 1
    device = memory.device
    inp = torch.full((len(seqs), longest), PAD, dtype=torch.long, device=device)
    tgt = torch.full((len(seqs), longest), PAD, dtype=torch.long, device=device)
    for r, s in enumerate(seqs):
        inp[r, : len(s) + 1] = torch.tensor([SOS, *s])
        tgt[r, : len(s) + 1] = torch.tensor([*s, EOS])
    index = torch.tensor(owner, device=device)
    mask = None if memory_padding_mask is None else memory_padding_mask[index]
    logp = log_probs(decoder(inp, memory[index], mask))
    att = logp.gather(2, tgt.clamp(min=0)[..., None])[..., 0].masked_fill(tgt == PAD, 0.0).sum(1).tolist()
    ctc = (-F.ctc_loss(log_probs(ctc_logits)[index].transpose(0, 1), inp[:, 1:].clamp(min=0), ctc_lengths[index],
                       torch.tensor([len(q) for q in seqs], device=device), blank=BLANK, reduction="none")).tolist()
    out: list[list[Hypothesis]] = [[] for _ in nbest]
    r = 0
    for i, hyps in enumerate(nbest):
        for h in hyps:
            joint = ctc_weight * ctc[r] + (1 - ctc_weight) * att[r]
            out[i].append(Hypothesis(h.tokens, joint, joint / length_penalty(len(h.tokens) + 1, alpha)))
            r += 1
        out[i] = with_bonus(sorted(out[i], key=lambda h: -h.ranking), bonus)
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
