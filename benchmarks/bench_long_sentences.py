"""Every decoding method on long sentences: 300 glosses, 8-15 glosses a sentence, unseen signers.

The synthetic signer with clauses joined into PHOENIX-like sentences (about 11 glosses each,
3,000 training clips from 10 signers, dev one signer, test two, none of them seen in training),
trained as a user would with ``configs/hybrid.yaml`` and the overrides below (the recipe of
issue 11's held-out benchmark), then ``signlab evaluate --decode all`` on dev and test: WER and
sub / del / ins of each method, with the decoding that training chose on dev marked.

``--baseline REV`` first trains and evaluates with an earlier revision (checked out with ``git
worktree``, run from there) on the same corpus, so the table shows before and after.

    python benchmarks/bench_long_sentences.py [--out runs/bench_long] [--baseline REV] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
SPEC = dict(train_signers=10, dev_signers=1, test_signers=2, clips_per_signer=300, extra_nouns=254,
            sentence_glosses=(8, 15), seed=11)  # 46 base glosses + 254 nouns = 300
RECIPE = ["model.input_dim=null", "model.d_model=256", "model.num_encoder_layers=3", "model.num_decoder_layers=2",
          "training.batch_size=16", "training.lr=0.0005", "training.warmup_epochs=2", "training.accelerator=cpu",
          "data.max_frames=300"]


def signlab(src: Path, *args: str) -> None:
    """``signlab ARGS`` with the package found in ``src``; stops the benchmark if it fails."""
    done = subprocess.run([sys.executable, "-m", "signlab.cli", *args], env={**os.environ, "PYTHONPATH": str(src)},
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"signlab {' '.join(args)} failed ({src}):\n{done.stderr[-3000:]}")


def train_and_compare(src: Path, manifest: Path, run: Path, epochs: int, extra: list[str]) -> dict:
    started = time.perf_counter()
    signlab(src, "train", "-m", str(manifest), "--config", str(src.parent / "configs" / "hybrid.yaml"), "--out", str(run),
            *(a for o in [*RECIPE, f"training.epochs={epochs}", *extra] for a in ("--set", o)))
    train_s = time.perf_counter() - started
    tables = {}
    for split in ("dev", "test"):
        out = run / f"decode_all_{split}.json"
        signlab(src, "evaluate", str(run), "-m", str(manifest), "--split", split, "--decode", "all", "--output", str(out))
        tables[split] = json.loads(out.read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    chosen = metrics.get("decoding_search", {}).get("chosen") or metrics["test"]["decoding"]
    return {"tables": tables, "train_s": train_s, "chosen": chosen, "best_epoch": metrics.get("best_epoch"),
            "default_test_wer": metrics["test"]["wer"]}


def table(name: str, result: dict) -> Table:
    t = Table(title=f"{name}: trained in {result['train_s']:.0f} s (best epoch {result['best_epoch']}); "
                    f"default decoding {result['chosen']}: test WER {result['default_test_wer']:.2f}")
    for col in ("decoding", "test WER %", "sub / del / ins", "dev WER %", "test decode s"):
        t.add_column(col, justify="left" if col == "decoding" else "right")
    dev = {r["decoder"]: r for r in result["tables"]["dev"]["results"]}
    for r in result["tables"]["test"]["results"]:
        t.add_row(r["decoder"], f"{r['wer']:.2f}", f"{r['sub']} / {r['del']} / {r['ins']}", f"{dev[r['decoder']]['wer']:.2f}",
                  f"{r['decode_seconds']:.1f}")
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_long"))
    parser.add_argument("--baseline", help="git revision to train and evaluate first, on the same corpus")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], help="extra override for this tree's training")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from signlab.data.synthetic import CorpusSpec, generate_corpus

    out = args.out.resolve()
    manifest = out / "data" / "manifest.csv"
    if not manifest.exists():
        generate_corpus(out / "data", CorpusSpec(**SPEC))
    results = {}
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix="signlab-bench-long-") as tmp:
            base = Path(tmp) / "baseline"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.baseline], check=True,
                           capture_output=True)
            try:
                results[f"baseline {args.baseline}"] = train_and_compare(base / "src", manifest, out / "baseline",
                                                                        args.epochs, [])
            finally:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
    results["this tree"] = train_and_compare(REPO / "src", manifest, out / "this_tree", args.epochs, args.set)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    console = Console(width=160)
    for name, result in results.items():
        console.print(table(name, result))


if __name__ == "__main__":
    main()
