import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from rich.console import Console

from signlab.config import (
    EngineConfig,
    SentenceConfig,
    SentenceModelConfig,
    load_config,
)
from signlab.data.features import Preprocessor
from signlab.data.manifest import Sample, read_manifest
from signlab.data.sentence import (
    ClassBalancedSampler,
    sentence_key,
    split_by_sentence,
    split_by_signer,
    variations,
)
from signlab.data.synthetic import CorpusSpec, generate_corpus
from signlab.errors import SignlabError
from signlab.export import export_onnx, onnx_runner, verify
from signlab.inference.bank import (
    EmbeddingBank,
    OnnxEncoder,
    Prototypes,
    TorchEncoder,
    encode_clips,
)
from signlab.inference.calibration import (
    calibrate,
    choose_operating_point,
    choose_thresholds,
)
from signlab.inference.decision import GLOSS_FIT_FLOOR, gloss_fit
from signlab.inference.engine import InferenceEngine, load_sentence_bundle
from signlab.tasks import load_predictor
from signlab.kinds import HOLISTIC
from signlab.losses import SupConLoss
from signlab.metrics import retrieval_metrics
from signlab.models.sentence import SignTranslationModel
from tests.conftest import run_cli

SMALL = SentenceModelConfig(proj_dim=32, embed_dim=32, attn_heads=2, encoder_layers=1, encoder_ff_dim=64, decoder_layers=1)
TINY = ["model.proj_dim=32", "model.embed_dim=32", "model.attn_heads=2", "model.encoder_layers=1",
        "model.encoder_ff_dim=64", "model.decoder_layers=1", "training.epochs=3", "training.batch_size=8",
        "training.lr=1e-3", "training.accelerator=cpu", "training.scheduler_t0=3", "training.accumulate_grad_batches=1",
        "data.seq_len=32"]


def rows(pattern: list[tuple[str, str]]) -> list[Sample]:
    """(sentence_id, signer) per clip."""
    return [Sample(id=f"c{i}", split="train", features=None, text=f"sentence {sid}", signer=signer,
                   extra={"sentence_id": sid}) for i, (sid, signer) in enumerate(pattern)]


def test_split_by_sentence_keeps_every_sentence_on_one_side_and_singletons_in_train():
    samples = rows([(str(i % 12), f"s{i % 3}") for i in range(40)] + [("lonely", "s0")])
    train, val = split_by_sentence(samples, 0.2, seed=3)
    assert {sentence_key(s) for s in train}.isdisjoint({sentence_key(s) for s in val})
    assert "lonely" in {sentence_key(s) for s in train} and len(train) + len(val) == 41
    assert 0.1 < len(val) / 41 < 0.4
    assert split_by_sentence(samples, 0.2, seed=3) == (train, val)  # reproducible


def test_split_by_signer_holds_out_whole_signers():
    samples = rows([(str(i % 5), f"s{i % 4}") for i in range(40)])
    train, val = split_by_signer(samples, 0.25, seed=0)
    assert val and {s.signer for s in train}.isdisjoint({s.signer for s in val})
    with pytest.raises(SignlabError, match="at least two signers"):
        split_by_signer(rows([("1", "only")] * 3), 0.2, 0)


def test_sentence_key_and_text_variations():
    s = Sample(id="a", split="train", features=None, text="Hello there.",
               extra={"text_variations": '["Hi there.", "Hello there."]'})
    assert sentence_key(s) == "hello there." and variations(s) == ["Hello there.", "Hi there."]
    bad = Sample(id="b", split="train", features=None, text="x", source="m.csv", row=7, extra={"text_variations": "[oops"})
    with pytest.raises(SignlabError, match="m.csv:7"):
        variations(bad)


