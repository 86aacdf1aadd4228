"""Which format for the packed store: signlab's shards against the candidates, on one epoch's reads.

The same synthetic corpus as ``bench_store.py`` (random clips of 16-64 frames x 540 float32
values; ``--clips`` of them, made once in ``--data``) is written in each format, then its train
clips are read one by one in the order of one epoch of the length-bucketed sampler training uses
(random access: the sampler asks for any clip at any time), each format in its own process, after
one pass that puts its files in the page cache (warm; cold reads wait on the disk, which every
format reads the same bytes from). Measured per format: writing, size on disk, files, clips/s of
the epoch's reads (each read gives a float32 (T, 540) array the loader owns), and resident memory
before and after the epoch.

* ``signlab store``: ``signlab pack`` (shards of rows one after another, an index; ``pread``).
* ``memory map``: one ``.npy`` of all rows and an offsets array, read through ``np.load(mmap_mode="r")``
  (what Megatron's indexed datasets and Hugging Face datasets' Arrow files do underneath).
* ``HDF5``: one (rows, 540) dataset, chunks of 64 rows, uncompressed (h5py).
* ``LitData``: ``litdata.optimize`` (chunks of 64 MB, one numpy array a sample) read by index
  through ``StreamingDataset``; and iterated in the order it chooses itself (``shuffle=True``:
  chunks in random order, clips shuffled within them), which is how it is made to be read, but
  leaves no room for our samplers.

WebDataset is not measured: its tar shards are read in order, a sample at a time, so it cannot
serve a sampler that picks clips by length or class (it shuffles within a buffer instead).
h5py and LitData are not signlab's dependencies: install them beside the run
(``pip install --target DIR --no-deps litdata h5py`` plus LitData's own imports, with ``DIR`` on
``PYTHONPATH``); a format whose library is missing is reported as such.

    python benchmarks/bench_formats.py [--clips 20000] [--data /tmp/signlab-bench-store]
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
from bench_store import DIM, make_corpus, rss_mib, warm
from common import REPO
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(REPO / "src"))
FORMATS = ("signlab store", "memory map", "HDF5", "LitData", "LitData, its own order")


def train_rows(manifest: Path) -> tuple[list[Path], np.ndarray, list[int]]:
    """The train clips' files in manifest order, their lengths, and the positions of one epoch's reads."""
    from signlab.data.dataset import LengthBucketBatchSampler
    from signlab.data.manifest import read_manifests

    files = [s.features for s in read_manifests([manifest]) if s.split == "train"]
    lengths = np.array([np.load(f, mmap_mode="r").shape[0] for f in files], np.int64)
    order = [i for batch in LengthBucketBatchSampler(lengths, 32, seed=0) for i in batch]
    return files, lengths, order


def write(name: str, files: list[Path], lengths: np.ndarray, out: Path) -> list[Path]:
    """``files`` (of ``lengths`` frames) written as format ``name`` in ``out``; the files it made."""
    out.mkdir(parents=True, exist_ok=True)
    if name == "signlab store":
        from signlab.data import store

        manifest = out / "train.csv"
        manifest.write_text("id,split,features,feature_kind\n" + "".join(
            f"c{i},train,{f},custom-{DIM}\n" for i, f in enumerate(files)))
        store.pack([manifest], out / "store")
        return sorted((out / "store").iterdir())
    clips = (np.load(f) for f in files)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if name == "memory map":
        rows = np.lib.format.open_memmap(out / "rows.npy", "w+", np.float32, (int(offsets[-1]), DIM))
        for i, clip in enumerate(clips):
            rows[offsets[i]: offsets[i + 1]] = clip
        rows.flush()
        np.save(out / "offsets.npy", offsets)
        return [out / "rows.npy", out / "offsets.npy"]
    if name == "HDF5":
        import h5py

        with h5py.File(out / "clips.h5", "w") as h5:
            rows = h5.create_dataset("rows", (int(offsets[-1]), DIM), np.float32, chunks=(64, DIM))
            for i, clip in enumerate(clips):
                rows[offsets[i]: offsets[i + 1]] = clip
            h5.create_dataset("offsets", data=offsets)
        return [out / "clips.h5"]
    if name.startswith("LitData"):
        from litdata import optimize

        optimize(fn=_litdata_sample, inputs=[str(f) for f in files], output_dir=str(out / "litdata"),
                 chunk_bytes="64MB", num_workers=1, mode="overwrite")
        return sorted((out / "litdata").iterdir())
    raise ValueError(name)


def _litdata_sample(path: str) -> dict:
    return {"x": np.load(path)}


def reader(name: str, out: Path):
    """A function from a train clip's position to its float32 (T, D) array, in format ``name``."""
    if name == "signlab store":
        from signlab.data.features import Preprocessor
        from signlab.data.manifest import read_manifests
        from signlab.kinds import plain

        samples, prep = read_manifests([out / "store"]), Preprocessor(plain(DIM))
        return lambda i: prep.read(samples[i].features, samples[i].span)
    if name == "memory map":
        rows, offsets = np.load(out / "rows.npy", mmap_mode="r"), np.load(out / "offsets.npy")
        return lambda i: np.array(rows[offsets[i]: offsets[i + 1]])
    if name == "HDF5":
        import h5py

        h5 = h5py.File(out / "clips.h5", "r")
        rows, offsets = h5["rows"], h5["offsets"][:]
        return lambda i: rows[offsets[i]: offsets[i + 1]]
    if name.startswith("LitData"):
        from litdata import StreamingDataset

        ds = StreamingDataset(str(out / "litdata"))
        return lambda i: ds[i]["x"]
    raise ValueError(name)


