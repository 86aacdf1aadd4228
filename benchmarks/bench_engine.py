"""Inference engine latency with a 100,000-clip bank, and exact DTW against fastdtw.

1. One query at a time (64 frames of 540-dim pose) through the engine: encoder (PyTorch, or
   ONNX Runtime on the exported encoder), cosine similarity against 100,000 bank embeddings,
   exact DTW re-ranking of the top 5, decision. The seed's model size (proj 160, embed 256,
   4 encoder layers), random weights: latency does not depend on training. Without and with a
   gloss head (300 glosses, 8 per phrase-book sentence): the candidates' gloss fit (CTC) added.
2. DTW re-ranking of the same 5 candidates: signlab's exact DTW (dtaidistance, C) against the
   seed's fastdtw (radius 6, Euclidean), on the seed's 64-frame projected sequences and on the
   bank's 16-frame ones; fastdtw's relative error against the exact distance.

    python benchmarks/bench_engine.py [--bank 100000] [--queries 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from signlab.config import EngineConfig, SentenceModelConfig
from signlab.data.features import Preprocessor
from signlab.export import export_onnx
from signlab.inference.bank import EmbeddingBank, OnnxEncoder, TorchEncoder
from signlab.inference.decision import dtw_distance
from signlab.inference.engine import InferenceEngine
from signlab.kinds import HOLISTIC
from signlab.models.sentence import SignTranslationModel

GLOSSES = [f"G{i}" for i in range(300)]


def fake_bank(n: int, embed: int, frames: int, proj: int, rng: np.random.Generator) -> EmbeddingBank:
    emb = rng.normal(size=(n, embed)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    seq = rng.normal(size=(n, frames, proj)).astype(np.float16)
    sentences = np.array([f"s{i % 500}" for i in range(n)])
    phrases = [" ".join(rng.choice(GLOSSES, 8)) for _ in range(500)]
    return EmbeddingBank(emb, seq, sentences, sentences, np.array([f"c{i}" for i in range(n)]),
                         np.array([phrases[i % 500] for i in range(n)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    console = Console()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    cfg = SentenceModelConfig()  # the seed's sizes
    bank = fake_bank(args.bank, cfg.embed_dim, 16, cfg.proj_dim, rng)
    protos = bank.prototypes()
    queries = [np.cumsum(rng.normal(0, 0.02, (64, 540)), axis=0).astype(np.float32) for _ in range(args.queries)]
    prep = Preprocessor(HOLISTIC, pose_normalize=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for glosses in (None, GLOSSES):
            model = SignTranslationModel(540, 300, cfg.model_copy(update={"glosses": glosses}), pose_layout=True).eval()
            onnx_path = export_onnx(model, Path(tmp) / f"encoder{glosses is not None}.onnx")
            for name, encoder in (("PyTorch", TorchEncoder(model)), ("ONNX Runtime", OnnxEncoder(onnx_path))):
                engine = InferenceEngine(encoder, prep, bank, protos, EngineConfig(), 64, glosses=glosses)
                rows.append((name + (", gloss head" if glosses else ""), timed(engine, encoder, queries)))
    table = Table(title=f"engine latency per query, bank of {args.bank:,} clips, CPU, "
                        f"{torch.get_num_threads()} threads (median of {args.queries})")
    for col in ("encoder", "encode (ms)", "search + DTW + decide (ms)", "total (ms)"):
        table.add_column(col, justify="left" if col == "encoder" else "right")
    for name, s in rows:
        table.add_row(name, f"{s['encode']:.1f}", f"{s['search + DTW + decide']:.1f}", f"{s['total']:.1f}")
    console.print(table)
    dtw_table(console, rng, cfg.proj_dim)


def timed(engine: InferenceEngine, encoder, queries: list[np.ndarray]) -> dict[str, float]:
    """Median milliseconds of each stage of a query."""
    engine.predict(queries[0])  # warm-up
    stages = {"encode": [], "search + DTW + decide": [], "total": []}
    for q in queries:
        t0 = time.perf_counter()
        encoder(q[None], np.array([len(q)], np.int64))
        t1 = time.perf_counter()
        engine.predict(q)
        t2 = time.perf_counter()
        stages["encode"].append(t1 - t0)
        stages["total"].append(t2 - t1)
        stages["search + DTW + decide"].append((t2 - t1) - (t1 - t0))
    return {k: 1000 * statistics.median(v) for k, v in stages.items()}


def dtw_table(console: Console, rng: np.random.Generator, proj: int) -> None:
    from fastdtw import fastdtw

    def euclid(x, y):
        return float(np.linalg.norm(x - y))

    table = Table(title="DTW re-ranking of 5 candidates (projected frames, 160 dims)")
    for col in ("sequences", "exact DTW, dtaidistance (ms)", "fastdtw r=6 (ms)", "speed-up", "fastdtw error (mean, max)"):
        table.add_column(col, justify="left" if col == "sequences" else "right")
    for frames in (64, 16):
        query = rng.normal(size=(frames, proj))
        cands = [query + rng.normal(0, 0.5, size=query.shape) for _ in range(5)]
        cands = [c[np.sort(rng.choice(frames, frames, replace=True))] for c in cands]  # time-warped
        t0 = time.perf_counter()
        exact = [dtw_distance(query, c) for c in cands]
        t_exact = time.perf_counter() - t0
        t0 = time.perf_counter()
        approx = [fastdtw(query, c, radius=6, dist=euclid)[0] for c in cands]
        t_fast = time.perf_counter() - t0
        err = [(a - e) / e for a, e in zip(approx, exact)]
        table.add_row(f"{frames} x {frames} frames", f"{1000 * t_exact:.2f}", f"{1000 * t_fast:.1f}", f"{t_fast / t_exact:.0f}x",
                      f"{100 * np.mean(err):.2f}%, {100 * np.max(err):.2f}%")
    console.print(table)


if __name__ == "__main__":
    main()