def test_sampler_batches_hold_k_clips_of_each_chosen_sentence():
    labels = [i % 10 for i in range(60)] + [10]  # sentence 10 has a single clip
    sampler = ClassBalancedSampler(labels, batch_size=8, k=2, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 60 // 8
    for b in batches:
        chosen = [labels[i] for i in b]
        assert len(b) == 8 and all(chosen.count(c) == 2 for c in set(chosen)) and len(set(chosen)) == 4
    sampler.set_epoch(1)
    assert list(sampler) != batches
    ranks = [list(ClassBalancedSampler(labels, 8, 2, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 4
    with pytest.raises(SignlabError, match="multiple"):
        ClassBalancedSampler(labels, 7, 2)


def test_supcon_matches_a_direct_computation():
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    labels = torch.tensor([0, 1, 0, 2, 1, 3])  # label 2 and 3 have no positive
    t = 0.5
    losses = []
    for i in range(6):
        others = [j for j in range(6) if j != i]
        positives = [j for j in others if labels[j] == labels[i]]
        if not positives:
            continue
        denom = sum(math.exp(float(emb[i] @ emb[j]) / t) for j in others)
        losses.append(-sum(math.log(math.exp(float(emb[i] @ emb[p]) / t) / denom) for p in positives) / len(positives))
    assert SupConLoss(t)(emb, labels).item() == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    assert SupConLoss(t)(emb[:2], torch.tensor([0, 1])).item() == 0.0  # nothing to pull together


def test_padded_and_unpadded_clips_give_the_same_embedding():
    torch.manual_seed(0)
    model = SignTranslationModel(540, 20, SMALL, pose_layout=True).eval()
    clip = torch.randn(1, 17, 540)
    batch = torch.cat([torch.cat([clip, torch.randn(1, 13, 540) * 9], 1), torch.randn(1, 30, 540)])
    with torch.no_grad():
        alone = model.encode(clip, torch.tensor([17]))
        padded = model.encode(batch, torch.tensor([17, 30]))
    torch.testing.assert_close(padded.embedding[0], alone.embedding[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.projected[0, :17], alone.projected[0], atol=1e-5, rtol=1e-5)
    assert torch.allclose(alone.embedding.norm(dim=-1), torch.ones(1))


@pytest.mark.parametrize("glosses", [None, ["GO", "ME", "WHERE"]])
def test_onnx_encoder_matches_pytorch_on_unseen_lengths(tmp_path, glosses):
    torch.manual_seed(1)
    model = SignTranslationModel(540, 20, SMALL.model_copy(update={"glosses": glosses}), pose_layout=True).eval()
    path = export_onnx(model, tmp_path / "encoder.onnx")
    assert verify(model, onnx_runner(path), atol=1e-4) < 1e-4  # batches 1-3, 5-91 frames; exported with 2 x 64
    enc = OnnxEncoder(path)(np.zeros((1, 9, 540), np.float32), np.array([9]))
    logits = enc.gloss_logits
    assert (logits is None) == (glosses is None) and (glosses is None or logits.shape == (1, 9, 4))  # blank + 3
    assert enc.context.shape == (1, 9, SMALL.embed_dim)  # what the text decoder reads: one encoding serves both


def test_gloss_fit_scores_the_glosses_the_head_spells():
    # a head sure of ME GO (1-based: ME = 2, GO = 1) over 6 frames: blank ME ME blank GO blank
    log_probs = np.log(np.full((6, 5), 0.01, np.float32))
    for frame, gloss in enumerate([0, 2, 2, 0, 1, 0]):
        log_probs[frame, gloss] = np.log(0.96)
    fit = gloss_fit(log_probs, [[2, 1], [4, 1], [2], [2, 1, 3, 4, 1, 2, 3, 4]])
    assert fit[0] > -0.1 and fit[1] < fit[0] - 1 and fit[2] < fit[0] - 1  # one sign differs; one missing
    assert fit[3] == GLOSS_FIT_FLOOR  # more glosses than frames: CTC cannot align them


def test_gloss_fit_is_torchs_ctc_per_gloss():
    rng = np.random.default_rng(0)
    for trial in range(12):
        frames, glosses = int(rng.integers(3, 40)), int(rng.integers(2, 30))
        log_probs = torch.randn(frames, glosses + 1, generator=torch.Generator().manual_seed(trial)).log_softmax(-1)
        targets = [rng.integers(1, glosses + 1, rng.integers(1, 9)).tolist() for _ in range(rng.integers(1, 5))]
        targets.append([1, 1, 2])  # a repeated gloss needs a blank between its two
        fit = gloss_fit(log_probs.numpy(), targets)
        for k, t in enumerate(targets):
            nll = torch.nn.functional.ctc_loss(log_probs[:, None], torch.tensor([t]), torch.tensor([frames]),
                                               torch.tensor([len(t)]), blank=0, reduction="sum").item()
            assert fit[k] == pytest.approx(max(-nll / len(t), GLOSS_FIT_FLOOR), abs=1e-4)


def test_gloss_evidence_reranks_sentences_that_differ_in_one_sign(engine_parts):
    encoder, bank, clips = engine_parts
    bank = EmbeddingBank(bank.embeddings, bank.sequences, bank.sentences, bank.texts, bank.clip_ids,
                         np.array(["ME GO", "ME GO", "YOU GO", "YOU GO", "WE GO", "WE GO"]))
    cfg = EngineConfig(motion_floor=0.0, dtw={"enabled": False}, gloss_weight=0.0)
    engine = InferenceEngine(encoder, Preprocessor(HOLISTIC, pose_normalize=False), bank, bank.prototypes(), cfg, 32,
                             glosses=["GO", "ME", "WE", "YOU"])
    assert engine.book == {"a": [2, 1], "b": [4, 1], "c": [3, 1]}
    enc = engine.encode(clips[:1])
    assert enc.gloss_log_probs is None  # this model has no gloss head: no evidence, whatever the weight
    assert engine.rank(enc, 0)[0].gloss_fit is None
    # the head's output for a clip of "b" (YOU GO), though its embedding is nearest "a"'s clips
    spelled = np.log(np.full((8, 5), 0.01, np.float32))
    for frame, gloss in enumerate([0, 4, 4, 0, 1, 1, 0, 0]):
        spelled[frame, gloss] = np.log(0.96)
    enc = replace(enc, gloss_log_probs=[spelled])
    assert engine.rank(enc, 0)[0].sentence == "a" and engine.rank(enc, 0)[0].gloss_fit is None  # weight 0: off
    weighted = engine.with_config(cfg.model_copy(update={"gloss_weight": 1.0})).rank(enc, 0, topk=6)
    assert weighted[0].sentence == "b" and weighted[0].gloss_fit > -0.2
    assert all(c.gloss_fit < -1 for c in weighted if c.sentence != "b")
    # a phrase-book gloss the head was not trained on: no gloss evidence at all (logged)
    assert InferenceEngine(encoder, Preprocessor(HOLISTIC, pose_normalize=False), bank, bank.prototypes(), cfg, 32,
                           glosses=["GO", "ME", "WE"]).book is None


def test_calibration_weighs_the_glosses_only_where_they_pay():
    rng = np.random.default_rng(1)
    known, unknown = _rows(rng, 60), _rows(rng, 60, unknown=True)
    unknown["top"] = known["top"].copy()  # similarity alone cannot tell them apart
    apart = ({**known, "top": known["top"] + 0.2}, unknown)  # with the gloss fit in the score, they come apart
    t, m, info = choose_operating_point({0.0: (known, unknown), 0.1: apart}, 0.5, 0.9)
    assert info["gloss_weight"] == 0.1 and info["unknown_rejection"] >= 0.9
    worse = ({**known, "top": known["top"] - 0.3}, {**unknown, "top": unknown["top"] + 0.3})
    separable = (known, {**unknown, "top": unknown["top"] - 0.5})  # similarity alone can
    t, m, info = choose_operating_point({0.0: separable, 0.1: worse}, 0.5, 0.9)
    assert info["gloss_weight"] == 0.0
    # equal at the target rejection (90%), apart at a stricter one (95%): the weight that holds up wins
    known = {"top": np.linspace(0.5, 1.0, 100), "gap": np.ones(100), "gates": np.ones(100, bool), "right": np.ones(100, bool)}
    unknown = {**known, "right": np.zeros(100, bool)}
    close, far = ({**unknown, "top": np.r_[np.full(90, 0.1), np.full(10, value)]} for value in (0.9, 0.6))
    assert choose_operating_point({0.0: (known, close), 0.1: (known, far)}, 0.95, 0.9)[2]["gloss_weight"] == 0.1


def test_training_views_have_the_frame_rate_inference_sees():
    from signlab.data.sentence import at_clip_rate

    clip = np.arange(90, dtype=np.float32)[:, None]
    half = clip[0::2]  # 45 frames: half the rate
    assert len(at_clip_rate(half, 45, 90, 64)) == 64  # the whole clip is resampled to 64 at inference
    assert len(at_clip_rate(half, 45, 90, 128)) == 90
    assert len(at_clip_rate(half[:40], 45, 90, 128)) == 80  # an augmentation that shortens the view keeps its speed-up
    stretched = at_clip_rate(half, 45, 90, 128)
    assert stretched[0] == 0 and stretched[-1] == 88 and np.all(np.diff(stretched[:, 0]) >= 0)  # in order, end to end


def test_retrieval_metrics_on_a_small_case():
    q = np.array([[1, 0, 0], [1, 0.05, 0], [0, 0, 1]], np.float32)
    gallery = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 0, 1]], np.float32)
    r = retrieval_metrics(q, np.array([0, 1, 2]), gallery, np.array([0, 1, 2]))
    assert r["n"] == 3 and r["top1"] == pytest.approx(2 / 3)  # query 1's best is clip 0 (sentence 0)
    assert r["mrr"] == pytest.approx((1 + 0.5 + 1) / 3)
    loo = retrieval_metrics(np.array([[1, 0], [1, 0.1], [0, 1]], np.float32), np.array([5, 5, 6]))
    assert loo["n"] == 2 and loo["top1"] == 1.0  # the lone sentence-6 clip is not scored


@pytest.fixture
def engine_parts():
    torch.manual_seed(2)
    model = SignTranslationModel(540, 20, SMALL, pose_layout=True).eval()
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.3, (20, 540)).astype(np.float32) for _ in range(6)]
    encoder = TorchEncoder(model)
    enc = encode_clips(encoder, clips, 32, 8)
    bank = EmbeddingBank(enc.embeddings, enc.sequences, np.array(["a", "a", "b", "b", "c", "c"]), np.array(["A", "A", "B", "B", "C", "C"]),
                         np.array([f"k{i}" for i in range(6)]))
    return encoder, bank, clips


