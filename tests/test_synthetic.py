import csv

import numpy as np

from signlab import pose
from signlab.data.grammar import Grammar
from signlab.data.synthetic import (
    CorpusSpec,
    SyntheticSigner,
    generate_corpus,
    hand_landmarks,
    make_lexicon,
    sample_signer,
)


def test_grammar_gives_glosses_with_english_text(rng):
    g = Grammar()
    sentences = [g.sample(rng) for _ in range(200)]
    assert all(set(s.glosses) <= set(g.glosses) for s in sentences)
    assert all(s.text[0].isupper() and s.text[-1] in ".?" for s in sentences)
    texts = {s.glosses: s.text for s in sentences}
    if ("YESTERDAY", "ME", "STORE", "GO") in texts:
        assert texts[("YESTERDAY", "ME", "STORE", "GO")] == "I went to the store yesterday."
    assert len(Grammar(extra_nouns=300).glosses) > 300


def test_long_sentences_join_whole_clauses_within_the_asked_lengths(rng):
    g = Grammar(extra_nouns=20)
    sentences = [g.sample_long(rng, 8, 15) for _ in range(200)]
    lengths = [len(s.glosses) for s in sentences]
    assert min(lengths) >= 8 and max(lengths) <= 15 and len(set(lengths)) >= 6  # the whole range is used
    assert all(s.text.count(".") + s.text.count("?") >= 2 for s in sentences)  # several clauses, each with its text


def test_rendering_is_deterministic_and_signers_differ():
    g = Grammar()
    lex = make_lexicon(g.glosses, 0)
    a = SyntheticSigner(lex, sample_signer(np.random.default_rng(1))).render(("ME", "GO"), np.random.default_rng(5))
    b = SyntheticSigner(lex, sample_signer(np.random.default_rng(1))).render(("ME", "GO"), np.random.default_rng(5))
    c = SyntheticSigner(lex, sample_signer(np.random.default_rng(2))).render(("ME", "GO"), np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.shape[1] == 540 and a.dtype == np.float32 and np.isfinite(a).all()
    assert a.shape != c.shape or not np.allclose(a, c)


def test_bodies_keep_bone_lengths_and_hands_are_missed_sometimes():
    g = Grammar()
    lex = make_lexicon(g.glosses, 0)
    signer = sample_signer(np.random.default_rng(4))
    x = SyntheticSigner(lex, signer).render(tuple(g.glosses[:12]), np.random.default_rng(0))
    pts = pose.points(x) / signer.width
    upper = np.linalg.norm(pts[:, pose.RIGHT_ELBOW, :2] - pts[:, pose.RIGHT_SHOULDER, :2], axis=1)
    assert upper.max() <= signer.upper_arm * 1.1  # projected bones are never longer than the bone (plus jitter)
    parts = pose.part_mask(x)
    assert parts[:, 0].all() and parts[:, 3].all() and not parts[:, 1:3].all()


def test_hand_model_open_hand_points_up_and_fist_is_compact():
    t = 2
    curls = np.array([[0.0] * 5, [1.0] * 5])
    h = hand_landmarks(curls, np.zeros(t), np.zeros(t), np.zeros(t), mirror=False)
    tip = h[:, 12]  # middle finger tip
    assert tip[0, 1] < -0.8 and np.linalg.norm(tip[1]) < np.linalg.norm(tip[0]) * 0.7


def test_corpus_manifest_has_the_design_format_and_splits_by_signer(tmp_path):
    manifest = generate_corpus(tmp_path, CorpusSpec(train_signers=2, dev_signers=1, test_signers=1, clips_per_signer=3, sentence_pool=2))
    rows = list(csv.DictReader(manifest.open()))
    assert list(rows[0]) == ["id", "split", "features", "feature_kind", "glosses", "text", "signer", "sentence_id", "category"]
    assert [r["split"] for r in rows].count("train") == 6
    assert {r["signer"] for r in rows if r["split"] == "test"}.isdisjoint({r["signer"] for r in rows if r["split"] == "train"})
    assert len({r["sentence_id"] for r in rows}) == 2  # a fixed pool of sentences, signed by everyone
    assert np.load(tmp_path / rows[0]["features"]).shape[1] == 540


def test_a_phrase_book_of_near_duplicates_and_sentences_outside_it(tmp_path):
    spec = CorpusSpec(train_signers=1, dev_signers=0, test_signers=2, clips_per_signer=6, sentence_pool=6,
                      near_duplicates=True, unknown_sentences=2, seed=4)
    rows = list(csv.DictReader(generate_corpus(tmp_path, spec).open()))
    book = [tuple(r["glosses"].split()) for r in rows if r["split"] == "train"]
    assert len(set(book)) == 6
    for a, b in zip(book[0::2], book[1::2]):  # pairs that differ in one sign, at one place, and in their text
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1
    texts = {r["text"] for r in rows if r["split"] == "train"}
    outside = [r for r in rows if r["split"] == "test" and r["text"] not in texts]
    assert len(outside) == 2 * 2  # each test signer signs each unknown sentence once
    assert {r["sentence_id"] for r in outside}.isdisjoint({r["sentence_id"] for r in rows if r["split"] == "train"})
