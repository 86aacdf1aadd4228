import itertools
import math

import pytest
import torch

from signlab.config import Config, DecodingConfig, decoding_options
from signlab.decoding import decode_batch
from signlab.decoding.beam import attention_rescore, beam_search
from signlab.decoding.ctc import (
    CTCPrefixScorer,
    ctc_align,
    ctc_greedy_decode,
    ctc_prefix_beam_search,
)
from signlab.errors import SignlabError
from signlab.models import HybridCTCAttentionModel, TCNCTCModel
from signlab.vocab import BLANK, EOS, SOS
from tests.reference_decoders import (
    ctc_prefix_logprob,
    reference_beam_search,
    reference_ctc_prefix_beam_search,
    reference_greedy,
)


def one_hot(paths, vocab=8):
    return torch.nn.functional.one_hot(torch.tensor(paths), vocab).float()


def test_ctc_greedy_merges_repeats_and_drops_blanks_within_each_length():
    b = BLANK
    logits = one_hot([[5, 5, b, 5, 6, 6, b, 7], [6, b, b, 6, 7, 7, 5, 5]])
    assert ctc_greedy_decode(logits, torch.tensor([8, 5])) == [[5, 5, 6, 7], [6, 6, 7]]
    assert ctc_greedy_decode(logits, torch.tensor([0, 1])) == [[], [6]]


def brute_force(logp: torch.Tensor) -> dict[tuple[int, ...], float]:
    """P(labelling) by summing every path of a tiny (T, V) input."""
    t_max, v = logp.shape
    out: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(v), repeat=t_max):
        labels = tuple(k for k, _ in itertools.groupby(path) if k != BLANK)
        out[labels] = out.get(labels, 0.0) + math.exp(sum(logp[t, c].item() for t, c in enumerate(path)))
    return out


@pytest.fixture
def tiny_ctc():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, dtype=torch.float64) * 2
    return logits, torch.tensor([4, 3])


def test_ctc_prefix_scores_match_brute_force(tiny_ctc):
    logits, lengths = tiny_ctc
    scorer = CTCPrefixScorer(logits, lengths, EOS)
    for i in range(2):
        logp = logits[i, : lengths[i]].log_softmax(-1)
        probs = brute_force(logp)
        prefix = lambda g: sum(p for lab, p in probs.items() if lab[: len(g)] == tuple(g))
        cands = torch.tensor([[5, 3, EOS]] * 2)
        psi, _ = scorer.score(cands)
        assert math.exp(psi[i, 0]) == pytest.approx(prefix([5]))
        assert math.exp(psi[i, 1]) == pytest.approx(prefix([3]))
        assert math.exp(psi[i, 2]) == pytest.approx(probs[()])  # <eos> after nothing: the empty labelling
        # one label further, through advance()
        psi2, _ = scorer.advance(torch.tensor([0, 1]), torch.tensor([0, 0]), *scorer.score(cands), torch.tensor([5, 5])).score(
            torch.tensor([[5, 1, EOS]] * 2))
        assert math.exp(psi2[i, 0]) == pytest.approx(prefix([5, 5]))
        assert math.exp(psi2[i, 2]) == pytest.approx(probs.get((5,), 0.0))
        assert ctc_prefix_logprob(logp, [5, 1]) == pytest.approx(math.log(prefix([5, 1])))
        assert ctc_prefix_logprob(logp, [5], whole=True) == pytest.approx(math.log(probs[(5,)]))


def test_ctc_forced_alignment_is_the_best_path_that_spells_the_targets():
    torch.manual_seed(1)
    logits = torch.randn(3, 5, 6, dtype=torch.float64) * 2
    lengths, targets, target_lengths = torch.tensor([5, 5, 3]), torch.tensor([[5, 5], [3, 5], [4, 0]]), torch.tensor([2, 2, 1])
    path = ctc_align(logits, lengths, targets, target_lengths)
    for i in range(3):
        logp, want = logits[i, : lengths[i]].log_softmax(-1), targets[i, : target_lengths[i]].tolist()
        spelled = [p for p in itertools.product(range(6), repeat=int(lengths[i]))
                   if [k for k, _ in itertools.groupby(p) if k != BLANK] == want]
        best = max(spelled, key=lambda p: sum(logp[t, c].item() for t, c in enumerate(p)))
        index = [-1 if c == BLANK else sum(1 for k, _ in itertools.groupby(best[: t + 1]) if k != BLANK) - 1
                 for t, c in enumerate(best)]
        assert path[i].tolist() == index + [-1] * (5 - len(index))


