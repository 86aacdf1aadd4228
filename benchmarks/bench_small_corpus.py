"""A small, hard corpus: a few hundred clips, three signers, six tracked numbers a frame.

The regime where the ASL seed's CTC model collapsed to all-blank outputs, and the data size of the
SignTalk seed's users: the synthetic signer (3 signers x 67 sentences, 46 glosses) reduced to what
a hand tracker gives, both wrists and the nose as image positions in pixels (x times 640, y times
480) with 3 pixels of tracking noise; every 5th clip is test, every 10th (from the 4th) dev:
141 / 20 / 40 clips, test sentences by the same signers. Trained as a new user would, with only
the width and kind set (``--set model.input_dim=6 --set data.feature_kind=custom-6``): the shipped
default, the TCN baseline with the same flags (and with the seed's six blocks), and with
``--with-seed`` the seed's own config (``configs/seed.yaml``, collapse stop off, as it ran before),
against the plain bidirectional GRU + CTC reference (:func:`common.recurrent_reference`) in the
same run.

    python benchmarks/bench_small_corpus.py [--out runs/bench_small] [--with-seed] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from common import REPO, decoder_table, method_wer, recurrent_reference, train_and_compare
from rich.console import Console
from rich.table import Table

FLAGS = ["model.input_dim=6", "data.feature_kind=custom-6"]
TRACKED = [15, 16, 0]  # MediaPipe pose landmarks: left wrist, right wrist, nose


def make_corpus(out: Path) -> Path:
    """The synthetic corpus reduced to tracked wrists and nose in pixels; its manifest."""
    from signlab.data.synthetic import CorpusSpec, generate_corpus

    full = generate_corpus(out / "full", CorpusSpec(train_signers=3, dev_signers=0, test_signers=0,
                                                    clips_per_signer=67, seed=11))
    rng = np.random.default_rng(0)
    (out / "tracked").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, row in enumerate(csv.DictReader(full.open())):
        pose = np.load(full.parent / row["features"])[:, :132].reshape(-1, 33, 4)
        points = pose[:, TRACKED, :2] * np.array([640.0, 480.0])
        points += rng.normal(0, 3.0, points.shape)
        np.save(out / "tracked" / f"{row['id']}.npy", points.reshape(len(pose), 6).astype(np.float32))
        split = "test" if i % 5 == 4 else "dev" if i % 10 == 3 else "train"
        rows.append({"id": row["id"], "split": split, "features": f"tracked/{row['id']}.npy",
                     "glosses": row["glosses"], "signer": row["signer"]})
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_small"))
    parser.add_argument("--set", action="append", default=[], help="extra override for every signlab run")
    parser.add_argument("--reference-epochs", type=int, default=60)
    parser.add_argument("--with-seed", action="store_true", help="also the seed's config (slow: up to 100 epochs)")
    args = parser.parse_args()
    out = args.out.resolve()
    manifest = out / "data" / "manifest.csv"
    if not manifest.exists():
        manifest = make_corpus(out / "data")
    configs = REPO / "configs"
    runs = {"signlab default (configs/hybrid.yaml)": (configs / "hybrid.yaml", []),
            "TCN + CTC, same flags": (configs / "hybrid.yaml", ["model.type=tcn"]),
            "TCN + CTC, the seed's 6 blocks": (configs / "hybrid.yaml", ["model.type=tcn", "model.num_encoder_layers=6"])}
    if args.with_seed:
        runs["the seed's config (configs/seed.yaml), before"] = (configs / "seed.yaml", ["training.collapse_patience=0"])
    results = {name: train_and_compare(REPO / "src", manifest, out / f"run{i}", config, [*FLAGS, *extra, *args.set])
               for i, (name, (config, extra)) in enumerate(runs.items())}
    reference = recurrent_reference(manifest, args.reference_epochs)
    (out / "results.json").write_text(json.dumps({"runs": results, "reference": reference}, indent=1))
    console = Console(width=160)
    summary = Table(title=f"small corpus ({manifest}): test WER %, same signers")
    for col in ("run", "ctc_beam", "attention", "default (dev-chosen)", "vs reference", "dev blank ratio from the end "
                "of warm-up, max", "epochs (best)", "train s"):
        summary.add_column(col, justify="left" if col == "run" else "right")
    for name, r in results.items():
        attention = method_wer(r, "test", "attention (beam") if "attention" in str(r["tables"]["test"]) else None
        after_warmup = r["dev_blank_ratio"][max(0, int(r["warmup_epochs"]) - 1):]
        summary.add_row(name, f"{method_wer(r, 'test', 'ctc_beam'):.2f}", "-" if attention is None else f"{attention:.2f}",
                        f"{r['default_test_wer']:.2f} ({r['chosen']})",
                        f"{100 * (r['default_test_wer'] / reference['test'] - 1):+.0f}%", f"{max(after_warmup):.3f}",
                        f"{len(r['dev_blank_ratio'])} ({r['best_epoch']})", f"{r['train_s']:.0f}")
    summary.add_row("plain BiGRU + CTC (reference: 2 x 256, Adam 1e-3)", "", "",
                    f"{reference['test']:.2f} (greedy, epoch {reference['epoch']})", "", "", "", f"{reference['train_s']:.0f}")
    console.print(summary)
    for name, r in results.items():
        console.print(decoder_table(name, r))


if __name__ == "__main__":
    main()
