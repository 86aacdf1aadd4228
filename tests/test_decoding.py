import pytest
import torch

from signlab.decoding import decode_batch
from signlab.decoding.attention import attention_greedy_decode
from signlab.decoding.ctc import ctc_greedy_decode
from signlab.errors import SignlabError
from signlab.models import HybridCTCAttentionModel, TCNCTCModel
from signlab.vocab import BLANK, EOS, SOS


def one_hot(paths, vocab=8):
    return torch.nn.functional.one_hot(torch.tensor(paths), vocab).float()


def test_ctc_greedy_merges_repeats_and_drops_blanks_within_each_length():
    b = BLANK
    logits = one_hot([[5, 5, b, 5, 6, 6, b, 7], [6, b, b, 6, 7, 7, 5, 5]])
    assert ctc_greedy_decode(logits, torch.tensor([8, 5])) == [[5, 5, 6, 7], [6, 6, 7]]
    assert ctc_greedy_decode(logits, torch.tensor([0, 1])) == [[], [6]]


def reference_greedy(decoder, memory, mask, limit):
    """Re-runs the decoder over the whole prefix at every step (the seed's approach)."""
    tokens = [SOS]
    for _ in range(limit):
        nxt = decoder(torch.tensor([tokens]), memory, mask)[0, -1].argmax().item()
        if nxt == EOS:
            break
        tokens.append(nxt)
    return tokens[1:]


def test_batched_cached_greedy_equals_the_uncached_per_sample_reference():
    torch.manual_seed(1)
    model = HybridCTCAttentionModel(6, 9, d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=2,
                                    dim_feedforward=32).eval()
    enc = model.encode(torch.randn(3, 10, 6), torch.tensor([10, 4, 7]))
    got = attention_greedy_decode(model.decoder, enc.out, enc.padding_mask, enc.lengths, max_len=8)
    for i in range(3):
        n = enc.lengths[i]
        expected = reference_greedy(model.decoder, enc.out[i : i + 1, :n], None, min(8, int(n)))
        assert got[i] == expected


def test_decode_batch_checks_the_method_and_the_model():
    tcn = TCNCTCModel(6, 9, d_model=16, num_layers=1).eval()
    x, lengths = torch.randn(2, 5, 6), torch.tensor([5, 3])
    hyps, out = decode_batch(tcn, x, lengths, "ctc_greedy")
    assert len(hyps) == 2 and out.ctc_logits.shape == (2, 5, 9)
    with pytest.raises(SignlabError, match="only a CTC head"):
        decode_batch(tcn, x, lengths, "attention")
    with pytest.raises(SignlabError, match="unknown decoding method"):
        decode_batch(tcn, x, lengths, "magic")
