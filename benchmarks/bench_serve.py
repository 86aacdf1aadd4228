"""`signlab serve` under load: throughput, latency and memory, with and without micro-batching.

The server runs as `signlab serve RUN` in its own process on 127.0.0.1; a bounded load generator
(a fixed number of requests and a time cap: it stops by itself) sends the test split's feature
clips as `.npy` bodies from C client threads, each on its own keep-alive connection. A tenth of
the requests are malformed (a wrong feature width): they must all be 4xx, and the others must not
notice. Rows: each backend (PyTorch, and ONNX Runtime on a copy of the bundle that `signlab export`
wrote), micro-batching on (`--max-batch 16 --max-wait-ms 10`) and off (`--max-batch 1`), at
concurrency 1, 8 and 32. Server RSS is read from /proc after ``--warmup`` requests (allocator
and caches settled) and after the last request.

    python benchmarks/bench_serve.py [--run runs/demo/hybrid] [--backends torch,onnx] [--requests 400]
                                     [--time-cap 90] [--warmup 300]
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]


def npy(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, x)
    return buffer.getvalue()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(run: Path, port: int, batch: int, wait_ms: float, backend: str, device: str = "cpu") -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "signlab.cli", "serve", str(run), "--port", str(port),
                               "--max-batch", str(batch), "--max-wait-ms", str(wait_ms), "--backend", backend,
                               "--device", device],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
        if server.poll() is not None:
            raise SystemExit(f"the server did not start:\n{server.stderr.read()[-2000:]}")
    raise SystemExit("the server did not start within 120 s")


def load(port: int, name: str, bodies: list[tuple[bytes, bool]], concurrency: int, total: int, cap: float) -> dict:
    """Send ``total`` requests (or as many as ``cap`` seconds allow) from ``concurrency`` threads."""
    lock, next_i = threading.Lock(), [0]
    latencies, codes, lost = [], [], [0]
    stop_at = time.perf_counter() + cap

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= total or time.perf_counter() > stop_at:
                return
            body, good = bodies[i % len(bodies)]
            started = time.perf_counter()
            try:
                conn.request("POST", f"/v1/models/{name}:predict", body, {"Content-Type": "application/octet-stream"})
                response = conn.getresponse()
                response.read()
            except OSError:
                with lock:
                    lost[0] += 1
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            with lock:
                codes.append((response.status, good))
                if good and response.status == 200:
                    latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = 1000 * np.array(latencies or [float("nan")])
    return {"sent": len(codes) + lost[0], "ok": sum(c == 200 and g for c, g in codes), "wall": wall,
            "5xx": sum(c >= 500 for c, _ in codes), "lost": lost[0],
            "bad_4xx": sum(400 <= c < 500 for c, g in codes if not g), "bad": sum(not g for _, g in codes),
            "good_not_200": sum(c != 200 for c, g in codes if g),
            "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95), "p99": np.percentile(ms, 99)}


def serve_rows(run: Path, label: str, batch: int, wait: float, backend: str, bodies: list, args) -> list:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(run, port, batch, wait, backend, args.device)
    rows = []
    try:
        load(port, run.name, bodies, max(map(int, args.concurrency.split(","))), args.warmup, args.time_cap)
        before = rss_mib(server.pid)
        for c in map(int, args.concurrency.split(",")):
            rows.append((label, c, load(port, run.name, bodies, c, args.requests, args.time_cap)))
        rows[-1][2]["rss"] = (before, rss_mib(server.pid))
    finally:
        server.terminate()
        server.wait(30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "demo" / "hybrid",
                        help="a gloss bundle (default: the demo's; `make demo` makes it)")
    parser.add_argument("--requests", type=int, default=400, help="requests per row")
    parser.add_argument("--time-cap", type=float, default=90.0, help="seconds per row at most")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--backends", default="torch,onnx")
    parser.add_argument("--warmup", type=int, default=300, help="requests at the highest concurrency before measuring")
    parser.add_argument("--device", default="cpu", help="where the server runs the model (cuda: the GPU)")
    args = parser.parse_args()
    if not (args.run / "model.safetensors").is_file():
        raise SystemExit(f"{args.run} is not a bundle: run `make demo` first, or pass --run")
    from signlab.data.manifest import read_manifest

    manifest = args.run.parent / "data" / "manifest.csv"
    clips = [np.load(s.features) for s in read_manifest(manifest) if s.split == "test"]
    bodies = [(npy(c), True) for c in clips]
    for i in range(0, len(bodies), 9):  # one in ten malformed: a wrong feature width
        bodies.insert(i, (npy(np.zeros((40, 7), np.float32)), False))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            run = args.run
            if backend == "onnx":
                from signlab.tasks import export_bundle

                run = Path(tmp) / args.run.name
                shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("checkpoints"))
                export_bundle(run, lambda line: None)
            for label, batch, wait in (("micro-batching (16, 10 ms)", 16, 10.0), ("batch 1", 1, 0.0)):
                rows += serve_rows(run, f"{backend}, {label}", batch, wait, backend, bodies, args)
    table = Table(title=f"signlab serve {args.run} ({len(clips)} test clips as .npy, 1 in 10 requests malformed), "
                        f"{os.cpu_count()} CPU cores")
    for col in ("server", "clients", "requests", "req/s (good)", "p50 ms", "p95 ms", "p99 ms", "5xx", "lost",
                "malformed -> 4xx", "good not 200", "server RSS MiB"):
        table.add_column(col, justify="left" if col == "server" else "right")
    for label, c, r in rows:
        rss = f"{r['rss'][0]:.0f} -> {r['rss'][1]:.0f}" if "rss" in r else ""
        table.add_row(label, str(c), str(r["sent"]), f"{r['ok'] / r['wall']:.1f}", f"{r['p50']:.0f}", f"{r['p95']:.0f}",
                      f"{r['p99']:.0f}", str(r["5xx"]), str(r["lost"]), f"{r['bad_4xx']}/{r['bad']}",
                      str(r["good_not_200"]), rss)
    Console(width=180).print(table)
    by = {(label, c): r for label, c, r in rows}
    top = max(map(int, args.concurrency.split(",")))

    def rate(label: str, c: int) -> float:
        return by[(label, c)]["ok"] / by[(label, c)]["wall"]

    out = Console(width=180)
    for backend in args.backends.split(","):
        out.print(f"{backend}: micro-batching at concurrency {top}: "
                  f"{rate(f'{backend}, micro-batching (16, 10 ms)', top) / rate(f'{backend}, batch 1', top):.2f}x "
                  "the throughput of batch 1 (target >= 2x)")
    if {"torch", "onnx"} <= set(args.backends.split(",")):
        batched = "micro-batching (16, 10 ms)"
        for c in map(int, args.concurrency.split(",")):
            ratio = rate(f"onnx, {batched}", c) / rate(f"torch, {batched}", c)
            out.print(f"concurrency {c}, micro-batching: onnx {ratio:.2f}x the throughput of torch (target >= 1.3x)")

if __name__ == "__main__":
    main()