def test_engine_rejects_a_motionless_clip_with_low_motion(engine_parts):
    encoder, bank, clips = engine_parts
    engine = InferenceEngine(encoder, Preprocessor(HOLISTIC, pose_normalize=False), bank, bank.prototypes(), EngineConfig(), 32)
    still = np.repeat(clips[0][:1], 30, axis=0)
    p = engine.predict(still)
    assert not p.accepted and p.reason == "low_motion" and p.motion == 0.0
    moving = engine.predict(clips[2])
    assert moving.reason != "low_motion" and moving.candidates[0].clip_id == "k2"  # a bank clip finds itself
    assert moving.candidates[0].dtw_distance == pytest.approx(0.0, abs=1e-3)
    wide = engine.predict(clips[2], topk=6)  # more than dtw.topk: every candidate re-ranked alike
    assert all(c.dtw_distance is not None for c in wide.candidates) and len(wide.candidates) == 6
    assert [c.similarity for c in wide.candidates] == sorted((c.similarity for c in wide.candidates), reverse=True)


def test_engine_decisions_and_their_reasons(engine_parts):
    encoder, bank, clips = engine_parts
    cfg = EngineConfig(motion_floor=0.0, dtw={"enabled": False})
    engine = InferenceEngine(encoder, Preprocessor(HOLISTIC, pose_normalize=False), bank, bank.prototypes(), cfg, 32)
    cands, emb = engine.score(clips[0])
    assert engine.decide(cands, emb, 1.0, threshold=2.0).reason == "low_similarity"
    assert engine.decide(cands, emb, 1.0, threshold=-1.0, margin=5.0).reason == "ambiguous_top2"
    ok = engine.decide(cands, emb, 1.0, threshold=-1.0, margin=0.0)
    assert ok.sentence == "a" and ok.reason in ("ok", "prototype_disagreement") and 0 < ok.confidence <= 1
    two_clips_one_sentence = [c for c in cands if c.sentence == "a"]
    assert len(two_clips_one_sentence) == 2  # the margin is to the best *other* sentence, not to clip k1
    t, m, info = calibrate(engine, clips, ["a", "a", "b", "b", "c", "c"], target_precision=0.9, target_rejection=0.5)
    assert info["precision"] >= 0.9 and info["coverage"] > 0
    # each clip was also decided with its sentence out of the bank: an unknown sentence to refuse
    assert info["unknown_clips"] == 6 and 0 <= info["unknown_rejection"] <= 1 and info["curve"]
    enc = engine.encode(clips[:1])
    assert all(c.sentence != "a" for c in engine.rank(enc, 0, exclude="a"))
    with pytest.raises(SignlabError, match="empty"):
        InferenceEngine(encoder, Preprocessor(HOLISTIC), EmbeddingBank(emb[:0], bank.sequences[:0], *(np.array([]),) * 3),
                        Prototypes(np.array([]), np.zeros((0, 32)), np.array([])), cfg, 32)


