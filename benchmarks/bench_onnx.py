"""Gloss bundles on ONNX Runtime against PyTorch: the same hypotheses, and the time each takes.

The demo's hybrid bundle is copied and exported (`signlab export`), then the test split (unseen
signers) is decoded with every decoding method by both backends, in batches of ``--batch`` and
one clip at a time (as a service answering one request at a time does). Encoder time is one
pass over the split; decode time is each method's search after it; times are the best of
``--repeats``. Every method's hypotheses must be identical on both backends.

    python benchmarks/bench_onnx.py [--run runs/demo/hybrid] [--batch 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "demo" / "hybrid",
                        help="a gloss bundle (default: the demo's; `make demo` makes it)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not (args.run / "model.safetensors").is_file():
        raise SystemExit(f"{args.run} is not a bundle: run `make demo` first, or pass --run")
    from signlab.config import decoding_options
    from signlab.data.manifest import read_manifest
    from signlab.tasks import export_bundle
    from signlab.inference.recognizer import COMPARED_DECODERS, Recognizer, scan_for_wer

    manifest = args.run.parent / "data" / "manifest.csv"
    test = [s for s in read_manifest(manifest) if s.split == "test"]
    console = Console(width=160)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / args.run.name
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("checkpoints"))
        started = time.perf_counter()
        export_bundle(run, console.print)
        console.print(f"export and check: {time.perf_counter() - started:.1f} s")
        results = {}
        for backend in ("torch", "onnx"):
            recognizer = Recognizer.load(run, backend=backend)
            scan = scan_for_wer(recognizer, test, "test", report=False)
            opts = [decoding_options(recognizer.config, **v) for v in COMPARED_DECODERS.values()]
            for batch in (args.batch, 1):
                runs = [recognizer.decode_scanned(scan, batch, opts) for _ in range(args.repeats)]
                results[backend, batch] = (runs[0].hyps, min(r.encode_seconds for r in runs),
                                           [min(r.seconds[i] for r in runs) for i in range(len(opts))])
    table = Table(title=f"{args.run}: {len(test)} test clips, torch vs ONNX Runtime, {os.cpu_count()} CPU cores "
                        f"(best of {args.repeats})")
    for col in ("decoding", "same hypotheses", f"torch s (batch {args.batch})", f"onnx s (batch {args.batch})", "speed-up",
                "torch s (batch 1)", "onnx s (batch 1)", "speed-up (batch 1)"):
        table.add_column(col, justify="left" if col == "decoding" else "right")

    def row(name: str, i: int | None) -> None:
        cells = []
        for batch in (args.batch, 1):
            t, o = ((results[b, batch][1] + (0 if i is None else results[b, batch][2][i])) for b in ("torch", "onnx"))
            cells += [f"{t:.3f}", f"{o:.3f}", f"{t / o:.2f}x"]
        if i is None:
            same = ""
        else:
            a, b = results["torch", args.batch][0][i], results["onnx", args.batch][0][i]
            c = results["onnx", 1][0][i]
            same = f"{sum(a[k] == b[k] == c[k] for k in a)}/{len(a)}"
        table.add_row(name, same, *cells)

    row("encoder alone", None)
    for i, name in enumerate(COMPARED_DECODERS):
        row(f"encoder + {name}", i)
    console.print(table)


if __name__ == "__main__":
    main()
