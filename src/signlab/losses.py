"""Training objectives: joint CTC + attention cross-entropy (gloss recognition), SupCon (sentences)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signlab.decoding.ctc import ctc_align
from signlab.models.interface import RecognizerOutput
from signlab.vocab import BLANK, PAD


class JointCTCAttentionLoss(nn.Module):
    """``L = ctc_weight * CTC + ce_weight * CE [+ guide_weight * guide]`` (0.3 / 0.7 by default, as
    in the ASL seed); with self-conditioning, CTC is ``(1 - middle_weight)`` of the last layer's
    and ``middle_weight`` of the middle layer's (InterCTC).

    CTC is averaged per target token (``reduction='mean'``), CE per non-pad token with optional
    label smoothing, so the two terms have comparable scales. A CTC-only model (no decoder
    logits) trains on the CTC term alone. The guide (:func:`guided_attention_loss`) is added when
    the output carries the decoder's cross-attention.
    """

    def __init__(self, ctc_weight: float = 0.3, ce_weight: float = 0.7, label_smoothing: float = 0.0,
                 guide_weight: float = 0.0, middle_weight: float = 0.0):
        super().__init__()
        self.ctc_weight, self.ce_weight, self.guide_weight = ctc_weight, ce_weight, guide_weight
        self.middle_weight = middle_weight
        self.ce = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=label_smoothing)

    def forward(self, out: RecognizerOutput, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        targets, target_lengths = batch["ctc_targets"], batch["target_lengths"]
        ctc = ctc_loss(out.ctc_logits, out.lengths, targets, target_lengths)
        if out.middle_ctc_logits is not None and self.middle_weight:
            middle = ctc_loss(out.middle_ctc_logits, out.lengths, targets, target_lengths)
            ctc = (1 - self.middle_weight) * ctc + self.middle_weight * middle
        if out.decoder_logits is None:
            return {"loss": ctc, "ctc": ctc}
        logits = out.decoder_logits.float()
        ce = self.ce(logits.reshape(-1, logits.size(-1)), batch["decoder_target"].reshape(-1))
        losses = {"loss": self.ctc_weight * ctc + self.ce_weight * ce, "ctc": ctc, "ce": ce}
        if out.attention is not None and self.guide_weight:
            losses["guide"] = guided_attention_loss(out.attention, out.ctc_logits, out.lengths, targets, target_lengths)
            losses["loss"] = losses["loss"] + self.guide_weight * losses["guide"]
        return losses


def guided_attention_loss(attention: Tensor, ctc_logits: Tensor, lengths: Tensor, targets: Tensor,
                          target_lengths: Tensor) -> Tensor:
    """Minus the log of the cross-attention mass that the decoder, predicting gloss k, puts on the
    frames from just after gloss k-1 to just before gloss k+1, on the CTC head's forced alignment
    (:func:`ctc_align`), averaged over glosses. It teaches the decoder to read the clip in order:
    without it, an attention decoder on long sentences skips or repeats whole clauses that
    resemble others (on the long-sentence benchmark, weight 1.0: attention beam search test WER
    9.31 -> 7.80, deletions 247 -> 129). ``attention`` is (B, L', T) with L' > L, ``targets`` (B, L)."""
    path = ctc_align(ctc_logits.detach(), lengths, targets, target_lengths)  # (B, T): gloss index or -1
    (b, t_max), n = path.shape, targets.size(1)
    index = path.masked_fill(path < 0, n)  # blanks go to a spare column
    frames = torch.arange(t_max, device=path.device).expand(b, t_max)
    first = torch.full((b, n + 1), t_max, device=path.device).scatter_reduce(1, index, frames, "amin")[:, :n]
    last = torch.full((b, n + 1), -1, device=path.device).scatter_reduce(1, index, frames, "amax")[:, :n]
    lo = F.pad(last[:, :-1] + 1, (1, 0))
    hi = torch.minimum(F.pad(first[:, 1:] - 1, (0, 1), value=t_max), (lengths - 1)[:, None])
    span = (frames[:, None] >= lo[..., None]) & (frames[:, None] <= hi[..., None])  # (B, L, T)
    mass = (attention[:, :n].float() * span).sum(-1)
    valid = torch.arange(n, device=path.device)[None] < target_lengths[:, None]
    return -mass.clamp_min(1e-6).log()[valid].mean()



def ctc_loss(logits: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor, blank: int = BLANK,
             zero_infinity: bool = False) -> Tensor:
    """CTC of (B, T, V) logits (in float32 whatever their dtype), averaged per target token;
    ``zero_infinity`` drops clips too short for their targets instead of returning inf."""
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, V)
    return F.ctc_loss(log_probs, targets, lengths, target_lengths, blank=blank, reduction="mean",
                      zero_infinity=zero_infinity)


class SupConLoss(nn.Module):
    """Supervised contrastive loss (Khosla et al., 2020) on unit-length embeddings.

    Every embedding is an anchor; its positives are the others with the same label. The loss of
    an anchor is minus the mean log-probability of its positives among all other embeddings, and
    the batch loss averages over anchors that have at least one positive.
    """

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        n = embeddings.size(0)
        logits = embeddings @ embeddings.T / self.temperature
        self_mask = torch.eye(n, dtype=torch.bool, device=embeddings.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
        positive = (labels[:, None] == labels[None, :]) & ~self_mask
        counts = positive.sum(1)
        has = counts > 0
        if not has.any():
            return embeddings.sum() * 0.0  # no pairs in this batch: nothing to pull together
        per_anchor = -(log_prob.masked_fill(~positive, 0.0)).sum(1)[has] / counts[has]
        return per_anchor.mean()
