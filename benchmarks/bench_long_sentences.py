"""Every decoding method on long sentences: 300 glosses, 8-15 glosses a sentence, unseen signers.

The synthetic signer with clauses joined into PHOENIX-like sentences (about 11 glosses each,
3,000 training clips from 10 signers, dev one signer, test two, none of them seen in training),
trained as a user would with ``configs/hybrid.yaml`` and the overrides below (the recipe of
issue 11's held-out benchmark), then ``signlab evaluate --decode all`` on dev and test: WER and
sub / del / ins of each method, with the decoding that training chose on dev marked. ``--tcn``
also trains the TCN baseline with the same flags and ``model.type=tcn``.

``--baseline REV`` first trains and evaluates with an earlier revision (checked out with ``git
worktree``, run from there) on the same corpus, so the table shows before and after.

    python benchmarks/bench_long_sentences.py [--out runs/bench_long] [--baseline REV] [--tcn] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from common import REPO, decoder_table, train_and_compare
from rich.console import Console

SPEC = dict(train_signers=10, dev_signers=1, test_signers=2, clips_per_signer=300, extra_nouns=254,
            sentence_glosses=(8, 15), seed=11)  # 46 base glosses + 254 nouns = 300
RECIPE = ["model.input_dim=null", "model.d_model=256", "model.num_encoder_layers=3", "model.num_decoder_layers=2",
          "training.batch_size=16", "training.lr=0.0005", "training.warmup_epochs=2", "training.accelerator=cpu",
          "data.max_frames=300"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_long"))
    parser.add_argument("--baseline", help="git revision to train and evaluate first, on the same corpus")
    parser.add_argument("--tcn", action="store_true", help="also the TCN baseline, same flags")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], help="extra override for this tree's training")
    args = parser.parse_args()
    from signlab.data.synthetic import CorpusSpec, generate_corpus

    out = args.out.resolve()
    manifest = out / "data" / "manifest.csv"
    if not manifest.exists():
        generate_corpus(out / "data", CorpusSpec(**SPEC))
    recipe = [*RECIPE, f"training.epochs={args.epochs}"]
    results = {}
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix="signlab-bench-long-") as tmp:
            base = Path(tmp) / "baseline"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.baseline], check=True,
                           capture_output=True)
            try:
                results[f"baseline {args.baseline}"] = train_and_compare(base / "src", manifest, out / "baseline",
                                                                        base / "configs" / "hybrid.yaml", recipe)
            finally:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
    config = REPO / "configs" / "hybrid.yaml"
    results["this tree"] = train_and_compare(REPO / "src", manifest, out / "this_tree", config, [*recipe, *args.set])
    if args.tcn:
        results["TCN + CTC, same flags"] = train_and_compare(REPO / "src", manifest, out / "tcn", config,
                                                              [*recipe, *args.set, "model.type=tcn"])
    (out / "results.json").write_text(json.dumps(results, indent=1))
    console = Console(width=160)
    for name, result in results.items():
        console.print(decoder_table(name, result))


if __name__ == "__main__":
    main()
