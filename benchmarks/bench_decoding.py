"""Decoding speed: batched, cached beam search vs the per-sample, uncached reference.

Same model (the seed's decoder: d_model 512, 8 heads, 3 layers; vocabulary 1000, random
weights), same encoder outputs (batch 32, 8-20 frames), beam 4, in one run; the outputs must be
identical. With random weights every hypothesis runs to its length limit (one token per encoder
frame), so outputs are 8-20 tokens long, as gloss sentences are.
A second table times every decoding method of ``signlab evaluate --decode`` on that batch.

    python benchmarks/bench_decoding.py [--batch 32] [--beam 4] [--vocab 1000]
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from signlab.config import DecodingConfig
from signlab.decoding import METHODS, decode_batch
from signlab.decoding.beam import beam_search
from signlab.decoding.reference import reference_beam_search
from signlab.models import HybridCTCAttentionModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--max-len", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = HybridCTCAttentionModel(1024, args.vocab, d_model=512, nhead=8, num_encoder_layers=2,
                                    num_decoder_layers=3).eval()
    lengths = torch.randint(8, 21, (args.batch,))
    features = torch.randn(args.batch, int(lengths.max()), 1024)
    with torch.no_grad():
        enc = model.encode(features, lengths)

    t0 = time.perf_counter()
    fast = beam_search(model.decoder, enc.out, enc.padding_mask, enc.lengths, args.beam, args.max_len)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = [reference_beam_search(model.decoder, enc.out[i : i + 1, : lengths[i]], min(args.max_len, int(lengths[i])),
                                  args.beam) for i in range(args.batch)]
    t_slow = time.perf_counter() - t0
    same_tokens = sum([h.tokens for h in a] == [h.tokens for h in b] for a, b in zip(fast, slow))
    max_diff = max(abs(x.score - y.score) for a, b in zip(fast, slow) for x, y in zip(a, b))
    mean_len = sum(len(h[0].tokens) for h in fast) / args.batch

    console = Console()
    table = Table(title=f"attention beam search: beam {args.beam}, batch {args.batch}, vocab {args.vocab}, "
                        f"d_model 512 x 3 decoder layers, mean output {mean_len:.1f} tokens, "
                        f"{torch.get_num_threads()} CPU threads")
    for col in ("decoder", "time (s)", "sentences / s"):
        table.add_column(col, justify="left" if col == "decoder" else "right")
    table.add_row("per-sample, uncached (reference)", f"{t_slow:.2f}", f"{args.batch / t_slow:.1f}")
    table.add_row("batched, cached (signlab)", f"{t_fast:.3f}", f"{args.batch / t_fast:.1f}")
    console.print(table)
    console.print(f"speed-up: {t_slow / t_fast:.1f}x (target >= 20x); identical n-best lists: {same_tokens}/{args.batch}, "
                  f"largest score difference {max_diff:.2e}")

    table = Table(title=f"every decoding method on the same batch (beam {args.beam})")
    table.add_column("method")
    table.add_column("time (ms)", justify="right")
    for method in METHODS:
        opts = DecodingConfig(method=method, beam_size=args.beam, max_len=args.max_len)
        t0 = time.perf_counter()
        decode_batch(model, features, lengths, opts)
        table.add_row(method, f"{1000 * (time.perf_counter() - t0):.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
