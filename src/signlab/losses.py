"""Training objectives: joint CTC + attention cross-entropy for gloss recognition."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from signlab.models.hybrid import RecognizerOutput
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
        log_probs = out.ctc_logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, V)
        ctc = F.ctc_loss(
            log_probs, batch["ctc_targets"], out.lengths, batch["target_lengths"], blank=BLANK, reduction="mean"
        )
        if out.decoder_logits is None:
            return {"loss": ctc, "ctc": ctc}
        logits = out.decoder_logits.float()
        ce = self.ce(logits.reshape(-1, logits.size(-1)), batch["decoder_target"].reshape(-1))
        return {"loss": self.ctc_weight * ctc + self.ce_weight * ce, "ctc": ctc, "ce": ce}

