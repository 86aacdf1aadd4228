"""CTC decoding: greedy, prefix beam search, and prefix scores for joint decoding."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from signlab.vocab import BLANK

NEG_INF = float("-inf")


def log_probs(logits: Tensor) -> Tensor:
    """Log-softmax in at least float32 (half-precision logits are promoted), else in their own dtype."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)


def ctc_greedy_decode(logits: Tensor, lengths: Tensor, blank: int = BLANK) -> list[list[int]]:
    """Best label per frame, repeats merged, blanks removed; (B, T, V) -> B id lists.

    Vectorised over the batch: only the final split into per-sample lists is Python.
    """
    best = logits.argmax(-1)  # (B, T)
    valid = torch.arange(best.size(1), device=best.device)[None] < lengths[:, None]
    new = torch.ones_like(best, dtype=torch.bool)
    new[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = new & (best != blank) & valid
    counts = keep.sum(1).tolist()
    return [ids.tolist() for ids in best[keep].split(counts)]


def ctc_label_scores(logits: Tensor, lengths: Tensor, blank: int = BLANK) -> Tensor:
    """(B, V) log-probability that each clip is exactly one label, for every label: the CTC sum
    over the paths blank* v+ blank*, by a forward pass over frames for all labels at once. How an
    isolated sign's CTC model ranks its classes (top-1, top-5)."""
    lp = log_probs(logits)  # (B, T, V)
    b, t_max, v = lp.shape
    before = torch.zeros(b, device=lp.device)  # log P(only blanks so far)
    inside = torch.full((b, v), NEG_INF, device=lp.device)  # log P(blank* v+), the label still going
    after = torch.full((b, v), NEG_INF, device=lp.device)  # log P(blank* v+ blank+)
    for t in range(t_max):
        live = (t < lengths)[:, None]
        step_blank, step = lp[:, t, blank][:, None], lp[:, t]
        new_after = torch.logaddexp(after, inside) + step_blank
        new_inside = torch.logaddexp(inside, before[:, None]) + step
        after, inside = torch.where(live, new_after, after), torch.where(live, new_inside, inside)
        before = torch.where(live[:, 0], before + step_blank[:, 0], before)
    scores = torch.logaddexp(inside, after)
    scores[:, blank] = NEG_INF
    return scores


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
    the frame's ``beam_size`` most likely labels; a growth that reaches another beam's prefix
    is merged into it by adding their probabilities (the only way two candidates can share a
    prefix, since beams are distinct), and the ``beam_size`` best candidates of each sample go
    on. All samples advance together: the only Python loop is over frames. With
    ``beam_size=1`` this is exactly greedy decoding. Returns the n-best list of each sample,
    best first.
    """
    logp = log_probs(logits)
    b, t_max, v = logp.shape
    k, n = beam_size, min(beam_size, v)  # beams, labels tried per frame
    device, dtype = logp.device, logp.dtype
    prefix = torch.full((b, k, t_max), -1, dtype=torch.long, device=device)  # -1 = no label
    plen = torch.zeros(b, k, dtype=torch.long, device=device)
    p_blank = torch.full((b, k), NEG_INF, device=device, dtype=dtype)
    p_blank[:, 0] = 0.0  # one live beam: the empty prefix
    p_label = torch.full((b, k), NEG_INF, device=device, dtype=dtype)
    for t in range(t_max):
        frame = logp[:, t]  # (B, V)
        top_p, top_c = frame.topk(n, dim=-1)  # allowed labels this frame
        allowed_blank = (top_c == BLANK).any(-1, keepdim=True)  # (B, 1)
        end = (plen - 1).clamp(min=0)[..., None]
        last = prefix.gather(2, end)[..., 0]  # -1 for the empty prefix
        total = torch.logaddexp(p_blank, p_label)
        # stay: a blank, or the last label repeated
        stay_blank = torch.where(allowed_blank, total + frame[:, BLANK, None], NEG_INF)
        last_allowed = (top_c[:, None, :] == last[..., None]).any(-1)
        stay_label = torch.where(last_allowed, p_label + frame.gather(1, last.clamp(min=0)), NEG_INF)
        # grow beam j by each allowed non-blank label c (from its blank-ending paths only if c repeats its last label)
        c = top_c[:, None, :].expand(b, k, n)  # [b, j, i]: label i for beam j
        grow = torch.where(c == last[..., None], p_blank[..., None], total[..., None]) + top_p[:, None, :]
        grow = grow.masked_fill(c == BLANK, NEG_INF)
        # growth (j, c) reaches live beam j' when j' is j's prefix + c: merge it into j' (at most one does)
        parent = prefix.scatter(2, end, -1)  # each prefix without its last label
        same = (parent[:, :, None] == prefix[:, None]).all(-1) & (total > NEG_INF)[:, :, None]  # (B, j', j)
        match = same[..., None] & (last[:, :, None, None] == c[:, None]) & (grow > NEG_INF)[:, None]  # (B, j', j, i)
        merged = torch.where(match, grow[:, None], NEG_INF).amax((2, 3))
        stay_label = _logaddexp_exact(stay_label, merged)
        grow = grow.masked_fill(match.any(1), NEG_INF)
        # the K best of K stays and K * N growths
        score = torch.cat([torch.logaddexp(stay_blank, stay_label), grow.reshape(b, k * n)], 1)
        best = score.topk(k, dim=-1).indices  # (B, K)
        is_growth = best >= k
        beam = torch.where(is_growth, (best - k) // n, best)
        new_prefix = prefix.gather(1, beam[..., None].expand(b, k, t_max))
        new_plen = plen.gather(1, beam)
        label = top_c.gather(1, ((best - k) % n).clamp(min=0))
        # a beam holds at most t labels before frame t, so slot plen is free: a growth writes its label there
        new_prefix.scatter_(2, new_plen[..., None], torch.where(is_growth, label, -1)[..., None])
        new_blank = torch.where(is_growth, NEG_INF, stay_blank.gather(1, beam))
        new_label = torch.where(is_growth, grow.reshape(b, k * n).gather(1, (best - k).clamp(min=0)), stay_label.gather(1, beam))
        keep = (t < lengths)[:, None]  # samples still inside their clip
        prefix = torch.where(keep[..., None], new_prefix, prefix)
        plen = torch.where(keep, new_plen + is_growth, plen)
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


def _logaddexp_exact(a: Tensor, b: Tensor) -> Tensor:
    """log(e^a + e^b) as ``peak + log(sum(exp(x - peak)))`` (the rounding of a log-sum-exp over a group)."""
    peak = torch.maximum(a, b)
    safe = torch.where(torch.isfinite(peak), peak, 0.0)
    return safe + ((a - safe).exp() + (b - safe).exp()).log()


class CTCPrefixScorer:
    """Label-synchronous CTC prefix probabilities (Watanabe et al., 2017), batched over hypotheses.

    For a hypothesis g and a candidate label c, ``score`` gives log P_ctc(g + c + anything | x),
    and for c = ``<eos>`` the probability of exactly g; the attention beam search adds the change
    from g to g + c to its own scores. State per hypothesis (row): its sample, and the forward
    variables r_t^n(g), r_t^b(g) over all frames, reordered with the beams by :meth:`select`.
    The frame posteriors stay one copy per sample. All rows hold prefixes of one length L (the
    attention beam search grows them together), and g + c cannot end before frame L, so the
    recursion starts there, as ESPnet's ``CTCPrefixScoreTH`` does.
    """

    def __init__(self, logits: Tensor, lengths: Tensor, eos: int):
        logp = log_probs(logits)  # (B, T, V)
        b, t_max, v = logp.shape
        pad = torch.arange(t_max, device=logp.device)[None] >= lengths[:, None]
        # frames past a clip's end: blank with probability 1, so they change nothing
        logp = logp.masked_fill(pad[..., None], NEG_INF)
        logp[..., BLANK] = logp[..., BLANK].masked_fill(pad, 0.0)
        self.logp = logp.transpose(0, 1).contiguous()  # (T, B, V), never copied per row
        self.lengths, self.eos, self.prefix_length = lengths, eos, 0
        self.sample = torch.arange(b, device=logp.device)
        r = torch.full((t_max, 2, b), NEG_INF, device=logp.device, dtype=logp.dtype)  # [:, 0]: ends in a label, [:, 1]: blank
        r[:, 1] = self.logp[:, :, BLANK].cumsum(0)
        self.r = r  # state of the empty prefix
        self.prefix_score = torch.zeros(b, device=logp.device, dtype=logp.dtype)
        self.last = torch.full((b,), -1, dtype=torch.long, device=logp.device)

    def select(self, index: Tensor) -> CTCPrefixScorer:
        """The scorer for rows ``index`` of this one (expansion to beams, reordering)."""
        new = copy.copy(self)
        new.sample, new.r, new.prefix_score, new.last = self.sample[index], self.r[:, :, index], self.prefix_score[index], self.last[index]
        return new

    def score(self, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C) candidate labels -> ((N, C) log prefix probabilities, (T, 2, N, C) their r)."""
        t_max, b, v = self.logp.shape
        n, c = candidates.shape
        x = self.logp.view(t_max, b * v)[:, self.sample[:, None] * v + candidates]  # (T, N, C)
        blank = self.logp[:, self.sample, BLANK, None]  # (T, N, 1)
        r_prev = self.r  # (T, 2, N)
        total_prev = torch.logaddexp(r_prev[:, 0], r_prev[:, 1])  # (T, N)
        same = candidates == self.last[:, None]
        # phi_t: paths of g ending at t that may be followed by c
        phi = torch.where(same[None], r_prev[:, 1, :, None], total_prev[..., None])  # (T, N, C)
        r = torch.full((t_max, 2, n, c), NEG_INF, device=x.device, dtype=x.dtype)
        if self.prefix_length == 0:  # the empty prefix: c may start at frame 0
            r[0, 0] = x[0]
        for t in range(max(self.prefix_length, 1), t_max):  # g + c cannot end before frame len(g)
            r[t, 0] = torch.logaddexp(r[t - 1, 0], phi[t - 1]) + x[t]
            r[t, 1] = torch.logaddexp(r[t - 1, 0], r[t - 1, 1]) + blank[t]
        psi = torch.logsumexp(torch.cat([r[:1, 0], phi[:-1] + x[1:]], 0), dim=0)  # (N, C)
        # <eos>: the probability of g itself, read at each clip's last frame
        end = (self.lengths[self.sample] - 1).clamp(min=0)
        full = total_prev.gather(0, end[None])[0]
        psi = torch.where(candidates == self.eos, full[:, None], psi)
        return psi, r

    def advance(self, parent: Tensor, column: Tensor, psi: Tensor, r: Tensor, labels: Tensor) -> CTCPrefixScorer:
        """The scorer for the chosen extensions: row ``parent`` + candidate ``column``, given what
        :meth:`score` returned for the candidates."""
        new = self.select(parent)
        new.r = r[:, :, parent, column]
        new.prefix_score = psi[parent, column]
        new.last, new.prefix_length = labels, self.prefix_length + 1
        return new


@torch.no_grad()
def ctc_align(logits: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
    """CTC forced alignment (Viterbi), batched: (B, T) index of the target label each frame
    holds on the most likely path that spells ``targets`` (B, L), -1 where it holds a blank or
    lies past the clip. The only Python loops are over frames."""
    logp = log_probs(logits)
    b, t_max, _ = logp.shape
    s_max = 2 * targets.size(1) + 1  # blank, label 1, blank, label 2, ..., blank
    ext = torch.full((b, s_max), BLANK, dtype=torch.long, device=logp.device)
    ext[:, 1::2] = targets.clamp(min=0)
    emit = logp.gather(2, ext[:, None].expand(b, t_max, s_max))  # (B, T, S)
    skip = torch.zeros_like(ext, dtype=torch.bool)  # label s may follow label s - 2 directly
    skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    states = torch.arange(s_max, device=logp.device)
    alive = states[None] < 2 * target_lengths[:, None] + 1
    score = torch.full((b, s_max), NEG_INF, device=logp.device, dtype=logp.dtype)
    score[:, :2] = emit[:, 0, :2]
    score = score.masked_fill(~alive, NEG_INF)
    back = torch.zeros((t_max, b, s_max), dtype=torch.long, device=logp.device)  # 0: stay, 1: from s-1, 2: from s-2
    for t in range(1, t_max):
        one = F.pad(score, (1, 0), value=NEG_INF)[:, :-1]
        two = F.pad(score, (2, 0), value=NEG_INF)[:, :-2].masked_fill(~skip, NEG_INF)
        best, back[t] = torch.stack([score, one, two]).max(0)
        new = (best + emit[:, t]).masked_fill(~alive, NEG_INF)
        score = torch.where((t < lengths)[:, None], new, score)  # a finished clip keeps its last column
    # each clip ends in its last label or the blank after it, at its last frame
    last = 2 * target_lengths
    end_score = torch.stack([score.gather(1, last[:, None]), score.gather(1, (last - 1).clamp(min=0)[:, None])], -1)[:, 0]
    state = torch.where(end_score[:, 1] > end_score[:, 0], last - 1, last)
    path = torch.full((b, t_max), -1, dtype=torch.long, device=logp.device)
    for t in range(t_max - 1, -1, -1):
        inside = t < lengths
        path[:, t] = torch.where(inside & (state % 2 == 1), (state - 1) // 2, -1)
        step = back[t].gather(1, state[:, None])[:, 0]
        state = torch.where(inside & (t > 0), state - step, state)
    return path