def test_ctc_prefix_beam_search_with_a_wide_beam_is_exact(tiny_ctc):
    logits, lengths = tiny_ctc
    nbest = ctc_prefix_beam_search(logits, lengths, beam_size=6)  # 6 labels: nothing is pruned per frame
    for i, hyps in enumerate(nbest):
        probs = brute_force(logits[i, : lengths[i]].log_softmax(-1))
        best = max(probs, key=probs.get)
        assert tuple(hyps[0].tokens) == best
        assert math.exp(hyps[0].score) == pytest.approx(probs[best])
        for h in hyps:
            assert math.exp(h.score) <= probs[tuple(h.tokens)] + 1e-12  # beams only ever lose paths


@pytest.mark.parametrize("beam", [2, 4, 8])
def test_batched_ctc_prefix_beam_search_equals_the_per_sample_reference(beam):
    torch.manual_seed(beam)
    logits = torch.randn(6, 25, 7, dtype=torch.float64) * 2
    logits[..., BLANK] += 1.0
    logits[:, 5:9, 3] += 4.0  # a label held over frames: repeats and blank-separated repeats
    lengths = torch.tensor([25, 1, 7, 18, 25, 12])
    for i, hyps in enumerate(ctc_prefix_beam_search(logits, lengths, beam)):
        expected = reference_ctc_prefix_beam_search(logits[i, : lengths[i]].log_softmax(-1), beam)
        assert [h.tokens for h in hyps] == [tokens for tokens, _ in expected]
        assert [h.score for h in hyps] == pytest.approx([score for _, score in expected], abs=1e-9)


@pytest.mark.parametrize("batch", [1, 4, 7])
def test_ctc_prefix_beam_search_with_beam_1_is_greedy(batch):
    torch.manual_seed(batch)
    logits = torch.randn(batch, 30, 9)
    logits[..., BLANK] += 1.0
    lengths = torch.randint(1, 31, (batch,))
    got = [h[0].tokens if h else [] for h in ctc_prefix_beam_search(logits, lengths, beam_size=1)]
    assert got == ctc_greedy_decode(logits, lengths)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    m = HybridCTCAttentionModel(6, 11, d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=2,
                                dim_feedforward=32).double().eval()
    with torch.no_grad():
        m.decoder.output.bias[EOS] += 1.5  # some hypotheses end early, some run to their limit
    return m


def encoded(model, batch, seed=0):
    torch.manual_seed(seed)
    lengths = torch.randint(2, 12, (batch,))
    enc = model.encode(torch.randn(batch, int(lengths.max()), 6, dtype=torch.float64), lengths)
    return enc, model.ctc_head(enc.out)


@pytest.mark.parametrize("batch", [1, 3, 6])
@pytest.mark.parametrize("beam", [1, 2, 4, 8])
@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_batched_cached_beam_search_equals_the_per_sample_reference(model, batch, beam, alpha):
    enc, _ = encoded(model, batch, seed=batch * 10 + beam)
    got = beam_search(model.decoder, enc.out, enc.padding_mask, enc.lengths, beam, max_len=9, alpha=alpha)
    for i in range(batch):
        n = int(enc.lengths[i])
        ref = reference_beam_search(model.decoder, enc.out[i : i + 1, :n], min(9, n), beam, alpha)
        assert [h.tokens for h in got[i]] == [h.tokens for h in ref]
        assert [h.score for h in got[i]] == pytest.approx([h.score for h in ref], abs=1e-9)


def test_a_length_bonus_reranks_the_final_nbest_lists_as_the_reference_does(model):
    enc, ctc = encoded(model, 4, seed=11)
    plain = beam_search(model.decoder, enc.out, enc.padding_mask, enc.lengths, 4, max_len=9)
    got = beam_search(model.decoder, enc.out, enc.padding_mask, enc.lengths, 4, max_len=9, bonus=2.0)
    for i in range(4):
        n = int(enc.lengths[i])
        ref = reference_beam_search(model.decoder, enc.out[i : i + 1, :n], min(9, n), 4, bonus=2.0)
        assert [h.tokens for h in got[i]] == [h.tokens for h in ref]
        assert sorted(map(tuple, (h.tokens for h in got[i]))) == sorted(map(tuple, (h.tokens for h in plain[i])))
        assert [h.ranking for h in got[i]] == sorted((h.ranking + 2.0 * len(h.tokens) for h in plain[i]), reverse=True)
    assert any(len(g[0].tokens) > len(p[0].tokens) for g, p in zip(got, plain))  # longer outputs win