@pytest.fixture(scope="module")
def sentence_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("sentences")
    return generate_corpus(out, CorpusSpec(train_signers=3, dev_signers=1, test_signers=1, clips_per_signer=8, sentence_pool=8,
                                           seed=4))


@pytest.mark.slow
def test_sentence_pipeline_end_to_end(sentence_corpus, tmp_path):
    run = tmp_path / "run"
    sets = [a for o in TINY for a in ("--set", o)]
    r = run_cli("sentence", "train", "-m", str(sentence_corpus), "--out", str(run), *sets)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("config.yaml", "vocab.json", "stats.npz", "model.safetensors", "bank.npz", "prototypes.npz", "metrics.json",
                 "curves.png", "training_history.csv", "checkpoints/best.ckpt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"retrieval", "decisions", "alignment", "translation"} <= set(metrics["test"])
    assert "calibration" in metrics and metrics["test"]["n"] == 8
    # the manifest has glosses: a gloss head was trained, and the bank knows the phrase book's glosses
    bundle = load_sentence_bundle(run)
    assert bundle.config.model.glosses and bundle.model.gloss_head is not None
    assert bundle.bank.glosses is not None and "gloss_weight" in metrics["calibration"]
    history = (run / "metrics.jsonl").read_text()
    assert "train_gloss_ctc" in history and "val_gloss_wer" in history  # the epoch kept weighs the head too
    epochs = [json.loads(line) for line in history.splitlines() if '"val_score"' in line]
    assert epochs and all(0 <= e["val_score"] <= 1 for e in epochs)

    r = run_cli("sentence", "export", str(run))
    assert r.returncode == 0 and "ONNX Runtime" in r.stdout, r.stderr[-2000:]
    test = [s for s in read_manifest(sentence_corpus) if s.split == "test"]
    r = run_cli("sentence", "predict", str(run), str(test[0].features), "--backend", "onnx", "--json", str(tmp_path / "p.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    onnx_p = json.loads((tmp_path / "p.json").read_text())[str(test[0].features)]
    torch_p = InferenceEngine.load(run, "torch").predict(np.load(test[0].features))
    assert onnx_p["sentence"] == torch_p.sentence and onnx_p["reason"] == torch_p.reason
    assert onnx_p["candidates"][0]["similarity"] == pytest.approx(torch_p.candidates[0].similarity, abs=1e-4)
    # translation reads the same one encoding, the exported graph's context included
    clips = [load_predictor(run).prepare(np.load(s.features), s.id) for s in test[:3]]
    answers = {b: load_predictor(run, backend=b).predict(clips) for b in ("torch", "onnx")}
    assert [a["translation"] for a in answers["onnx"]] == [a["translation"] for a in answers["torch"]]

    r = run_cli("sentence", "evaluate", str(run), "-m", str(sentence_corpus), "--output", str(tmp_path / "e.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert len((tmp_path / "e.predictions.jsonl").read_text().splitlines()) == 8
    # the shared verbs: the bundle's config.yaml says which task answers
    r = run_cli("evaluate", str(run), "-m", str(sentence_corpus), "--output", str(tmp_path / "f.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "f.json").read_text())["translation"] == json.loads((tmp_path / "e.json").read_text())["translation"]
    r = run_cli("evaluate", str(run), "-m", str(sentence_corpus), "--beam-size", "3")
    assert r.returncode == 2 and "a sentence model takes no --beam-size" in r.stderr
    r = run_cli("predict", str(run), str(test[0].features))
    assert r.returncode == 0 and json.loads(r.stdout)["sentence"] == torch_p.sentence, r.stderr[-2000:]
    r = run_cli("sentence", "index", str(run), "-m", str(sentence_corpus), "--splits", "train,dev", "--calibrate-on", "test")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{run / 'bank.npz'}: 32 clips of 8 sentences" in r.stdout and "thresholds calibrated on test (8 clips)" in r.stdout
    assert len(EmbeddingBank.load(run / "bank.npz")) == 32  # 3 train + 1 dev signer x 8 clips
    r = run_cli("recognize", str(test[0].features), "--model", str(run))
    assert r.returncode == 2  # not a video, whatever the model


def test_sentence_config_and_split_errors(sentence_corpus):
    from signlab.training.sentence import prepare_sentence_data

    cfg = load_config(None, TINY, SentenceConfig)
    samples = read_manifest(sentence_corpus)
    data = prepare_sentence_data(samples, cfg)
    assert data.dev_against_train and data.config.model.input_dim == 540
    with pytest.raises(SignlabError, match="no dev rows"):
        prepare_sentence_data([s for s in samples if s.split != "dev"], cfg)
    grouped = prepare_sentence_data([s for s in samples if s.split != "dev"], cfg.model_copy(update={"data": cfg.data.model_copy(update={"split": "sentence"})}))
    assert not grouped.dev_against_train  # unseen sentences: retrieval among the dev clips themselves
    with pytest.raises(SignlabError, match="unknown key 'model.proj'"):
        load_config(None, ["model.proj=3"], SentenceConfig)


@pytest.mark.slow
def test_sentence_training_with_two_ddp_processes(sentence_corpus, tmp_path):
    sets = [a for o in TINY for a in ("--set", o)]
    r = run_cli("sentence", "train", "-m", str(sentence_corpus), "--out", str(tmp_path / "ddp"), *sets,
                "--set", "training.devices=2", "--set", "training.strategy=ddp", "--set", "training.epochs=1")
    assert r.returncode == 0, r.stderr[-3000:]
    epochs = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines() if '"epoch", "epoch"' in x]
    assert epochs and epochs[0]["val_ret_mrr"] is not None
    assert (tmp_path / "ddp" / "bank.npz").is_file()


def _rows(rng, n, unknown=False):
    top = np.round(rng.uniform(0.3, 0.9 if unknown else 1.0, n), 3)
    gap = np.where(rng.random(n) < 0.1, np.nan, np.round(rng.uniform(0, 0.2, n), 3))
    return {"top": top, "gap": gap, "gates": rng.random(n) < 0.8, "right": ~np.full(n, unknown) & (rng.random(n) < top)}


def test_threshold_search_equals_trying_every_pair():
    rng = np.random.default_rng(3)
    for n in (1, 7, 60):
        known = _rows(rng, n)
        if not (known["gates"] & np.isfinite(known["gap"])).any():
            continue
        for unknown in (None, _rows(rng, n + 3, unknown=True)):
            for target, rejection in ((0.5, 0.5), (0.9, 0.9), (1.0, 0.99)):
                best = None  # plain search: every threshold, then every margin, the first best kept
                scores = known["top"] if unknown is None else np.concatenate([known["top"], unknown["top"]])
                gaps = [known["gap"]] + ([] if unknown is None else [unknown["gap"]])
                margins = np.unique(np.concatenate([[0.0], *(g[np.isfinite(g)] for g in gaps)]))
                for t in np.unique(scores):
                    for m in margins:
                        accepted = (known["top"] >= t) & (known["gap"] >= m) & known["gates"]
                        precision = known["right"][accepted].mean() if accepted.any() else 0.0
                        coverage = accepted.mean()
                        rejected = 1.0 if unknown is None else \
                            1 - ((unknown["top"] >= t) & (unknown["gap"] >= m) & unknown["gates"]).mean()
                        rejects = rejected >= rejection
                        meets = rejects and precision >= target and coverage > 0
                        key = (coverage > 0, meets, rejects, coverage if meets else precision if rejects else rejected, -t)
                        if best is None or key > best[0]:
                            best = (key, t, m, precision, coverage)
                if best[4] == 0:
                    with pytest.raises(SignlabError, match="accepts anything"):
                        choose_thresholds(known, unknown, target, rejection)
                    continue
                t, m, info = choose_thresholds(known, unknown, target, rejection)
                assert (t, m, info["precision"], info["coverage"]) == pytest.approx(best[1:]), (n, target)
                if unknown is not None:
                    assert info["curve"] and {"threshold", "accept_rate", "precision", "unknown_rejected"} <= set(info["curve"][0])
    many = rng.uniform(0, 1, 5000)  # past the grid: quantiles, still a valid pair
    rows = {"top": many, "gap": many / 10, "gates": many > 0, "right": many > 0.5}
    t, m, info = choose_thresholds(rows, None, 0.95, grid=64)
    assert info["precision"] >= 0.95 and info["coverage"] > 0
    with pytest.raises(SignlabError, match="accepts anything"):
        choose_thresholds({**known, "gap": np.full(len(known["top"]), np.nan)}, None)


def test_summary_when_no_clip_is_accepted_says_so_instead_of_nan():
    from signlab.demo import sentence_table
    from signlab.tasks import get_task

    r = {"retrieval": {"top1": 0.5, "mrr": 0.6}, "translation": {"wer": 50.0, "bleu": 20.0},
         "decisions": {"accept_rate": 0.0, "accepted_accuracy": None}}
    line = get_task("sentence").summary(r)
    assert "engine accepts 0.0% of known, - of its answers right" in line and "nan" not in line
    row = {"backend": "torch", "top1": 0.5, "mrr": 0.6, "engine_top1": 0.5, "accept_rate": 0.0, "accepted_accuracy": None,
           "wer": 50.0, "bleu": 20.0, "ms_per_query": 1.0}
    console = Console(record=True, width=200)
    console.print(sentence_table([row]))
    assert "nan" not in console.export_text()


def test_decision_metrics_count_unknown_sentences_as_refusals_to_make():
    from signlab.inference.decision import Prediction
    from signlab.inference.sentence_eval import decision_metrics

    def p(sentence, accepted):
        return Prediction(accepted, "ok" if accepted else "low_similarity", sentence, sentence, 0.9, 1.0)

    preds = [p("a", True), p("b", False), p("a", True), p("c", True), p("a", False)]
    truths = ["a", "b", "b", "x", "y"]  # x and y are not in the phrase book
    d = decision_metrics(preds, truths, np.array([True, True, True, False, False]))
    assert d["engine_top1"] == pytest.approx(2 / 3) and d["accept_rate"] == pytest.approx(2 / 3)
    assert d["accepted_accuracy"] == pytest.approx(1 / 3)  # a right; a for b wrong; c for the unknown x wrong
    assert d["unknown_rejected"] == 0.5 and (d["known_clips"], d["unknown_clips"]) == (3, 2)


def test_the_gloss_vocabulary_comes_from_the_training_rows_when_all_have_glosses(tmp_path):
    from signlab.training.sentence import resolve_glosses

    def rows(*glosses):
        return [Sample(f"c{i}", "train", tmp_path / f"c{i}.npy", tuple(g.split()), text="t", row=i + 2)
                for i, g in enumerate(glosses)]

    cfg = SentenceConfig()
    resolve_glosses(cfg, rows("ME GO", "YOU GO WHERE"))
    assert cfg.model.glosses == ["GO", "ME", "WHERE", "YOU"]
    bare = SentenceConfig()
    resolve_glosses(bare, rows("ME GO", ""))
    assert bare.model.glosses is None  # a row without glosses: no head
    given = SentenceConfig(model={"glosses": ["GO", "ME"]})
    with pytest.raises(SignlabError, match="model.glosses lacks 2 gloss.*e.g. WHERE"):
        resolve_glosses(given, rows("ME GO", "YOU GO WHERE"))
    off = SentenceConfig(model={"gloss_ctc_weight": 0.0, "glosses": ["GO"]})
    resolve_glosses(off, rows("ME GO"))
    assert off.model.glosses is None
