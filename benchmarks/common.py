"""What the accuracy benchmarks share: ``signlab`` run as a user runs it (a subprocess, from a source
tree), a run trained then decoded with every method, and the plain reference every recogniser must
beat, a bidirectional GRU + CTC in plain PyTorch trained on the same manifest in the same run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def signlab(src: Path, *args: str) -> None:
    """``signlab ARGS`` with the package found in ``src``; stops the benchmark if it fails."""
    done = subprocess.run([sys.executable, "-m", "signlab.cli", *args], env={**os.environ, "PYTHONPATH": str(src)},
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"signlab {' '.join(args)} failed ({src}):\n{done.stderr[-3000:]}")


def train_and_compare(src: Path, manifest: Path, run: Path, config: Path | None, overrides: list[str]) -> dict:
    """Train ``run`` (``signlab train``; an existing finished run is reused), then ``signlab evaluate
    --decode all`` on dev and test: the tables, the training time, the decoder chosen on dev, and
    the dev blank ratio and loss of every epoch."""
    if not (run / "metrics.json").is_file():
        started = time.perf_counter()
        signlab(src, "train", "-m", str(manifest), "--out", str(run), *(["--config", str(config)] if config else []),
                *(a for o in overrides for a in ("--set", o)))
        (run / "bench_train_s.txt").write_text(f"{time.perf_counter() - started:.1f}")
    tables = {}
    for split in ("dev", "test"):
        out = run / f"decode_all_{split}.json"
        if not out.is_file():
            signlab(src, "evaluate", str(run), "-m", str(manifest), "--split", split, "--decode", "all", "--output", str(out))
        tables[split] = json.loads(out.read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in line]
    return {"tables": tables, "train_s": float((run / "bench_train_s.txt").read_text()),
            "chosen": metrics.get("decoding_search", {}).get("chosen") or metrics["test"]["decoding"],
            "warmup_epochs": config["training"]["warmup_epochs"], "best_epoch": metrics.get("best_epoch"),
            "default_test_wer": metrics["test"]["wer"], "default_dev_wer": metrics["dev"]["wer"],
            "dev_blank_ratio": [round(e["dev_blank_ratio"], 3) for e in epochs],
            "dev_loss": [round(e["dev_loss"], 3) for e in epochs]}


def method_wer(result: dict, split: str, prefix: str) -> float:
    """WER of the first decoder in ``result``'s ``split`` table whose name starts with ``prefix``."""
    return next(r["wer"] for r in result["tables"][split]["results"] if r["decoder"].startswith(prefix))


def decoder_table(name: str, result: dict) -> Table:
    t = Table(title=f"{name}: trained in {result['train_s']:.0f} s (best epoch {result['best_epoch']}); default "
                    f"decoding {result['chosen']}: test WER {result['default_test_wer']:.2f}, dev {result['default_dev_wer']:.2f}")
    for col in ("decoding", "test WER %", "sub / del / ins", "dev WER %", "test decode s"):
        t.add_column(col, justify="left" if col == "decoding" else "right")
    dev = {r["decoder"]: r for r in result["tables"]["dev"]["results"]}
    for r in result["tables"]["test"]["results"]:
        t.add_row(r["decoder"], f"{r['wer']:.2f}", f"{r['sub']} / {r['del']} / {r['ins']}",
                  f"{dev[r['decoder']]['wer']:.2f}", f"{r['decode_seconds']:.1f}")
    return t


def recurrent_reference(manifest: Path, epochs: int = 60, seed: int = 0, max_frames: int = 300) -> dict:
    """The plain reference: 2-layer bidirectional GRU (256 a direction) + CTC on the manifest's
    features standardised with the train split's mean and std, Adam 1e-3, batches of 8, the epoch
    with the best greedy dev WER kept; its dev and test WER. Nothing of signlab's model code."""
    import torch
    from torch import nn

    from signlab.metrics import word_error_rate

    torch.manual_seed(seed)
    rows = list(csv.DictReader(manifest.open()))
    vocab = sorted({g for r in rows if r["split"] == "train" for g in r["glosses"].split()})
    index = {g: i + 1 for i, g in enumerate(vocab)}  # 0 = blank

    def clip(path: str) -> np.ndarray:
        x = np.load(manifest.parent / path)
        return x[np.linspace(0, len(x) - 1, max_frames).round().astype(int)] if len(x) > max_frames else x

    data = {s: [(clip(r["features"]), [index[g] for g in r["glosses"].split() if g in index], r["glosses"])
                for r in rows if r["split"] == s] for s in ("train", "dev", "test")}
    frames = np.concatenate([x for x, _, _ in data["train"]])
    mean, std = frames.mean(0), frames.std(0) + 1e-6

    def batch(items):
        n = torch.tensor([len(x) for x, _, _ in items])
        return nn.utils.rnn.pad_sequence([torch.tensor((x - mean) / std, dtype=torch.float32) for x, _, _ in items],
                                         batch_first=True), n

    rnn = nn.GRU(frames.shape[1], 256, 2, batch_first=True, bidirectional=True, dropout=0.1)
    head = nn.Linear(512, len(vocab) + 1)

    def logits(x, n):
        packed = nn.utils.rnn.pack_padded_sequence(x, n, batch_first=True, enforce_sorted=False)
        return head(nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], batch_first=True)[0])

    def wer(split: str) -> float:
        rnn.eval()
        hyps = []
        with torch.no_grad():
            for i in range(0, len(data[split]), 64):
                x, n = batch(data[split][i:i + 64])
                for best, length in zip(logits(x, n).argmax(-1), n):
                    hyps.append(" ".join(vocab[t - 1] for t in torch.unique_consecutive(best[:length]).tolist() if t))
        return word_error_rate([r for _, _, r in data[split]], hyps).wer

    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], 1e-3)
    best, started = {"dev": float("inf")}, time.perf_counter()
    for epoch in range(epochs):
        rnn.train()
        order = np.random.default_rng([seed, epoch]).permutation(len(data["train"]))
        for i in range(0, len(order), 8):
            items = [data["train"][j] for j in order[i:i + 8]]
            x, n = batch(items)
            loss = nn.functional.ctc_loss(logits(x, n).log_softmax(-1).transpose(0, 1),
                                          torch.cat([torch.tensor(y) for _, y, _ in items]), n,
                                          torch.tensor([len(y) for _, y, _ in items]), zero_infinity=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
        dev = wer("dev")
        if dev < best["dev"]:
            best = {"dev": dev, "test": wer("test"), "epoch": epoch}
    return {**best, "train_s": time.perf_counter() - started, "epochs": epochs}
