"""The sentence engine in the open set: known sentences, near-duplicates, sentences it must refuse.

Reads a sentence run and its corpus (default: `make sentence-demo`'s: 20 pairs of phrase-book
sentences that differ in one sign, 8 training signers in the bank, 2 dev signers to calibrate on, 2
unseen test signers who also sign 15 sentences the phrase book does not hold). For each engine
setting (DTW frames, DTW weight, candidates re-ranked), the bank is rebuilt from the training
clips, the thresholds are calibrated on the dev clips with their sentences left out in turn
(leave-sentences-out: the negatives), and the test clips are decided. The reference: plain DTW
nearest neighbour on the body-normalised hand and wrist landmarks, no learning, its distance
threshold and margin calibrated the same way.

A second table: the test signers filmed from another angle (``--camera-yaw`` degrees: every
landmark turned about the vertical axis through the shoulders), decided with the thresholds
calibrated on dev, then with thresholds re-calibrated on a handful of that camera's clips
(``--recalibrate-clips``, of known sentences, each also with its sentence left out), and scored
on the other test clips: what `signlab sentence index RUN --calibrate-on SPLIT` does for a new
set-up.

With ``--gloss-run`` (a gloss recogniser trained on the same manifest: `signlab train -m
runs/sentence_demo/data/manifest.csv --config configs/demo.yaml --out runs/sentence_demo/glosses`),
two more rows measure gloss evidence: a clip is answered with the phrase-book sentence whose glosses
its recognised glosses match exactly, and refused when none does, with CTC greedy decoding and
with the recogniser's default (joint) decoding.

    python benchmarks/bench_open_set.py [--run runs/sentence_demo/model] [--manifest runs/sentence_demo/data/manifest.csv]
                                        [--gloss-run runs/sentence_demo/glosses]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [(16, 0.65, 5), (32, 0.4, 5), (32, 0.1, 10), (64, 0.2, 10)]  # (frames, cosine weight alpha, top-k); first: default


def hands(clip: np.ndarray) -> np.ndarray:
    """(T, 132): both hands' 21 points and the wrists, x y z, in shoulder widths (missing: zeros)."""
    from signlab import pose

    pts = pose.points(clip)
    idx = [pose.LEFT_WRIST, pose.RIGHT_WRIST, *range(pose.POSE_POINTS, pose.POSE_POINTS + 2 * pose.HAND_POINTS)]
    return pts[:, idx].reshape(len(clip), -1).astype(np.float64)