@pytest.mark.parametrize("batch", [1, 5])
def test_beam_1_is_greedy(model, batch):
    enc, _ = encoded(model, batch, seed=7)
    got = beam_search(model.decoder, enc.out, enc.padding_mask, enc.lengths, 1, max_len=9)
    for i in range(batch):
        n = int(enc.lengths[i])
        assert got[i][0].tokens == reference_greedy(model.decoder, enc.out[i : i + 1, :n], min(9, n))


@pytest.mark.parametrize("beam", [1, 3, 5])
def test_joint_decoding_equals_the_per_sample_reference(model, beam):
    enc, ctc = encoded(model, 4, seed=beam)
    got = beam_search(model.decoder, enc.out, enc.padding_mask, enc.lengths, beam, max_len=9, ctc_logits=ctc,
                      ctc_lengths=enc.lengths, ctc_weight=0.4)
    for i in range(4):
        n = int(enc.lengths[i])
        ref = reference_beam_search(model.decoder, enc.out[i : i + 1, :n], min(9, n), beam,
                                    ctc_logp=ctc[i, :n].log_softmax(-1), ctc_weight=0.4)
        assert [h.tokens for h in got[i]] == [h.tokens for h in ref]
        assert [h.score for h in got[i]] == pytest.approx([h.score for h in ref], abs=1e-9)


def test_joint_with_ctc_weight_0_is_attention_decoding(model):
    enc, ctc = encoded(model, 5, seed=1)
    x = torch.randn(5, 12, 6, dtype=torch.float64)
    lengths = torch.tensor([12, 3, 7, 9, 5])
    att, _ = decode_batch(model, x, lengths, DecodingConfig(method="attention", beam_size=3))
    joint, _ = decode_batch(model, x, lengths, DecodingConfig(method="joint", beam_size=3, ctc_weight=0.0))
    assert att == joint


def test_joint_decoding_returns_the_best_of_its_beam_and_the_rescored_ctc_nbest(model):
    x = torch.randn(6, 12, 6, dtype=torch.float64)
    lengths = torch.tensor([12, 3, 7, 9, 5, 11])
    enc = model.encode(x, lengths)
    ctc = model.ctc_head(enc.out)
    beam = beam_search(model.decoder, enc.out, enc.padding_mask, enc.lengths, 3, 100, 0.0, ctc, enc.lengths, 0.4)
    rescored = attention_rescore(model.decoder, enc.out, enc.padding_mask, ctc, enc.lengths, 3, 0.4)
    got, _ = decode_batch(model, x, lengths, DecodingConfig(method="joint", beam_size=3, ctc_weight=0.4))
    for i in range(6):
        best = max(beam[i][:1] + rescored[i][:1], key=lambda h: h.ranking)
        assert got[i] == best.tokens
        # the same joint score: a hypothesis found by both searches scores the same in each
        for h in beam[i]:
            twin = [r for r in rescored[i] if r.tokens == h.tokens]
            assert all(r.score == pytest.approx(h.score, abs=1e-9) for r in twin)


def test_rescoring_ranks_ctc_nbest_by_the_weighted_scores(model):
    enc, ctc = encoded(model, 3, seed=5)
    got = attention_rescore(model.decoder, enc.out, enc.padding_mask, ctc, enc.lengths, beam_size=4, ctc_weight=0.3)
    nbest = ctc_prefix_beam_search(ctc, enc.lengths, 4)
    for i in range(3):
        n = int(enc.lengths[i])
        expected = {}
        for h in nbest[i]:
            logp = model.decoder(torch.tensor([[SOS, *h.tokens]]), enc.out[i : i + 1, :n])[0].log_softmax(-1)
            att = sum(logp[j, t].item() for j, t in enumerate([*h.tokens, EOS]))
            expected[tuple(h.tokens)] = 0.3 * ctc_prefix_logprob(ctc[i, :n].detach().log_softmax(-1), h.tokens, whole=True) + 0.7 * att
        assert [tuple(h.tokens) for h in got[i]] == sorted(expected, key=lambda t: -expected[t])
        assert got[i][0].score == pytest.approx(max(expected.values()))