def one_format(name: str, manifest: Path, out: Path) -> dict:
    """In this process: format ``name`` written (unless it is there) and one epoch read from it."""
    files, lengths, order = train_rows(manifest)
    done = out / "written.json"
    if done.is_file():
        written = json.loads(done.read_text())
    else:
        start = time.perf_counter()
        made = write(name, files, lengths, out)
        written = {"write_s": time.perf_counter() - start, "bytes": sum(p.stat().st_size for p in made if p.is_file()),
                   "files": len(made)}
        done.write_text(json.dumps(written))
    warm([p for p in out.rglob("*") if p.is_file()])
    read = reader(name, out)
    for i in order[:: len(order) // 7]:
        assert np.array_equal(read(i), np.load(files[i])), f"{name} gives other values for clip {i}"
    rss = rss_mib()
    start = time.perf_counter()
    if name == "LitData, its own order":
        from litdata import StreamingDataset

        for item in StreamingDataset(str(out / "litdata"), shuffle=True):
            x = item["x"]
    else:
        for i in order:
            x = read(i)
    seconds = time.perf_counter() - start
    assert x.dtype == np.float32 and x.shape[1] == DIM
    return {**written, "clips_s": len(order) / seconds, "rss_start": rss, "rss_end": rss_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20_000)
    parser.add_argument("--data", type=Path, default=Path("/tmp/signlab-bench-store"))
    parser.add_argument("--format", help=argparse.SUPPRESS)  # internal: one format in this process
    args = parser.parse_args()
    data = args.data / str(args.clips)
    manifest = make_corpus(data, args.clips)
    if args.format:
        print(json.dumps(one_format(args.format, manifest, data / "formats" / args.format.split(",")[0].replace(" ", "-"))))
        return
    files, _, order = train_rows(manifest)  # for scale: np.load of the loose files, warm
    warm(files)
    start = time.perf_counter()
    for i in order:
        np.load(files[i])
    loose = len(order) / (time.perf_counter() - start)
    table = Table(title=f"one epoch's reads of {len(order):,} train clips (of {args.clips:,}), warm page cache; "
                        f"np.load of the loose .npy files: {loose:,.0f} clips/s")
    for col in ("format", "write (s)", "on disk (GiB)", "files", "reads (clips/s)", "vs loose", "RSS before / after (MiB)"):
        table.add_column(col, justify="left" if col == "format" else "right")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in FORMATS:
        done = subprocess.run([sys.executable, __file__, "--clips", str(args.clips), "--data", str(args.data),
                               "--format", name], capture_output=True, text=True, env=env)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"{name}: not measured: {last}", file=sys.stderr)
            table.add_row(name, "-", "-", "-", "-", "-", f"not measured: {last[:60]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name}: {r}", file=sys.stderr)
        table.add_row(name, f"{r['write_s']:.0f}", f"{r['bytes'] / 2**30:.2f}", f"{r['files']:,}", f"{r['clips_s']:,.0f}",
                      f"{r['clips_s'] / loose:.1f}x", f"{r['rss_start']:,.0f} / {r['rss_end']:,.0f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
