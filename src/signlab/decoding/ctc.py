"""CTC decoding: greedy, prefix beam search, and prefix scores for joint decoding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from signlab.vocab import BLANK

NEG_INF = float("-inf")


def log_probs(logits: Tensor) -> Tensor:
    """Log-softmax in at least float32 (half-precision logits are promoted), else in their own dtype."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)


def ctc_greedy_decode(logits: Tensor, lengths: Tensor) -> list[list[int]]:
    """Best label per frame, repeats merged, blanks removed; (B, T, V) -> B id lists.

    Vectorised over the batch: only the final split into per-sample lists is Python.
    """
    best = logits.argmax(-1)  # (B, T)
    valid = torch.arange(best.size(1), device=best.device)[None] < lengths[:, None]
    new = torch.ones_like(best, dtype=torch.bool)
    new[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = new & (best != BLANK) & valid
    counts = keep.sum(1).tolist()
    return [ids.tolist() for ids in best[keep].split(counts)]


def ctc_segments(logits: Tensor, length: int | None = None) -> list[tuple[int, int, int]]:
    """Greedy CTC output of one clip with where each label fired: (label, first frame, last frame)."""
    best = logits[:length].argmax(-1)
    if len(best) == 0:
        return []
    change = torch.ones_like(best, dtype=torch.bool)
    change[1:] = best[1:] != best[:-1]
    starts = change.nonzero()[:, 0].tolist()
    ends = [*(s - 1 for s in starts[1:]), len(best) - 1]
    labels = best[starts].tolist()
    return [(c, s, e) for c, s, e in zip(labels, starts, ends) if c != BLANK]


@dataclass
class CTCHypothesis:
    tokens: list[int]
    score: float  # log P_ctc(tokens | x), summed over all alignments


@torch.no_grad()
def ctc_prefix_beam_search(logits: Tensor, lengths: Tensor, beam_size: int = 4) -> list[list[CTCHypothesis]]:
    """Frame-synchronous CTC prefix beam search (Hannun et al., 2014), batched.

    Each frame, every beam may stay (blank, or a repeat of its last label) or grow by one of
    the frame's ``beam_size`` most likely labels; beams that reach the same prefix are merged by
    adding their probabilities, and the ``beam_size`` best prefixes of each sample go on. All
    samples advance together: the only Python loop is over frames. With ``beam_size=1`` this is
    exactly greedy decoding. Returns the n-best list of each sample, best first.
    """
    logp = log_probs(logits)
    b, t_max, _ = logp.shape
    k = beam_size
    device, dtype = logp.device, logp.dtype
    prefix = torch.full((b, k, t_max), -1, dtype=torch.long, device=device)  # -1 = empty slot
    plen = torch.zeros(b, k, dtype=torch.long, device=device)
    p_blank = torch.full((b, k), NEG_INF, device=device, dtype=dtype)
    p_blank[:, 0] = 0.0  # one live beam: the empty prefix
    p_label = torch.full((b, k), NEG_INF, device=device, dtype=dtype)
    rows = torch.arange(b, device=device)
    for t in range(t_max):
        live = t < lengths  # (B,) samples still inside their clip
        frame = logp[:, t]  # (B, V)
        top_p, top_c = frame.topk(k, dim=-1)  # allowed labels this frame
        allowed_blank = (top_c == BLANK).any(-1, keepdim=True)  # (B, 1)
        last = prefix.gather(2, (plen - 1).clamp(min=0)[..., None])[..., 0].masked_fill(plen == 0, -1)
        total = torch.logaddexp(p_blank, p_label)
        # stay: a blank, or the last label repeated
        stay_blank = torch.where(allowed_blank, total + frame[:, BLANK, None], NEG_INF)
        last_allowed = (top_c[:, None, :] == last[..., None]).any(-1)
        stay_label = torch.where(last_allowed, p_label + frame.gather(1, last.clamp(min=0)), NEG_INF)
        # grow by each allowed non-blank label c (from the blank-ending paths only if c repeats the last label)
        c = top_c[:, None, :].expand(b, k, k)
        grow = torch.where(c == last[..., None], p_blank[..., None], total[..., None]) + top_p[:, None, :]
        grow = grow.masked_fill(c == BLANK, NEG_INF)
        # candidates: K stays and K*K growths, each a (prefix, p_blank, p_label) triple
        cand_prefix = torch.cat([prefix, prefix[:, :, None].expand(b, k, k, t_max).reshape(b, k * k, t_max)], 1)
        cand_len = torch.cat([plen, (plen[..., None] + 1).expand(b, k, k).reshape(b, k * k)], 1)
        cand_prefix[:, k:].scatter_(2, plen.repeat_interleave(k, 1)[..., None], c.reshape(b, k * k, 1))
        cand_blank = torch.cat([stay_blank, torch.full((b, k * k), NEG_INF, device=device, dtype=dtype)], 1)
        cand_label = torch.cat([stay_label, grow.reshape(b, k * k)], 1)
        # merge identical prefixes of the same sample
        n = cand_prefix.size(1)
        keys = torch.cat([rows[:, None, None].expand(b, n, 1), cand_prefix], 2).reshape(b * n, -1)
        groups, inverse = torch.unique(keys, dim=0, return_inverse=True)
        merged_blank = _scatter_logsumexp(cand_blank.reshape(-1), inverse, len(groups))
        merged_label = _scatter_logsumexp(cand_label.reshape(-1), inverse, len(groups))
        group_len = torch.zeros(len(groups), dtype=torch.long, device=device).scatter_(0, inverse, cand_len.reshape(-1))
        # best K groups per sample (groups are sorted by sample index first)
        score = torch.logaddexp(merged_blank, merged_label)
        owner = groups[:, 0].contiguous()
        per_sample = torch.full((b, n), NEG_INF, device=device, dtype=dtype)
        slot = torch.arange(len(groups), device=device) - torch.searchsorted(owner, owner)
        per_sample[owner, slot] = score
        best = per_sample.topk(k, dim=-1).indices  # (B, K) slots
        first = torch.searchsorted(owner, rows)
        pick = (first[:, None] + best).clamp(max=len(groups) - 1)
        valid = best < torch.bincount(owner, minlength=b)[:, None]
        new_blank = torch.where(valid, merged_blank[pick], NEG_INF)
        new_label = torch.where(valid, merged_label[pick], NEG_INF)
        keep = live[:, None]
        prefix = torch.where(keep[..., None], groups[pick, 1:], prefix)
        plen = torch.where(keep, group_len[pick], plen)
        p_blank = torch.where(keep, new_blank, p_blank)
        p_label = torch.where(keep, new_label, p_label)
    score = torch.logaddexp(p_blank, p_label)
    order = score.argsort(dim=-1, descending=True)
    out = []
    for i in range(b):
        hyps = []
        for j in order[i].tolist():
            if score[i, j] == NEG_INF:
                continue
            hyps.append(CTCHypothesis(prefix[i, j, : plen[i, j]].tolist(), float(score[i, j])))
        out.append(hyps)
    return out


def _scatter_logsumexp(values: Tensor, index: Tensor, size: int) -> Tensor:
    peak = torch.full((size,), NEG_INF, device=values.device, dtype=values.dtype).scatter_reduce(0, index, values, "amax")
    safe = torch.where(torch.isfinite(peak), peak, 0.0)
    total = torch.zeros(size, device=values.device, dtype=values.dtype).index_add_(0, index, (values - safe[index]).exp())
    return safe + total.log()


class CTCPrefixScorer:
    """Label-synchronous CTC prefix probabilities (Watanabe et al., 2017), batched over hypotheses.

    For a hypothesis g and a candidate label c, ``score`` gives log P_ctc(g + c + anything | x),
    and for c = ``<eos>`` the probability of exactly g; the attention beam search adds the change
    from g to g + c to its own scores. State per hypothesis: the forward variables r_t^n(g),
    r_t^b(g) over all frames, reordered with the beams by :meth:`select`.
    """

    def __init__(self, logits: Tensor, lengths: Tensor, eos: int):
        logp = log_probs(logits)  # (N, T, V)
        n, t_max, _ = logp.shape
        pad = torch.arange(t_max, device=logp.device)[None] >= lengths[:, None]
        # frames past a clip's end: blank with probability 1, so they change nothing
        logp = logp.masked_fill(pad[..., None], NEG_INF)
        logp[..., BLANK] = logp[..., BLANK].masked_fill(pad, 0.0)
        self.logp = logp.transpose(0, 1)  # (T, N, V)
        self.lengths, self.eos = lengths, eos
        r = torch.full((t_max, 2, n), NEG_INF, device=logp.device, dtype=logp.dtype)  # [:, 0]: ends in a label, [:, 1]: blank
        r[:, 1] = self.logp[:, :, BLANK].cumsum(0)
        self.r = r  # state of the empty prefix
        self.prefix_score = torch.zeros(n, device=logp.device, dtype=logp.dtype)
        self.last = torch.full((n,), -1, dtype=torch.long, device=logp.device)

    def select(self, index: Tensor) -> CTCPrefixScorer:
        """The scorer for hypotheses ``index`` of this one (expansion to beams, reordering)."""
        new = object.__new__(CTCPrefixScorer)
        new.logp, new.lengths, new.eos = self.logp[:, index], self.lengths[index], self.eos
        new.r, new.prefix_score, new.last = self.r[:, :, index], self.prefix_score[index], self.last[index]
        return new

    def score(self, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C) candidate labels -> ((N, C) log prefix probabilities, (T, 2, N, C) their r)."""
        t_max, n, c = self.logp.size(0), *candidates.shape
        x = self.logp.gather(2, candidates[None].expand(t_max, n, c))  # (T, N, C)
        r_prev = self.r  # (T, 2, N)
        total_prev = torch.logaddexp(r_prev[:, 0], r_prev[:, 1])  # (T, N)
        same = candidates == self.last[:, None]
        # phi_t: paths of g ending at t that may be followed by c
        phi = torch.where(same[None], r_prev[:, 1, :, None], total_prev[..., None])  # (T, N, C)
        r = torch.full((t_max, 2, n, c), NEG_INF, device=x.device, dtype=x.dtype)
        start = self.last < 0  # the empty prefix: c may start at frame 0
        r[0, 0] = torch.where(start[:, None], x[0], NEG_INF)
        for t in range(1, t_max):
            r[t, 0] = torch.logaddexp(r[t - 1, 0], phi[t - 1]) + x[t]
            r[t, 1] = torch.logaddexp(r[t - 1, 0], r[t - 1, 1]) + self.logp[t, :, BLANK, None]
        psi = torch.logsumexp(torch.cat([r[:1, 0], phi[:-1] + x[1:]], 0), dim=0)  # (N, C)
        # <eos>: the probability of g itself, read at each clip's last frame
        end = (self.lengths - 1).clamp(min=0)
        full = total_prev.gather(0, end[None])[0]
        psi = torch.where(candidates == self.eos, full[:, None], psi)
        return psi, r

    def advance(self, parent: Tensor, column: Tensor, psi: Tensor, r: Tensor, labels: Tensor) -> CTCPrefixScorer:
        """The scorer for the chosen extensions: hypothesis ``parent`` + candidate ``column``, given
        what :meth:`score` returned for the candidates."""
        new = self.select(parent)
        new.r = r[:, :, parent, column]
        new.prefix_score = psi[parent, column]
        new.last = labels
        return new
