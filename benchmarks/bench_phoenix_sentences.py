"""Real sentences, new signers: PHOENIX-2014-T's gloss sentences signed by the synthetic signer.

The sentences are the corpus's own (``../shared/data/real/phoenix-2014-t``, its annotation files as
distributed), kept where every gloss is among the 300 most frequent of its train split: 7.3 glosses
a sentence on average, up to 27, dev and test sentences mostly never seen in training, as in the
corpus. Six synthetic signers sign 3,000 training sentences; one new signer signs the dev split,
another the test split, with more signer-to-signer variation than the demo (``signer_variation``
1.5: bodies, habits and each signer's own form of every sign). Trained with ``configs/hybrid.yaml``
and the recipe below (the held-out benchmark's), the TCN baseline with the same flags and
``model.type=tcn``, and the plain bidirectional GRU + CTC reference, in one run; every decoding
method on dev and test. One new signer is a small sample of new signers (a config can gain on the
test signer what it loses on the dev signer), so each run is also scored on the test sentences
signed by ``--more-signers`` more new signers (default 4), per signer, with CTC beam search, the
attention decoder alone and the default.

    python benchmarks/bench_phoenix_sentences.py [--out runs/bench_phoenix] [--set KEY=VALUE ...] [--more-signers 4]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from common import REPO, decoder_table, method_wer, recurrent_reference, signlab, train_and_compare
from rich.console import Console
from rich.table import Table

PHOENIX = REPO.parent / "shared" / "data" / "real" / "phoenix-2014-t" / "annotations" / "manual"
RECIPE = ["model.input_dim=null", "model.d_model=256", "model.num_encoder_layers=3", "model.num_decoder_layers=2",
          "training.batch_size=16", "training.lr=0.0005", "training.warmup_epochs=2", "training.epochs=20",
          "training.accelerator=cpu", "data.max_frames=300"]


def phoenix_sentences(vocabulary: int = 300, train_clips: int = 3000, seed: int = 11) -> dict:
    """Split -> the PHOENIX-2014-T sentences whose glosses are all among the ``vocabulary`` most
    frequent of train (train: ``train_clips`` of them, drawn at random)."""
    from signlab.data.grammar import Sentence
    from signlab.data.manifest import read_manifest

    rows = {s: read_manifest(PHOENIX / f"PHOENIX-2014-T.{s}.corpus.csv") for s in ("train", "dev", "test")}
    top = {g for g, _ in Counter(g for r in rows["train"] for g in r.glosses).most_common(vocabulary)}
    kept = {s: [Sentence(r.glosses, r.text) for r in rs if r.glosses and set(r.glosses) <= top] for s, rs in rows.items()}
    pick = np.random.default_rng(seed).permutation(len(kept["train"]))[:train_clips]
    kept["train"] = [kept["train"][i] for i in sorted(pick)]
    return kept


SPEC = dict(train_signers=6, dev_signers=1, test_signers=1, clips_per_signer=500, signer_variation=1.5, seed=11)


def more_signers(data: Path, count: int) -> Path:
    """The corpus's test sentences signed by ``count`` more new signers (the signers after the
    corpus's own, as the corpus would have them): a manifest of test rows in ``data``."""
    from signlab.data.synthetic import CorpusSpec, generate_corpus

    if (data / "manifest.csv").exists():
        return data / "manifest.csv"
    sentences = phoenix_sentences()
    tests = sentences["test"][: SPEC["clips_per_signer"]]  # what the test signer signs, for every test signer
    first = SPEC["train_signers"] + SPEC["dev_signers"] + SPEC["test_signers"]
    return generate_corpus(data, CorpusSpec(**{**SPEC, "test_signers": SPEC["test_signers"] + count}),
                           {**sentences, "test": tests * (SPEC["test_signers"] + count)}, range(first, first + count))


