"""A training epoch's reads from a packed store against the loose ``.npy`` files, on 100,000 clips.

A synthetic corpus of N clips (random features, 16-64 frames of 540 values each, three glosses;
the corpus is made once and kept in ``--data``) is written as loose ``.npy`` files with a manifest,
then packed with ``signlab pack``. Each path is then run in its own process, as ``signlab train``
runs it: the manifest or store read and scanned (``prepare_gloss_data``), the training loader built
(length-bucketed batches of 32), and one epoch read through it. Measured per path: start-up (to the
first batch), clips/s of the epoch's feature reads alone and of its whole batches (collation and
targets included), the files opened during the epoch (Python's audit hook), and the process's
resident memory at the start, peak and end of the epoch. ``cold``: the source's files are evicted
from the page cache (``posix_fadvise(DONTNEED)``; dropping the whole cache needs privileges) before
start-up and before each pass over the epoch, as for a corpus larger than memory or on a network
file system; ``warm``: the source's files read once before start-up, so that all of it is in the page
cache (the loose files' scan would otherwise warm them and not the store).

    python benchmarks/bench_store.py [--clips 100000] [--data /tmp/signlab-bench-store] [--dtype float16] [--cache-gb 2]

``--demo`` instead trains the demo's hybrid (``signlab demo``'s corpus and config, seed 42) from its
manifest, from a float32 store and from a float16 store of it, and prints their dev and test WER.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import REPO
from rich.console import Console
from rich.table import Table

DIM, GLOSSES = 540, 100


def make_corpus(data: Path, clips: int) -> Path:
    """``clips`` loose clips and their manifest (80% train, 10% dev, 10% test); kept for later runs."""
    manifest = data / "manifest.csv"
    if manifest.is_file():
        return manifest
    rng = np.random.default_rng(0)
    (data / "clips").mkdir(parents=True, exist_ok=True)
    rows = ["id,split,features,feature_kind,glosses"]
    lengths = rng.integers(16, 65, clips)
    for i, n in enumerate(lengths):
        name = f"clips/{i // 1000:03d}/{i:06d}.npy"
        (data / name).parent.mkdir(exist_ok=True)
        np.save(data / name, rng.standard_normal((n, DIM), dtype=np.float32))
        split = "train" if i % 10 < 8 else ("dev" if i % 10 == 8 else "test")
        rows.append(f"c{i:06d},{split},{name},custom-{DIM},{' '.join(f'G{g}' for g in rng.integers(0, GLOSSES, 3))}")
        if i % 10000 == 9999:
            print(f"  written {i + 1} clips", file=sys.stderr)
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache, so the next read comes from the disk."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(paths: list[Path]) -> None:
    """Read these files once, so that the next reads come from the page cache."""
    for p in filter(Path.is_file, paths):
        with open(p, "rb", buffering=0) as f:
            while f.read(1 << 24):
                pass


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one_epoch(source: str, cold: bool, cache_gb: float) -> dict:
    """In this process: ``source`` (manifest or store) through training's data path, one epoch read
    (``cold``: its files evicted from the page cache before start-up and again before the epoch)."""
    sys.path.insert(0, str(REPO / "src"))
    from signlab.config import load_config
    from signlab.data.manifest import read_manifests
    from signlab.training.gloss import GlossDataModule, prepare_gloss_data

    opened = [0]
    sys.addaudithook(lambda event, args: event == "open" and opened.__setitem__(0, opened[0] + 1))
    cfg = load_config(REPO / "configs" / "hybrid.yaml", [f"model.input_dim={DIM}", f"data.feature_kind=custom-{DIM}",
                                                         "data.augmentation=false", "training.batch_size=32",
                                                         f"data.cache_gb={cache_gb}"])
    files = sorted({s.features for s in read_manifests([source])})
    (evict if cold else warm)([*files, Path(source)])
    start = time.perf_counter()
    data = prepare_gloss_data(read_manifests([source]), cfg)
    loader = GlossDataModule(data).train_dataloader()
    batches = iter(loader)
    next(batches)
    startup = time.perf_counter() - start
    train = data.splits["train"]
    order = [i for batch in loader.batch_sampler for i in batch]
    if cold:
        evict(files)  # the scan of loose files has just read them all
    opened[0], rss, peak = 0, rss_mib(), 0.0
    start = time.perf_counter()
    for n, i in enumerate(order):
        train.features(i, data.prep)
        if n % 2000 == 0:
            peak = max(peak, rss_mib())
    reads = time.perf_counter() - start
    opened_in_epoch = opened[0]
    start = time.perf_counter()
    if cold:
        evict(files)
    for _ in loader:
        pass
    whole = time.perf_counter() - start
    return {"startup_s": startup, "clips": len(order), "read_clips_s": len(order) / reads, "batch_clips_s": len(order) / whole,
            "files_opened": opened_in_epoch, "rss_start": rss, "rss_peak": max(peak, rss_mib()), "rss_end": rss_mib(),
            "cached_in_memory": train.arrays is not None}


def run(source: Path, cold: bool, cache_gb: float) -> dict:
    done = subprocess.run([sys.executable, __file__, "--epoch", str(source), "--cache-gb", str(cache_gb),
                           *(["--cold"] if cold else [])],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"epoch over {source} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def demo(out: Path) -> None:
    """The demo's hybrid from the manifest and from stores of it: the same WER (float32), and float16's."""
    sys.path.insert(0, str(REPO / "src"))
    from signlab.config import builtin_config, load_config
    from signlab.data.store import pack
    from signlab.data.synthetic import generate_corpus
    from signlab.demo import DEMO_CORPUS
    from signlab.training.run import train

    manifest = generate_corpus(out / "data", DEMO_CORPUS)
    sources = {"manifest": manifest, "store float32": pack([manifest], out / "store32"),
               "store float16": pack([manifest], out / "store16", dtype="float16")}
    table = Table(title="the demo's hybrid, seed 42, trained from each source")
    for col in ("source", "dev WER %", "test WER %", "best epoch", "train s"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for name, source in sources.items():
        run_dir = out / name.replace(" ", "_")
        if not (run_dir / "metrics.json").is_file():
            train([source], load_config(builtin_config("demo"), ["training.seed=42"]), run_dir, progress=False)
        m = json.loads((run_dir / "metrics.json").read_text())
        table.add_row(name, f"{m['dev']['wer']:.2f}", f"{m['test']['wer']:.2f}", str(m["best_epoch"]),
                      f"{m['train_time_s']:.0f}")
    Console(width=120).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=Path("/tmp/signlab-bench-store"))
    parser.add_argument("--dtype", default="float32", help="the store's dtype")
    parser.add_argument("--cache-gb", type=float, default=2.0,
                        help="data.cache_gb: a split smaller than this is held in memory (0: read every epoch)")
    parser.add_argument("--demo", action="store_true", help="the demo's WER from its manifest and from stores")
    parser.add_argument("--epoch", help=argparse.SUPPRESS)  # internal: one epoch in this process
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epoch:
        print(json.dumps(one_epoch(args.epoch, args.cold, args.cache_gb)))
        return
    if args.demo:
        demo(args.data / "demo")
        return
    data = args.data / str(args.clips)
    started = time.perf_counter()
    manifest = make_corpus(data, args.clips)
    print(f"corpus: {args.clips} clips in {data} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    store = data / f"store-{args.dtype}"
    started = time.perf_counter()
    if not (store / "index.json").is_file():
        subprocess.run([sys.executable, "-m", "signlab.cli", "pack", str(manifest), "--out", str(store), "--dtype", args.dtype],
                       check=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        print(f"packed in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    loose_files = sorted((data / "clips").rglob("*.npy"))
    shards = sorted(store.glob("shard-*.bin"))
    results = {}
    for cache in ("cold", "warm"):
        for name, source in (("loose .npy files", manifest), (f"store ({args.dtype})", store)):
            results[cache, name] = run(source, cache == "cold", args.cache_gb)
            print(f"{cache} {name}: {results[cache, name]}", file=sys.stderr)
    disk = {"loose .npy files": sum(p.stat().st_size for p in loose_files),
            f"store ({args.dtype})": sum(p.stat().st_size for p in shards)}
    table = Table(title=f"one training epoch's reads, {args.clips:,} clips ({results['warm', 'loose .npy files']['clips']:,} "
                        "train), batches of 32")
    for col in ("page cache", "source", "on disk (GiB)", "start-up to first batch (s)", "reads (clips/s)",
                "whole batches (clips/s)", "files opened in the epoch", "RSS start / peak / end (MiB)"):
        table.add_column(col, justify="left" if col in ("page cache", "source") else "right")
    for (cache, name), r in results.items():
        table.add_row(cache, name, f"{disk[name] / 2**30:.2f}", f"{r['startup_s']:.1f}", f"{r['read_clips_s']:,.0f}",
                      f"{r['batch_clips_s']:,.0f}", f"{r['files_opened']:,}",
                      f"{r['rss_start']:,.0f} / {r['rss_peak']:,.0f} / {r['rss_end']:,.0f}")
    Console(width=200).print(table)
    for cache in ("cold", "warm"):
        loose, packed = results[cache, "loose .npy files"], results[cache, f"store ({args.dtype})"]
        print(f"{cache}: the store reads {packed['read_clips_s'] / loose['read_clips_s']:.1f}x the clips/s, "
              f"batches {packed['batch_clips_s'] / loose['batch_clips_s']:.1f}x, and starts "
              f"{loose['startup_s'] / packed['startup_s']:.0f}x sooner")


if __name__ == "__main__":
    main()
