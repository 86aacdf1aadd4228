import pytest
import torch
from torchmetrics.text import WordErrorRate

from signlab.metrics import (
    blank_counts,
    bleu,
    clean_phoenix_2014t,
    word_error_rate,
)
from signlab.vocab import BLANK


def test_wer_counts_substitutions_deletions_insertions():
    r = word_error_rate(["A B C", "D E"], ["A X C D", ""])
    assert (r.sub, r.dele, r.ins, r.hits, r.ref_words, r.n) == (1, 2, 1, 2, 5, 2)
    assert r.wer == 80.0 and r.as_dict()["del"] == 2
    # training's dev WER (torchmetrics, summed over batches and processes) is the same number
    assert 100 * float(WordErrorRate()(["A X C D", ""], ["A B C", "D E"])) == pytest.approx(r.wer)
    assert word_error_rate([], []).wer == 0.0


def test_blank_counts_ignore_padding():
    logits = torch.zeros(2, 3, 6)
    logits[..., BLANK] = 1
    logits[1, 0, 5] = 2
    assert blank_counts(logits, torch.tensor([3, 2])) == (4, 5)


def test_phoenix_cleanup():
    assert clean_phoenix_2014t("__ON__ loc-REGION REGEN REGEN cl-KOMMEN __OFF__") == "REGION REGEN KOMMEN"
    assert clean_phoenix_2014t("WETTER-PLUSPLUS NORDRAUM WIE AUSSEHEN") == "WETTER NORD WIE-AUSSEHEN"
    assert clean_phoenix_2014t("HEUTE A B C") == "HEUTE A+B+C"  # spelled letters joined


def test_bleu_uses_sacrebleu():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert bleu(["the cat sat on the mat"], ["a dog"]) < 10