def dtw_reference(train, queries, truths_train, leave_out):
    """Per query: the nearest training clip's sentence by DTW on the hands, its score (minus the
    distance per step) and the margin to the next sentence's best; ``leave_out``: per query, a
    sentence to ignore (or None)."""
    from dtaidistance import dtw_ndim

    series = [np.ascontiguousarray(s) for s in train + queries]
    n = len(train)
    block = ((0, n), (n, len(series)))  # rows: training clips, columns: queries (the upper triangle)
    d = dtw_ndim.distance_matrix_fast(series, block=block, inner_dist="euclidean", parallel=True)
    rows = []
    for q in range(len(queries)):
        dist = d[:n, n + q] / np.array([len(train[i]) + len(queries[q]) for i in range(n)])
        best: dict[str, float] = {}
        for i in np.argsort(dist):
            if truths_train[i] != leave_out[q]:
                best.setdefault(truths_train[i], float(dist[i]))
        ranked = sorted(best.items(), key=lambda kv: kv[1])
        gap = ranked[1][1] - ranked[0][1] if len(ranked) > 1 else np.nan
        rows.append((ranked[0][0], -ranked[0][1], gap))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "sentence_demo" / "model")
    parser.add_argument("--manifest", type=Path, default=None, help="default: the run's ../data/manifest.csv")
    parser.add_argument("--gloss-run", type=Path, default=None, help="a gloss bundle trained on the same manifest")
    parser.add_argument("--camera-yaw", type=float, default=35.0, help="degrees the new camera is turned")
    parser.add_argument("--recalibrate-clips", type=int, default=12, help="clips of the new set-up to re-calibrate on")
    args = parser.parse_args()
    manifest = args.manifest or args.run.parent / "data" / "manifest.csv"
    if not (args.run / "bank.npz").is_file():
        raise SystemExit(f"{args.run} is not a sentence bundle: run `make sentence-demo` first, or pass --run")
    logging.disable(logging.WARNING)
    from signlab.data.features import scan_split
    from signlab.data.manifest import read_manifest
    from signlab.data.sentence import has_text, sentence_key
    from signlab.inference.calibration import calibrated, choose_thresholds
    from signlab.inference.engine import InferenceEngine, load_sentence_bundle
    from signlab.inference.sentence_eval import decision_metrics, decision_rates

    bundle = load_sentence_bundle(args.run)
    prep, samples = bundle.prep, read_manifest(manifest)
    split = {name: scan_split([s for s in samples if s.split == name], prep, name, check=has_text, report=False)
             for name in ("train", "dev", "test")}
    truths = {name: [sentence_key(s) for s in split[name].samples] for name in split}
    clips = {name: split[name].all_features(prep) for name in split}
    book = set(truths["train"])
    known = np.array([t in book for t in truths["test"]])
    results, decided = [], None  # decided: the default engine's predictions
    for frames, alpha, topk in SETTINGS:
        cfg = bundle.config.model_copy(deep=True)
        cfg.engine.dtw.frames, cfg.engine.dtw.alpha, cfg.engine.dtw.topk = frames, alpha, topk
        engine = InferenceEngine.build(bundle.model, split["train"], prep, cfg)
        engine = engine.with_config(calibrated(engine, split["dev"], prep)[0])
        enc = engine.encode(clips["test"])
        started = time.perf_counter()
        preds = engine.decide_encoded(clips["test"], enc)
        ms = 1000 * (time.perf_counter() - started) / len(preds)
        results.append((f"signlab engine: DTW {frames} frames, cosine weight {alpha}, top {topk}"
                        + (" (default)" if (frames, alpha, topk) == SETTINGS[0] else ""),
                        decision_metrics(preds, truths["test"], known), ms))
        if (frames, alpha, topk) == SETTINGS[0]:
            decided = preds

    # the reference: DTW nearest neighbour on the hands, thresholds calibrated on dev the same way
    train_h, started = [hands(c) for c in clips["train"]], time.perf_counter()
    cal = {}
    for leave in (False, True):
        rows = dtw_reference(train_h, [hands(c) for c in clips["dev"]], truths["train"],
                             truths["dev"] if leave else [None] * len(clips["dev"]))
        cal[leave] = {"top": np.array([r[1] for r in rows]), "gap": np.array([r[2] for r in rows]),
                      "gates": np.ones(len(rows), bool), "right": np.array([r[0] == t and not leave
                                                                            for r, t in zip(rows, truths["dev"])])}
    t, m, _ = choose_thresholds(cal[False], cal[True], bundle.config.engine.target_precision,
                                bundle.config.engine.target_rejection)
    rows = dtw_reference(train_h, [hands(c) for c in clips["test"]], truths["train"], [None] * len(clips["test"]))
    ms = 1000 * (time.perf_counter() - started) / (len(clips["dev"]) * 2 + len(clips["test"]))
    right = np.array([r[0] == truth for r, truth in zip(rows, truths["test"])])
    accepted = np.array([r[1] >= t and (not np.isfinite(r[2]) or r[2] >= m) for r in rows])
    results.append(("plain DTW nearest neighbour on the hands (no learning)", decision_rates(right, accepted, known), ms))

    if args.gloss_run is not None:
        from signlab.inference.recognizer import Recognizer

        book = {}
        for sample in split["train"].samples:
            book.setdefault(tuple(sample.glosses), sentence_key(sample))
        for method in ("ctc_greedy", None):
            recognizer = Recognizer.load(args.gloss_run, method=method)
            started = time.perf_counter()
            found = [book.get(tuple(t.glosses)) for t in recognizer.transcribe_prepared(clips["test"])]
            ms = 1000 * (time.perf_counter() - started) / len(found)
            right = np.array([f == t for f, t in zip(found, truths["test"])])
            accepted = np.array([f is not None for f in found])
            results.append((f"gloss recogniser ({recognizer.decoding.method}): exact match with a phrase-book sentence",
                            decision_rates(right, accepted, known), ms))
            if method == "ctc_greedy":  # the default engine, accepting only where the glosses agree with it
                agreed = [replace(p, accepted=p.accepted and p.sentence == f) for p, f in zip(decided, found)]
                results.append(("default engine, accepted only where the CTC glosses match its sentence",
                                decision_metrics(agreed, truths["test"], known), ms))

    table = Table(title=f"{args.run}: {known.sum()} test clips of phrase-book sentences, {(~known).sum()} of sentences "
                        f"outside it, unseen signers; thresholds calibrated on dev with sentences left out; "
                        f"{os.cpu_count()} CPU cores")
    for col in ("decider", "known top-1", "known accepted", "right when accepted", "unknown rejected", "ms / query"):
        table.add_column(col, justify="left" if col == "decider" else "right")

    def pct(v):
        return "-" if v is None else f"{v:.1%}"

    for name, d, ms in results:
        table.add_row(name, f"{d['engine_top1']:.3f}", pct(d["accept_rate"]), pct(d["accepted_accuracy"]),
                      pct(d["unknown_rejected"]), f"{ms:.1f}")
    Console(width=180).print(table)
    print("targets: known top-1 >= 0.99, right when accepted >= 95%, unknown rejected >= 90%")

    # a new camera: the test signers seen from another angle; re-calibration on a handful of its clips
    from signlab.data.features import ScanResult

    turned = [yawed(c, args.camera_yaw) for c in clips["test"]]
    engine = InferenceEngine.build(bundle.model, split["train"], prep, bundle.config)
    engine = engine.with_config(calibrated(engine, split["dev"], prep)[0])
    rng = np.random.default_rng(0)
    few = rng.choice(np.flatnonzero(known), args.recalibrate_clips, replace=False)
    rest = np.setdiff1d(np.arange(len(turned)), few)
    held = ScanResult([split["test"].samples[i] for i in few], [len(turned[i]) for i in few], [turned[i] for i in few])
    rows = []
    for name, eng in (("thresholds from dev (the original camera)", engine),
                      (f"re-calibrated on {args.recalibrate_clips} clips of the new camera",
                       engine.with_config(calibrated(engine, held, prep)[0]))):
        for what, idx in (("original camera", rest), (f"camera turned {args.camera_yaw:g} degrees", rest)):
            use = [clips["test"][i] for i in idx] if what == "original camera" else [turned[i] for i in idx]
            preds = eng.decide_encoded(use, eng.encode(use))
            rows.append((name, what, decision_metrics(preds, [truths["test"][i] for i in idx], known[idx])))
    camera = Table(title=f"a new camera set-up: the {len(rest)} test clips not used to re-calibrate")
    for col in ("thresholds", "clips", "known top-1", "known accepted", "right when accepted", "unknown rejected"):
        camera.add_column(col, justify="left" if col in ("thresholds", "clips") else "right")
    for name, what, d in rows:
        camera.add_row(name, what, f"{d['engine_top1']:.3f}", pct(d["accept_rate"]), pct(d["accepted_accuracy"]),
                       pct(d["unknown_rejected"]))
    Console(width=180).print(camera)


def yawed(clip: np.ndarray, degrees: float) -> np.ndarray:
    """A preprocessed (body-relative) pose clip as a camera turned ``degrees`` about the vertical
    axis would see it (the augmenter's rotation, so hands and face keep their shape)."""
    from signlab import pose
    from signlab.data.augment.pose import rotate

    present = pose.point_mask(clip)[..., None]
    return pose.with_points(clip, np.where(present, rotate(pose.points(clip), 0.0, np.radians(degrees), 0.0), 0))

if __name__ == "__main__":
    main()
