"""The GPU path, measured in one prepared run on a machine with a CUDA GPU (nothing in CI needs one).

1. A training step (forward, joint loss, backward, clipping, fused AdamW) of the seed's config
   (d_model 512, 8 heads, 6 + 3 layers, I3D input 1024, up to 150 frames, 1,100 glosses) at batch
   8 and 32, in fp32 and under bf16 autocast (``training.precision: bf16-mixed``).
2. The demo (synthetic signer, ``configs/demo.yaml``) trained on the GPU with ``32-true`` and with
   ``bf16-mixed``: dev and test WER and the time, to see that bf16 costs no accuracy.
3. DDP on one GPU (``training.strategy: ddp``): two epochs, that it runs.
4. I3D extraction (random weights) frames/s, GPU against this machine's CPU.
5. ``signlab serve`` with the demo's bundle on the GPU (``--device cuda``) under load
   (:mod:`bench_serve`).

Each part prints its table as it ends and writes ``gpu.json`` in ``--out``; a part that fails says
why and the next one runs.

    python benchmarks/bench_gpu.py --out runs/gpu [--parts step,demo,ddp,i3d,serve]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def step_times(batch: int, bf16: bool, steps: int = 20) -> dict:
    """Median training-step time (ms) and peak memory (MiB) of the seed's config on the GPU."""
    from signlab.losses import JointCTCAttentionLoss
    from signlab.models import HybridCTCAttentionModel
    from signlab.vocab import EOS, SOS

    torch.manual_seed(0)
    device = torch.device("cuda")
    vocab = 1100
    model = HybridCTCAttentionModel(1024, vocab, 512, 8, 6, 3, 2048).to(device)
    opt = torch.optim.AdamW(model.parameters(), 1e-4, fused=True)
    loss_fn = JointCTCAttentionLoss(0.3, 0.7, 0.1)
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(90, 151, (batch,), generator=g)
    targets = torch.randint(5, vocab, (batch, 24), generator=g)
    batch_dict = {"features": torch.randn(batch, 150, 1024, generator=g).to(device), "lengths": lengths.to(device),
                  "ctc_targets": targets.to(device), "target_lengths": torch.full((batch,), 24).to(device),
                  "decoder_input": torch.cat([torch.full((batch, 1), SOS), targets], 1).to(device),
                  "decoder_target": torch.cat([targets, torch.full((batch, 1), EOS)], 1).to(device)}
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 5):
        sync()
        started = time.perf_counter()
        with torch.autocast("cuda", torch.bfloat16, enabled=bf16):
            out = model(batch_dict["features"], batch_dict["lengths"], batch_dict["decoder_input"])
            loss = loss_fn(out, batch_dict)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sync()
        if i >= 5:
            times.append(1000 * (time.perf_counter() - started))
    return {"batch": batch, "precision": "bf16-mixed" if bf16 else "32-true", "median_ms": round(statistics.median(times), 2),
            "clips_per_s": round(batch / statistics.median(times) * 1000, 1),
            "peak_mib": round(torch.cuda.max_memory_allocated() / 2**20)}


def demo_run(out: Path, precision: str, extra: list[str] | None = None) -> dict:
    """The demo's hybrid trained on the GPU at ``precision``: time and WERs."""
    from signlab.config import builtin_config, load_config
    from signlab.data.synthetic import generate_corpus
    from signlab.demo import DEMO_CORPUS
    from signlab.training.run import train

    manifest = out / "data" / "manifest.csv"
    if not manifest.exists():
        generate_corpus(out / "data", DEMO_CORPUS)
    cfg = load_config(builtin_config("demo"), ["training.accelerator=gpu", f"training.precision={precision}", *(extra or [])])
    run = out / f"demo_{precision}{'_' + '_'.join(e.split('=')[1] for e in extra) if extra else ''}"
    started = time.perf_counter()
    train([manifest], cfg, run, progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    return {"precision": precision, "extra": extra or [], "train_s": round(time.perf_counter() - started, 1),
            "epochs": metrics.get("epochs"), "best_epoch": metrics.get("best_epoch"),
            "decoding": metrics["test"]["decoding"], "dev_wer": round(metrics["dev"]["wer"], 2),
            "test_wer": round(metrics["test"]["wer"], 2), "run": str(run)}


def i3d_rate(device: str, batch: int, frames: int = 160) -> dict:
    from signlab.extract.i3d import I3DExtractor

    torch.manual_seed(0)
    clip = torch.randint(0, 255, (frames, 224, 224, 3), dtype=torch.uint8).numpy()
    extractor = I3DExtractor(None, device, 16, 4, batch)
    extractor.extract(clip[:32])  # warm-up (cuDNN autotuning, first allocations)
    sync()
    started = time.perf_counter()
    feats = extractor.extract(clip)
    sync()
    seconds = time.perf_counter() - started
    return {"device": device, "batch": batch, "frames": frames, "windows": len(feats),
            "frames_per_s": round(frames / seconds, 1), "windows_per_s": round(len(feats) / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu"))
    parser.add_argument("--parts", default="step,demo,ddp,i3d,serve")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"torch": torch.__version__, "cuda": torch.version.cuda,
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                     "cpu_threads": torch.get_num_threads()}
    print(json.dumps(results), flush=True)

    def part(name: str, fn) -> None:
        if name not in args.parts.split(","):
            return
        started = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one part failing must not lose the others' numbers
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        results[f"{name}_s"] = round(time.perf_counter() - started, 1)
        print(f"== {name} ({results[f'{name}_s']} s):", json.dumps(results[name], indent=1), flush=True)
        (out / "gpu.json").write_text(json.dumps(results, indent=1))

    part("step", lambda: [step_times(b, bf16) for b in (8, 32) for bf16 in (False, True)])
    part("demo", lambda: [demo_run(out, p) for p in ("32-true", "bf16-mixed")])
    part("ddp", lambda: demo_run(out, "32-true", ["training.strategy=ddp", "training.devices=1", "training.epochs=2"]))
    part("i3d", lambda: [i3d_rate("cuda", 8), i3d_rate("cuda", 32), i3d_rate("cpu", 8, 48)])

    def serve() -> dict:
        import subprocess

        run = out / "demo_32-true"
        done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_serve.py"), "--run", str(run),
                               "--backends", "torch", "--device", "cuda", "--requests", "200", "--warmup", "100",
                               "--time-cap", "20"], capture_output=True, text=True, timeout=300)
        return {"returncode": done.returncode, "table": done.stdout[-6000:], "stderr": done.stderr[-2000:]}

    part("serve", serve)


if __name__ == "__main__":
    main()
