"""Wall time and WERs of ``signlab demo``: this tree against an earlier revision, in one sitting.

Each round runs the baseline revision's demo (checked out with ``git worktree`` into a temporary
folder and imported from there) and then this tree's, one after the other and never at the same
time, so both see the same machine. Rounds alternate to spread out drift in the machine's speed.
The table gives each run's wall time (Python start-up, corpus generation, training, evaluation,
decoder comparison) and the test WER of each model it trained, as its ``summary.json`` says.

    python benchmarks/bench_demo.py [--baseline 80e7cf8] [--rounds 1] [--seeds 42]
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


def run_demo(src: Path, out: Path, seed: int, supports_seed: bool) -> tuple[float, dict]:
    """Wall seconds and summary of one ``signlab demo`` with the package found in ``src``."""
    args = [sys.executable, "-m", "signlab.cli", "demo", "--out", str(out)] + (["--seed", str(seed)] if supports_seed else [])
    started = time.perf_counter()
    done = subprocess.run(args, env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"demo failed ({src}):\n{done.stderr[-3000:]}")
    return seconds, json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="80e7cf8", help="git revision to compare with (before issue 10)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seeds", default="42", help="comma-separated training seeds (this tree only: the "
                                                       "baseline's demo has no --seed and always uses 42)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="signlab-bench-demo-") as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.baseline], check=True,
                       capture_output=True)
        try:
            for r in range(args.rounds):
                for name, src, seeds in (("baseline " + args.baseline, base / "src", ["42"]),
                                         ("this tree", REPO / "src", args.seeds.split(","))):
                    for seed in seeds:
                        out = Path(tmp) / f"{name.split()[0]}-{r}-{seed}"
                        seconds, summary = run_demo(src, out, int(seed), src != base / "src")
                        rows.append((name, seed, seconds, summary))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
    models = list(dict.fromkeys(m["model"] for *_, s in rows for m in s["models"]))
    table = Table(title=f"signlab demo, {os.cpu_count()} CPU cores: wall time and test WER % (unseen signers)")
    for col in ("demo", "seed", "wall s", "train s", *models):
        table.add_column(col, justify="left" if col == "demo" else "right")
    for name, seed, seconds, summary in rows:
        wer = {m["model"]: f"{m['test_wer']:.2f} ({m['epochs']} ep)" for m in summary["models"]}
        train = sum(m["train_time_s"] for m in summary["models"])
        table.add_row(name, seed, f"{seconds:.0f}", f"{train:.0f}", *(wer.get(m, "-") for m in models))
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
