"""``signlab demo`` and ``signlab sentence demo``: the pipelines on synthetic signers, in minutes.

Generates the corpus, trains the Hybrid CTC + Attention model and the TCN + CTC baseline (and,
with ``--compare-augmentation``, the hybrid without augmentation) with the built-in ``demo``
config, evaluates each on two signers seen in neither training nor model selection, compares the
decoding methods on the main model, and writes ``summary.json`` with exactly the numbers it
prints (and ``dev_wer.png``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from signlab.config import builtin_config, load_config
from signlab.data.manifest import read_manifest
from signlab.data.synthetic import CorpusSpec, generate_corpus
from signlab.inference.recognizer import COMPARED_DECODERS, Recognizer, compare_decoders
from signlab.report import decoding_table, percent, plot_comparison
from signlab.report_page import write_report
from signlab.training.run import train

DEMO_CORPUS = CorpusSpec(train_signers=8, dev_signers=1, test_signers=2, clips_per_signer=60, seed=0)
DEMO_MODELS = {  # name -> (folder, overrides of the demo config)
    "hybrid": ("hybrid", []),
    "tcn (baseline)": ("tcn", ["model.type=tcn", "model.num_encoder_layers=3"]),  # the baseline as it always was
}
NO_AUGMENTATION = {"hybrid, no augmentation": ("hybrid_noaug", ["data.augmentation=false"])}


def run_demo(out: str | Path = "runs/demo", spec: CorpusSpec = DEMO_CORPUS, models=DEMO_MODELS, decoders=COMPARED_DECODERS,
             extra_overrides: tuple[str, ...] = (), console: Console | None = None) -> dict:
    console = console or Console()
    out = Path(out)
    console.print(f"[bold]signlab demo[/]: synthetic corpus of {spec.train_signers} training signers in {out / 'data'}")
    manifest = generate_corpus(out / "data", spec)
    rows, dirs = [], {}
    for name, (folder, overrides) in models.items():
        run_dir = dirs[name] = out / folder
        shutil.rmtree(run_dir, ignore_errors=True)  # the demo always starts afresh
        cfg = load_config(builtin_config("demo"), [*overrides, *extra_overrides])
        console.print(f"\n[bold]training {name}[/] ({cfg.model.type}, augmentation {'on' if cfg.data.augmentation else 'off'}) -> {run_dir}")
        train([manifest], cfg, run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows.append({
            "model": name, "folder": run_dir.name, "type": cfg.model.type, "augmentation": cfg.data.augmentation,
            "decoding": metrics["test"]["decoding"], "dev_wer": round(metrics["dev"]["wer"], 2),
            "test_wer": round(metrics["test"]["wer"], 2), "test_blank_ratio": round(metrics["test"]["blank_ratio"], 3),
            "epochs": metrics["epochs"], "best_epoch": metrics["best_epoch"], "train_time_s": metrics["train_time_s"],
            "parameters": metrics["parameters"],
        })
    main = dirs[next(iter(models))]
    test = [s for s in read_manifest(manifest) if s.split == "test"]
    decoding = compare_decoders(Recognizer.load(main), test, "test", decoders)["results"]
    plot_comparison({name: d / "metrics.jsonl" for name, d in dirs.items()}, out / "dev_wer.png")
    summary = {"corpus": asdict(spec), "test_split": f"{spec.test_signers} signers unseen in training and model selection",
               "models": rows, "decoding": {"model": main.name, "results": decoding}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    console.print(models_table(rows))
    console.print(decoding_table(decoding, f"decoding methods, {main.name} model, test split"))
    console.print(f"written: {out / 'summary.json'}, {out / 'dev_wer.png'}; curves and per-sample hypotheses in each "
                  "model's folder")
    say_report(write_report(list(dirs.values()), out / "report.html", manifest), console)
    return summary


def say_report(page: Path, console: Console) -> None:
    console.print(f"report: {page} ({page.stat().st_size / 1024:.0f} kB): open it in a browser "
                  "(or `signlab report RUN ... --out page.html` for any runs)")


def models_table(rows: list[dict]) -> Table:
    table = Table(title="gloss recognition on the synthetic signer (test: unseen signers)")
    for col in ("model", "decoding", "dev WER %", "test WER %", "test blank ratio", "epochs (best, from 0)", "train s"):
        table.add_column(col, justify="left" if col in ("model", "decoding") else "right")
    for r in rows:
        table.add_row(r["model"], r["decoding"], f"{r['dev_wer']:.2f}", f"{r['test_wer']:.2f}",
                      f"{r['test_blank_ratio']:.3f}", f"{r['epochs']} ({r['best_epoch']})", f"{r['train_time_s']:.0f}")
    return table


# 20 pairs of sentences that differ in one sign; the test signers also sign 15 sentences the phrase book does not hold
SENTENCE_CORPUS = CorpusSpec(train_signers=8, dev_signers=2, test_signers=2, clips_per_signer=40, sentence_pool=40,
                             near_duplicates=True, unknown_sentences=15, seed=5)


def run_sentence_demo(out: str | Path = "runs/sentence_demo", spec: CorpusSpec = SENTENCE_CORPUS,
                      extra_overrides: tuple[str, ...] = (), console: Console | None = None) -> dict:
    """Synthetic sentence corpus (every signer signs the same sentences) -> train -> export the
    encoder to ONNX -> evaluate on two unseen signers with the PyTorch and ONNX Runtime engines."""
    import time

    from signlab.config import SentenceConfig
    from signlab.export import export_onnx, onnx_runner, verify
    from signlab.inference.calibration import describe
    from signlab.inference.engine import InferenceEngine, load_sentence_bundle
    from signlab.inference.sentence_eval import evaluate_sentence_samples

    console = console or Console()
    out = Path(out)
    cfg = load_config(builtin_config("sentence_demo"), list(extra_overrides), SentenceConfig)  # a bad --set fails here
    console.print(f"[bold]signlab sentence demo[/]: {spec.sentence_pool} sentences signed by "
                  f"{spec.train_signers + spec.dev_signers + spec.test_signers} synthetic signers in {out / 'data'}")
    manifest = generate_corpus(out / "data", spec)
    run = out / "model"
    shutil.rmtree(run, ignore_errors=True)
    train([manifest], cfg, run)
    bundle = load_sentence_bundle(run)
    onnx_diff = verify(bundle.model, onnx_runner(export_onnx(bundle.model, run / "encoder.onnx")))
    test = [s for s in read_manifest(manifest) if s.split == "test"]
    rows = []
    for backend in ("torch", "onnx"):
        engine = InferenceEngine.from_bundle(bundle, run, backend)
        r = evaluate_sentence_samples(bundle, engine, test, "test",  # the torch one in the run, for its report
                                      run / "test_results.json" if backend == "torch" else out / f"test_{backend}.json")
        clips = [bundle.prep(np.load(s.features), s.where) for s in test[:20]]
        started = time.perf_counter()
        for c in clips:
            engine.predict_clip(c)
        latency = (time.perf_counter() - started) / len(clips)
        rows.append({"backend": backend, **{k: r["retrieval"][k] for k in ("top1", "mrr")},
                     **{k: r["decisions"][k] for k in ("engine_top1", "accept_rate", "accepted_accuracy", "unknown_rejected",
                                                        "known_clips", "unknown_clips", "reasons")},
                     "wer": r["translation"]["wer"], "bleu": r["translation"]["bleu"], "exact": r["translation"]["exact"],
                     "ms_per_query": round(1000 * latency, 2), "clips": r["n"]})
    metrics = json.loads((run / "metrics.json").read_text())
    summary = {"corpus": asdict(spec), "test_split": f"{spec.test_signers} signers unseen in training and calibration",
               "calibration": metrics.get("calibration"), "onnx_max_difference": onnx_diff,
               "train_time_s": metrics["train_time_s"], "epochs": metrics["epochs"], "results": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    console.print(sentence_table(rows))
    c = metrics.get("calibration")
    console.print(f"thresholds calibrated on the dev signers: {describe(c) if c else 'none'}; ONNX encoder vs PyTorch: max "
                  f"difference {onnx_diff:.1e}; written: {out / 'summary.json'}, {run / 'curves.png'}")
    say_report(write_report([run], out / "report.html"), console)
    return summary


def sentence_table(rows: list[dict]) -> Table:
    table = Table(title="sentence retrieval and translation, test: unseen signers, known and unknown sentences")
    for col in ("engine", "retrieval top-1", "MRR", "engine top-1", "known accepted", "right when accepted",
                "unknown rejected", "WER %", "BLEU", "ms / query"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for r in rows:
        table.add_row(r["backend"], f"{r['top1']:.3f}", f"{r['mrr']:.3f}", f"{r['engine_top1']:.3f}", percent(r["accept_rate"]),
                      percent(r["accepted_accuracy"]), percent(r.get("unknown_rejected")), f"{r['wer']:.1f}",
                      f"{r['bleu']:.1f}", f"{r['ms_per_query']:.1f}")
    return table
