"""Training-step time and peak memory: signlab's HybridCTCAttentionModel vs a plain PyTorch reference.

The reference is the same architecture written the way the ASL seed's PHOENIX code does it:
``nn.TransformerEncoder`` / ``nn.TransformerDecoder`` (pre-LN, GELU, same sizes), sequence-first
tensors, key-padding and causal masks passed to the stock modules. Both see the same batches
(the seed's config: d_model 512, 8 heads, 6 + 3 layers, I3D input 1024, batch 8, up to 150
frames) and run forward + joint loss + backward + clipping + AdamW. Timings alternate between
the two models in one process; memory is each model's peak in a fresh process.

    python benchmarks/bench_train_step.py [--steps 10] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from signlab.data.dataset import LengthBucketBatchSampler
from signlab.losses import JointCTCAttentionLoss
from signlab.models import HybridCTCAttentionModel
from signlab.vocab import BLANK, EOS, PAD, SOS

SEED_CONFIG = dict(input_dim=1024, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=3, dim_feedforward=2048)
VOCAB, BATCH, MAX_FRAMES = 1100, 8, 150  # a PHOENIX-sized gloss vocabulary


class ReferenceHybrid(nn.Module):
    """The same model from stock torch.nn modules, sequence-first, as the seed writes it."""

    def __init__(self, input_dim, d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, vocab=VOCAB):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(input_dim, d_model), nn.LayerNorm(d_model), nn.Dropout(0.1))
        pe = torch.zeros(4096, d_model)
        pos = torch.arange(4096).float()[:, None]
        div = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe[:, None])  # (T, 1, d)
        enc = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, 0.1, "gelu", norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, num_encoder_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        dec = nn.TransformerDecoderLayer(d_model, nhead, dim_feedforward, 0.1, "gelu", norm_first=True)
        self.decoder = nn.TransformerDecoder(dec, num_decoder_layers, norm=nn.LayerNorm(d_model))
        self.embed = nn.Embedding(vocab, d_model)
        self.ctc_head = nn.Linear(d_model, vocab)
        self.out = nn.Linear(d_model, vocab)
        self.d_model = d_model

    def forward(self, features, lengths, decoder_input):
        x = self.proj(features).transpose(0, 1)  # (T, B, d)
        x = x + self.pe[: x.size(0)]
        pad = torch.arange(x.size(0), device=x.device)[None] >= lengths[:, None]
        memory = self.encoder(x, src_key_padding_mask=pad)
        y = self.embed(decoder_input).transpose(0, 1) * math.sqrt(self.d_model)
        y = y + self.pe[: y.size(0)]
        causal = torch.ones(y.size(0), y.size(0), dtype=torch.bool, device=y.device).triu(1)
        h = self.decoder(y, memory, tgt_mask=causal, tgt_key_padding_mask=decoder_input == PAD,
                         memory_key_padding_mask=pad)
        return self.ctc_head(memory).transpose(0, 1), self.out(h).transpose(0, 1)


def reference_loss(model, batch):
    ctc_logits, dec_logits = model(batch["features"], batch["lengths"], batch["decoder_input"])
    ctc = F.ctc_loss(ctc_logits.log_softmax(-1).transpose(0, 1), batch["ctc_targets"], batch["lengths"],
                     batch["target_lengths"], blank=BLANK)
    ce = F.cross_entropy(dec_logits.reshape(-1, VOCAB), batch["decoder_target"].reshape(-1), ignore_index=PAD,
                         label_smoothing=0.1)
    return 0.3 * ctc + 0.7 * ce


def signlab_loss(model, batch, criterion=JointCTCAttentionLoss(0.3, 0.7, 0.1)):
    return criterion(model(batch["features"], batch["lengths"], batch["decoder_input"]), batch)["loss"]


def make_batches(n: int, device: torch.device, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        lengths = torch.randint(60, MAX_FRAMES + 1, (BATCH,), generator=g)
        lengths[0] = MAX_FRAMES
        target_lengths = torch.randint(4, 16, (BATCH,), generator=g)
        targets = torch.randint(5, VOCAB, (BATCH, int(target_lengths.max())), generator=g)
        targets[torch.arange(targets.size(1))[None] >= target_lengths[:, None]] = PAD
        dec_in = torch.cat([torch.full((BATCH, 1), SOS), targets], 1)
        dec_tgt = torch.cat([targets, torch.full((BATCH, 1), PAD)], 1)
        dec_tgt[torch.arange(BATCH), target_lengths] = EOS
        features = torch.randn(BATCH, MAX_FRAMES, SEED_CONFIG["input_dim"], generator=g)
        features[torch.arange(MAX_FRAMES)[None] >= lengths[:, None]] = 0
        batch = {"features": features, "lengths": lengths, "ctc_targets": targets, "target_lengths": target_lengths,
                 "decoder_input": dec_in, "decoder_target": dec_tgt}
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def build(name: str, device: torch.device):
    torch.manual_seed(0)
    if name == "signlab":
        model, loss_fn = HybridCTCAttentionModel(vocab_size=VOCAB, **SEED_CONFIG), signlab_loss
    else:
        model, loss_fn = ReferenceHybrid(**SEED_CONFIG), reference_loss
    model = model.to(device).train()
    return model, loss_fn, torch.optim.AdamW(model.parameters(), lr=1e-4)


def step(model, loss_fn, opt, batch) -> None:
    opt.zero_grad(set_to_none=True)
    loss_fn(model, batch).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_both(steps: int, device: torch.device) -> dict[str, list[float]]:
    batches = make_batches(steps + 2, device)
    runs = {name: build(name, device) for name in ("signlab", "reference")}
    times = {name: [] for name in runs}
    for i, batch in enumerate(batches):
        for name, (model, loss_fn, opt) in runs.items():
            sync(device)
            t0 = time.perf_counter()
            step(model, loss_fn, opt, batch)
            sync(device)
            if i >= 2:  # warm-up steps are not timed
                times[name].append(time.perf_counter() - t0)
    return times


def peak_memory_mb(name: str, device: torch.device, steps: int = 3) -> float:
    """Peak memory of training steps, beyond what the model and batches hold before them."""
    model, loss_fn, opt = build(name, device)
    batches = make_batches(steps, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for b in batches:
            step(model, loss_fn, opt, b)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base = peak_rss_kib()
    for b in batches:
        step(model, loss_fn, opt, b)
    return (peak_rss_kib() - base) / 1024


def peak_rss_kib() -> int:
    """This process's resident-set high-water mark (ru_maxrss would carry the parent's over fork + exec)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def epoch_with(batching: str, lengths: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """(seconds, padding fraction) for one pass of signlab's model over clips of ``lengths``."""
    if batching == "bucketed":
        order = list(LengthBucketBatchSampler(lengths.tolist(), BATCH, seed=0))
    else:  # the seed's DataLoader(shuffle=True)
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).split(BATCH)
    model, loss_fn, opt = build("signlab", device)
    batches, padded = [], 0
    for k, idx in enumerate(order):
        b = make_batches(1, device, seed=k)[0]
        n = len(idx)
        lens = lengths[torch.as_tensor(idx)].to(device)
        t = int(lens.max())
        batch = {key: v[:n] for key, v in b.items()}
        batch["features"], batch["lengths"] = batch["features"][:, :t], lens
        batches.append(batch)
        padded += n * t
    sync(device)
    t0 = time.perf_counter()
    for batch in batches:
        step(model, loss_fn, opt, batch)
    sync(device)
    return time.perf_counter() - t0, 1 - int(lengths.sum()) / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--epoch-clips", type=int, default=96)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: one model's memory, in a fresh process
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.memory_of:
        print(json.dumps(peak_memory_mb(args.memory_of, device)))
        return
    times = time_both(args.steps, device)
    memory = {
        name: float(subprocess.run([sys.executable, __file__, "--memory-of", name, "--device", args.device],
                                   capture_output=True, text=True, check=True).stdout)
        for name in times
    }
    med = {name: statistics.median(ts) for name, ts in times.items()}
    table = Table(title=f"training step, seed config (d_model 512, 6+3 layers, batch {BATCH}, <= {MAX_FRAMES} frames, "
                        f"vocab {VOCAB}), {device.type}, {torch.get_num_threads()} threads")
    for col in ("model", "median step (ms)", "min (ms)", "peak memory (MiB)"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name in times:
        table.add_row(name, f"{1000 * med[name]:.0f}", f"{1000 * min(times[name]):.0f}", f"{memory[name]:.0f}")
    console = Console()
    console.print(table)
    console.print(f"speed ratio (reference / signlab): {med['reference'] / med['signlab']:.2f}x  "
                  f"(target: >= 1.0); memory ratio: {memory['reference'] / max(memory['signlab'], 1e-9):.2f}x")

    lengths = torch.randint(40, MAX_FRAMES + 1, (args.epoch_clips,), generator=torch.Generator().manual_seed(1))
    epochs = {b: epoch_with(b, lengths, device) for b in ("random", "bucketed")}
    table = Table(title=f"one epoch of {args.epoch_clips} clips of 40-{MAX_FRAMES} frames, batch {BATCH}, signlab's model")
    for col in ("batching", "padding (% of frames)", "epoch (s)"):
        table.add_column(col, justify="right" if col != "batching" else "left")
    for name, (secs, pad) in epochs.items():
        label = "random (the seed's shuffled DataLoader)" if name == "random" else "length-bucketed (signlab's sampler)"
        table.add_row(label, f"{100 * pad:.1f}", f"{secs:.1f}")
    console.print(table)
    console.print(f"epoch speed-up from bucketing: {epochs['random'][0] / epochs['bucketed'][0]:.2f}x")


if __name__ == "__main__":
    main()
