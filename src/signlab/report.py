"""Plots people would rather look at than read, and tables: training curves from ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.table import Table

PANELS = (
    ("loss", ("train_loss", "dev_loss", "train_ctc", "train_ce")),
    ("dev WER (%)", ("dev_wer", "dev_wer_ctc", "dev_wer_rescore")),
    ("CTC blank ratio", ("train_blank_ratio", "dev_blank_ratio")),
    ("learning rate", ("lr",)),
)


SENTENCE_PANELS = (
    ("loss", ("train_loss", "train_supcon", "train_ce", "train_mask", "val_ce")),
    ("alignment (dev)", ("val_inst_top1", "val_pos_sim", "val_neg_sim")),
    ("retrieval (dev)", ("val_ret_top1", "val_ret_mrr", "val_gloss_wer", "val_score")),
    ("learning rate", ("lr",)),
)


def write_history_csv(metrics: str | Path, out: str | Path) -> Path:
    """The epoch lines of ``metrics.jsonl`` as a CSV table (the seed's training_history.csv)."""
    import csv

    epochs = [r for r in read_jsonl(metrics) if r.get("kind") == "epoch"]
    columns = sorted({k for r in epochs for k in r} - {"kind"}, key=lambda k: (k not in ("epoch", "step"), k))
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: r.get(k) for k in columns} for r in epochs)
    return Path(out)


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def plot_training_curves(metrics: str | Path, out: str | Path, panels=PANELS) -> Path | None:
    """One panel per quantity, epoch lines on the x axis; None when there is nothing to plot."""
    epochs = [r for r in read_jsonl(metrics) if r.get("kind", "epoch") == "epoch"]
    if not epochs:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            points = [(r["epoch"] + 1, r[key]) for r in epochs if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", ms=2.5, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def plot_comparison(runs: dict[str, str | Path], out: str | Path, key: str = "dev_wer") -> Path | None:
    """One curve per run of an epoch metric (dev WER by default)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, path in runs.items():
        points = [(r["epoch"] + 1, r[key]) for r in read_jsonl(path) if r.get("kind") == "epoch" and r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", ms=2.5, label=name)
    if not ax.lines:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev WER (%)" if key == "dev_wer" else key)
    ax.set_ylim(0, min(100, ax.get_ylim()[1]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def percent(value: float | None) -> str:
    """``12.3%``, or ``-`` where there is nothing to measure (no clip accepted)."""
    return "-" if value is None else f"{value:.1%}"


def decoding_table(rows: list[dict], title: str) -> Table:
    """Rows of :func:`~signlab.inference.recognizer.compare_decoders`."""
    table = Table(title=title)
    for col in ("decoder", "WER %", "sub / del / ins", "decode s"):
        table.add_column(col, justify="left" if col == "decoder" else "right")
    for r in rows:
        table.add_row(r["decoder"], f"{r['wer']:.2f}", f"{r['sub']} / {r['del']} / {r['ins']}", f"{r['decode_seconds']:.2f}")
    return table