def per_signer(run: Path, manifest: Path, has_decoder: bool) -> dict[str, dict[str, float]]:
    """Decoding -> WER % over all the clips of ``manifest`` and per signer (``signlab evaluate``)."""
    from collections import defaultdict

    from signlab.metrics import word_error_rate

    wers = {}
    for method in ("ctc_beam", "attention", "default") if has_decoder else ("ctc_beam", "default"):
        out = run / f"more_signers_{method}.json"
        if not out.is_file():
            signlab(REPO / "src", "evaluate", str(run), "-m", str(manifest), "--split", "test", "--output", str(out),
                    *([] if method == "default" else ["--decode", method]))
        clips = defaultdict(list)
        for line in (run / json.loads(out.read_text())["hypotheses"]).read_text().splitlines():
            clip = json.loads(line)
            clips[clip["signer"]].append((clip["reference"], clip["hypothesis"]))
        wers[method] = {"all": json.loads(out.read_text())["wer"],
                        **{s: word_error_rate(*zip(*pairs)).wer for s, pairs in sorted(clips.items())}}
    return wers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_phoenix"))
    parser.add_argument("--set", action="append", default=[], help="extra override for the signlab runs")
    parser.add_argument("--reference-epochs", type=int, default=20)
    parser.add_argument("--no-tcn", action="store_true", help="skip the TCN baseline")
    parser.add_argument("--more-signers", type=int, default=4, help="new signers of the test sentences besides the test split's")
    args = parser.parse_args()
    if not PHOENIX.is_dir():
        raise SystemExit(f"{PHOENIX} not found: this benchmark reads the real PHOENIX-2014-T annotation files")
    from signlab.data.synthetic import CorpusSpec, generate_corpus

    out = args.out.resolve()
    manifest = out / "data" / "manifest.csv"
    if not manifest.exists():
        generate_corpus(out / "data", CorpusSpec(**SPEC), sentences=phoenix_sentences())
    config = REPO / "configs" / "hybrid.yaml"
    runs = {"hybrid": []} if args.no_tcn else {"hybrid": [], "TCN + CTC, same flags": ["model.type=tcn"]}
    results = {name: train_and_compare(REPO / "src", manifest, out / f"run{i}", config, [*RECIPE, *extra, *args.set])
               for i, (name, extra) in enumerate(runs.items())}
    if args.more_signers:
        more = more_signers(out / f"more-signers-{args.more_signers}", args.more_signers)
        for i, (name, r) in enumerate(results.items()):
            r["more_signers"] = per_signer(out / f"run{i}", more, name == "hybrid")
            table = Table(title=f"{name}: the test sentences by {args.more_signers} more new signers, WER %")
            for col in ("decoding", "all", *(s for s in r["more_signers"]["ctc_beam"] if s != "all")):
                table.add_column(col, justify="left" if col == "decoding" else "right")
            for method, wers in r["more_signers"].items():
                table.add_row(method, *(f"{w:.2f}" for w in wers.values()))
            Console(width=160).print(table)
    reference = recurrent_reference(manifest, args.reference_epochs)
    (out / "results.json").write_text(json.dumps({"runs": results, "reference": reference}, indent=1))
    console = Console(width=160)
    summary = Table(title="PHOENIX-2014-T sentences, synthetic signers, unseen dev / test signers: test WER %")
    for col in ("run", "ctc_beam", "attention beam", "attention / ctc_beam", "default (dev-chosen)",
                "default vs ctc_beam", "train s"):
        summary.add_column(col, justify="left" if col == "run" else "right")
    for name, r in results.items():
        beam = method_wer(r, "test", "ctc_beam")
        has_decoder = any(x["decoder"].startswith("attention") for x in r["tables"]["test"]["results"])
        att = method_wer(r, "test", "attention (beam") if has_decoder else None
        summary.add_row(name, f"{beam:.2f}", "-" if att is None else f"{att:.2f}", "-" if att is None else f"{att / beam:.2f}x",
                        f"{r['default_test_wer']:.2f} ({r['chosen']})", f"{100 * (r['default_test_wer'] / beam - 1):+.0f}%",
                        f"{r['train_s']:.0f}")
    summary.add_row("plain BiGRU + CTC (reference)", "", "", "", f"{reference['test']:.2f} (greedy)", "",
                    f"{reference['train_s']:.0f}")
    console.print(summary)
    for name, r in results.items():
        console.print(decoder_table(name, r))
        console.print(f"{name}: dev loss by epoch {r['dev_loss']}")


if __name__ == "__main__":
    main()
