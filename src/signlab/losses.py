"""Training objectives: joint CTC + attention cross-entropy (gloss recognition), SupCon (sentences)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signlab.models.interface import RecognizerOutput
from signlab.vocab import BLANK, PAD


class JointCTCAttentionLoss(nn.Module):
    """``L = ctc_weight * CTC + ce_weight * CE`` (0.3 / 0.7 by default, as in the ASL seed).

    CTC is averaged per target token (``reduction='mean'``), CE per non-pad token with optional
    label smoothing, so the two terms have comparable scales. A CTC-only model (no decoder
    logits) trains on the CTC term alone.
    """

    def __init__(self, ctc_weight: float = 0.3, ce_weight: float = 0.7, label_smoothing: float = 0.0):
        super().__init__()
        self.ctc_weight, self.ce_weight = ctc_weight, ce_weight
        self.ce = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=label_smoothing)

    def forward(self, out: RecognizerOutput, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        ctc = ctc_loss(out.ctc_logits, out.lengths, batch["ctc_targets"], batch["target_lengths"])
        if out.decoder_logits is None:
            return {"loss": ctc, "ctc": ctc}
        logits = out.decoder_logits.float()
        ce = self.ce(logits.reshape(-1, logits.size(-1)), batch["decoder_target"].reshape(-1))
        return {"loss": self.ctc_weight * ctc + self.ce_weight * ce, "ctc": ctc, "ce": ce}



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
