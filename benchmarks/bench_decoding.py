"""Decoding speed: this tree's batched beam search against an earlier revision's, same inputs.

Same model in both (the seed's decoder: d_model 512, 8 heads, 3 layers; vocabulary 1000; random
weights from one seed), same encoder outputs: a batch of 32 clips of 90-150 encoder frames, about
four frames per output token as on PHOENIX-2014-T after 4x subsampling, beam 8, outputs of 30
tokens (with random weights the attention decoder never ends a sentence, so every hypothesis runs
to ``max_len``, 30). The CTC head's blank is shifted so that CTC too finds about 30 labels a clip.
Each revision runs in its own process (the baseline checked out with ``git worktree``), one after
the other; times are the best of ``--repeats``. The n-best lists of the two must be identical.

    python benchmarks/bench_decoding.py [--baseline 33eb3b2] [--batch 32] [--beam 8] [--tokens 30]
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

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    """Runs inside the tree on PYTHONPATH; writes times and n-best lists to ``args.worker``."""
    import torch

    from signlab.config import DecodingConfig
    from signlab.decoding import METHODS, decode_batch
    from signlab.decoding.beam import beam_search
    from signlab.models import HybridCTCAttentionModel
    from signlab.vocab import BLANK

    torch.manual_seed(0)
    model = HybridCTCAttentionModel(1024, args.vocab, d_model=512, nhead=8, num_encoder_layers=2,
                                    num_decoder_layers=3).eval()
    lengths = torch.randint(4 * args.tokens - 30, 4 * args.tokens + 31, (args.batch,))
    features = torch.randn(args.batch, int(lengths.max()), 1024)
    with torch.no_grad():
        enc = model.encode(features, lengths)
        logits = model.heads(enc).ctc_logits
        others = logits.clone()
        others[..., BLANK] = float("-inf")
        gap = others.max(-1).values - logits[..., BLANK]  # blank wins a frame where this is below the shift
        model.ctc_head.bias[BLANK] += gap.quantile(1 - args.tokens / lengths.float().mean()).item()
        out = model.heads(enc)

    def best_time(fn):
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - started)
        return min(times), result

    searches = {}
    for name, weight in (("attention beam search", 0.0), ("joint beam search (CTC 0.3)", 0.3)):
        seconds, nbest = best_time(lambda: beam_search(model.decoder, enc.out, enc.padding_mask, enc.lengths,
                                                       args.beam, args.tokens, 0.0, out.ctc_logits, out.lengths, weight))
        searches[name] = {"seconds": seconds, "tokens": [[h.tokens for h in hyps] for hyps in nbest],
                          "scores": [[h.score for h in hyps] for hyps in nbest]}
    methods = {}
    for method in METHODS:
        opts = DecodingConfig(method=method, beam_size=args.beam, max_len=args.tokens)
        seconds, (best, _) = best_time(lambda: decode_batch(model, features, lengths, opts, enc))
        methods[method] = {"seconds": seconds, "mean_tokens": sum(map(len, best)) / len(best)}
    Path(args.worker).write_text(json.dumps({"searches": searches, "methods": methods, "threads": torch.get_num_threads()}))


def run_tree(src: Path, out: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", str(out), "--batch", str(args.batch), "--beam", str(args.beam),
               "--tokens", str(args.tokens), "--vocab", str(args.vocab), "--repeats", str(args.repeats)]
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"decoding benchmark failed in {src}:\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="33eb3b2", help="git revision to compare with (before issue 13)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=30, help="output length (max_len)")
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory(prefix="signlab-bench-decoding-") as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.baseline], check=True,
                       capture_output=True)
        try:
            before = run_tree(base / "src", Path(tmp) / "before.json", args)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
        after = run_tree(REPO / "src", Path(tmp) / "after.json", args)

    console = Console(width=140)
    table = Table(title=f"beam search: batch {args.batch}, beam {args.beam}, {args.tokens}-token outputs, vocabulary "
                        f"{args.vocab}, d_model 512 x 3 decoder layers, {after['threads']} CPU threads")
    for col in ("search", f"{args.baseline} (s)", "this tree (s)", "speed-up", "identical n-best lists", "largest score diff"):
        table.add_column(col, justify="left" if col == "search" else "right")
    for name, a in after["searches"].items():
        b = before["searches"][name]
        same = sum(x == y for x, y in zip(a["tokens"], b["tokens"]))
        diff = max((abs(p - q) for x, y in zip(a["scores"], b["scores"]) for p, q in zip(x, y)), default=0.0)
        table.add_row(name, f"{b['seconds']:.2f}", f"{a['seconds']:.2f}", f"{b['seconds'] / a['seconds']:.2f}x",
                      f"{same}/{len(a['tokens'])}", f"{diff:.1e}")
    console.print(table)
    table = Table(title=f"every method of `signlab evaluate --decode` on the same batch (beam {args.beam})")
    for col in ("method", f"{args.baseline} (ms)", "this tree (ms)", "speed-up", "mean output tokens"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for method, a in after["methods"].items():
        b = before["methods"].get(method)
        table.add_row(method, f"{1000 * b['seconds']:.0f}" if b else "-", f"{1000 * a['seconds']:.0f}",
                      f"{b['seconds'] / a['seconds']:.2f}x" if b else "-", f"{a['mean_tokens']:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
