"""Shared fixtures: small data made here, never downloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from signlab.config import SentenceConfig, SentenceModelConfig, load_config
from signlab.data.stats import FeatureStats
from signlab.data.synthetic import CorpusSpec, generate_corpus

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"

TINY_MODEL = [
    "model.input_dim=null", "model.d_model=32", "model.nhead=2", "model.num_encoder_layers=1",
    "model.num_decoder_layers=1", "model.dim_feedforward=64", "model.subsampling=2",
    "training.epochs=2", "training.batch_size=8", "training.lr=1e-3", "training.warmup_epochs=1",
    "training.accelerator=cpu", "training.log_every_n_steps=2",
]


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs a worker a core), each worker and every command it
    starts uses one thread: two torch processes with a thread per core each run several times slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Manifest of a small synthetic corpus: 3 train signers, 1 dev, 1 test."""
    out = tmp_path_factory.mktemp("corpus")
    return generate_corpus(out, CorpusSpec(train_signers=3, dev_signers=1, test_signers=1, clips_per_signer=12, seed=3))


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus, tmp_path_factory) -> Path:
    """A gloss bundle trained for one epoch on ``tiny_corpus``: read it, copy it before changing it."""
    from signlab.training.run import train

    cfg = load_config(REPO / "configs" / "hybrid.yaml", [*TINY_MODEL, "training.epochs=1"])
    return train([tiny_corpus], cfg, tmp_path_factory.mktemp("tiny_run") / "run", progress=False)


SMALL = SentenceModelConfig(proj_dim=32, embed_dim=32, attn_heads=2, encoder_layers=1, encoder_ff_dim=64, decoder_layers=1)


@pytest.fixture(scope="module")
def sentence_predictor():
    """An untrained sentence model with a bank of six clips: enough to serve, no training needed."""
    import torch

    from signlab.inference.bank import EmbeddingBank, TorchEncoder, encode_clips
    from signlab.inference.engine import InferenceEngine, SentenceBundle
    from signlab.training.sentence import SentencePredictor
    from signlab.kinds import HOLISTIC
    from signlab.models.sentence import SignTranslationModel
    from signlab.vocab import Vocabulary

    torch.manual_seed(0)
    cfg = SentenceConfig(model=SMALL)
    cfg.data.feature_kind, cfg.data.pose_normalization, cfg.model.input_dim = HOLISTIC.name, False, 540  # as training resolves it
    vocab = Vocabulary.build([["text", "a", "b", "c"]])
    model = SignTranslationModel(540, len(vocab), SMALL, pose_layout=True).eval()
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.3, (20, 540)).astype(np.float32) for _ in range(6)]
    enc = encode_clips(TorchEncoder(model), clips, 32, cfg.engine.dtw.frames, model.subsampling)
    keys = np.array(["a", "a", "b", "b", "c", "c"])
    bank = EmbeddingBank(enc.embeddings, enc.sequences, keys, np.array([f"text {k}" for k in keys]), np.array([f"c{i}" for i in range(6)]))
    bundle = SentenceBundle(cfg, vocab, FeatureStats(np.zeros(540, np.float32),
                            np.ones(540, np.float32)), model, bank, bank.prototypes(), {})
    engine = InferenceEngine(TorchEncoder(model), bundle.prep, bank, bank.prototypes(), cfg.engine, 32, model.subsampling)
    return SentencePredictor("phrases", bundle, engine)


@pytest.fixture
def tiny_config():
    def make(*overrides: str):
        return load_config(REPO / "configs" / "hybrid.yaml", [*TINY_MODEL, *overrides])

    return make


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    """Run ``signlab ARGS`` in a fresh process, as a user would, in a narrow terminal: what the
    tests read must not depend on the width."""
    return subprocess.run(
        [sys.executable, "-m", "signlab.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, "COLUMNS": "40", **env},
    )


def needs_real_data():
    return pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"{REAL_DATA} not present")