def test_decode_batch_checks_the_method_and_the_model():
    tcn = TCNCTCModel(6, 9, d_model=16, num_layers=1).eval()
    x, lengths = torch.randn(2, 5, 6), torch.tensor([5, 3])
    for method in ("ctc_greedy", "ctc_beam"):
        hyps, out = decode_batch(tcn, x, lengths, DecodingConfig(method=method))
        assert len(hyps) == 2 and out.ctc_logits.shape == (2, 5, 9)
    with pytest.raises(SignlabError, match="only a CTC head"):
        decode_batch(tcn, x, lengths, DecodingConfig(method="joint"))
    with pytest.raises(SignlabError, match="decoding: method"):
        decoding_options(Config(), method="magic")
    tcn_cfg = Config.model_validate({"model": {"type": "tcn"}})
    assert decoding_options(tcn_cfg).method == "ctc_greedy"  # a CTC-only model falls back to CTC
    assert decoding_options(tcn_cfg, method="ctc_beam", beam_size=8).beam_size == 8


@pytest.mark.parametrize("seed", range(4))
def test_joint_decoding_on_clips_too_short_for_some_hypotheses(seed):
    """CTC rules out hypotheses longer than a clip allows; they must score -inf, not a huge finite number."""
    torch.manual_seed(seed)
    m = HybridCTCAttentionModel(6, 13, d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                dim_feedforward=32).double().eval()
    lengths = torch.tensor([1, 2, 3, 5])
    enc = m.encode(torch.randn(4, 5, 6, dtype=torch.float64), lengths)
    ctc = m.ctc_head(enc.out)
    for weight in (0.3, 1.0):
        got = beam_search(m.decoder, enc.out, enc.padding_mask, enc.lengths, 2, 12, 0.5, ctc, enc.lengths, weight)
        for i in range(4):
            n = int(lengths[i])
            ref = reference_beam_search(m.decoder, enc.out[i : i + 1, :n], n, 2, 0.5, ctc[i, :n].log_softmax(-1), weight)
            assert [h.tokens for h in got[i]] == [h.tokens for h in ref]
            assert all(h.score > -1e300 for h in got[i])


class ScriptedDecoder:
    """A decoder whose next-token probabilities are a table keyed by the prefix (after <sos>)."""

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]], vocab: int = 7):
        self.table, self.vocab = table, vocab

    def init_state(self, memory, mask):
        return ScriptedState(None)

    def step(self, tokens, state):
        fed = tokens[:, None] if state.fed is None else torch.cat([state.fed, tokens[:, None]], 1)  # <sos> and the tokens so far
        logits = torch.full((len(tokens), self.vocab), -30.0, dtype=torch.float64)
        for row, prefix in enumerate(fed[:, 1:].tolist()):
            for label, p in self.table.get(tuple(prefix), {EOS: 1.0}).items():
                logits[row, label] = math.log(p)
        return logits, ScriptedState(fed)


class ScriptedState:
    def __init__(self, fed):
        self.fed = fed

    def select(self, rows, samples=None):
        return ScriptedState(self.fed[rows])


def test_beam_search_keeps_going_while_an_open_beam_can_still_win():
    """With beam 2, the empty hypothesis (0.40) and B (0.05) end first, while A B (0.55 * 0.96)
    is still open: stopping at the first two finished would return the empty output."""
    a, b = 5, 6
    table = {(): {a: 0.55, EOS: 0.40, b: 0.05}, (a,): {b: 0.96, EOS: 0.04}, (b,): {EOS: 1.0}, (a, b): {EOS: 1.0}}
    memory = torch.zeros(1, 4, 2, dtype=torch.float64)
    nbest = beam_search(ScriptedDecoder(table), memory, None, torch.tensor([4]), beam_size=2, max_len=4)[0]
    assert [h.tokens for h in nbest] == [[a, b], []]
    assert nbest[0].score == pytest.approx(math.log(0.55 * 0.96))
