"""``signlab report RUN [RUN ...] --out report.html``: the page a person opens after training.

One self-contained HTML file: styles inline, figures as inline SVG drawn by matplotlib (no
script, no network, nothing to install to read it; it opens from a laptop's disk or a CI
artefact and prints). Why matplotlib SVG rather than Vega-Lite or Plotly: signlab already draws
its curves with matplotlib, an SVG is a few tens of kB with text kept as text, and a page with no
JavaScript library inlined stays small and cannot break when a CDN or a browser changes.

Each run gets the sections its task gives (``Task.report_sections``; gloss: curves, decoder
search, errors by signer, length and gloss, worst clips; sentence: retrieval and translation
metrics, the calibration curve, near-duplicate confusions), read from the files the run wrote. A piece that is missing (a run
still training, an older version's folder, a truncated ``metrics.jsonl``, an empty split) is said
in the page, and the rest still renders. Every string from the data is escaped.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from signlab.atomic import write_text  # noqa: E402
from signlab.config import task_of  # noqa: E402
from signlab.errors import SignlabError  # noqa: E402
from signlab.tasks import TASKS, get_task  # noqa: E402

plt.rcParams["svg.fonttype"] = "none"  # text stays text: small files, searchable, copyable
WORST = 8  # clips shown in full


@dataclass
class Run:
    """What one run folder holds, read leniently: ``missing`` says what could not be read."""

    path: Path
    name: str
    task: str = "unknown"
    config: dict[str, Any] = field(default_factory=dict)
    config_text: str = ""
    metrics: dict[str, Any] | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    hypotheses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    excluded: list[dict[str, str]] = field(default_factory=list)
    vocabulary: int | None = None
    missing: list[str] = field(default_factory=list)
    kind: str = "run"  # a training run folder; "evaluation": `evaluate --output` results; "live": `live --jsonl` events


def read_run(path: Path) -> Run:
    run = Run(path, path.name or str(path))
    config = path / "config.yaml"
    try:
        run.config_text = config.read_text(encoding="utf-8")
        run.config = yaml.safe_load(run.config_text) or {}
        run.task = task_of(run.config)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        run.missing.append(f"config.yaml could not be read ({type(exc).__name__}): not a signlab run folder?")
    try:
        run.metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    except OSError:
        run.missing.append("metrics.json is not there yet: the run is still training, or stopped before the end")
    except ValueError:
        run.missing.append("metrics.json is damaged (not JSON)")
    try:
        lines = (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
        run.missing.append("metrics.jsonl is missing: no training curves")
    bad = 0
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if record.get("kind", "epoch") == "epoch":
            run.epochs.append(record)
    if bad:
        run.missing.append(f"metrics.jsonl: {bad} line(s) could not be read (a run killed while writing?); the rest is shown")
    for split in ("dev", "test"):
        for name in (f"{split}_results.hyp.jsonl", f"{split}_results.predictions.jsonl"):
            rows = _jsonl(path / name)
            if rows:
                run.hypotheses[split] = rows
    try:
        run.excluded = list(csv.DictReader((path / "excluded.csv").open(encoding="utf-8")))
    except OSError:
        pass
    try:
        run.vocabulary = len(json.loads((path / "vocab.json").read_text(encoding="utf-8"))["tokens"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return run


def read_evaluation(path: Path) -> Run:
    """``signlab evaluate --output FILE.json`` as a run of its own: its results (and the per-clip
    answers written beside it) shown with its task's sections, without training curves."""
    run = Run(path, path.name, kind="evaluation")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        run.missing.append(f"{path.name} could not be read ({type(exc).__name__}): an evaluation's --output file?")
        return run
    if not isinstance(results, dict) or "task" not in results:
        run.missing.append(f"{path.name} does not say its task: written by `signlab evaluate --output` of an older version?")
        return run
    run.task, run.metrics = str(results["task"]), {"test": results}
    run.name = f"{path.name}: {results.get('bundle', '?')} on {results.get('split', '?')}"
    for name in (path.stem + ".hyp.jsonl", path.stem + ".predictions.jsonl"):
        rows = _jsonl(path.with_name(name))
        if rows:
            run.hypotheses["test"] = rows
    return run


def read_live(path: Path) -> Run:
    """``signlab live --jsonl FILE`` as a run of its own: its events, for :func:`live_section`."""
    run = Run(path, path.name, kind="live")
    run.hypotheses["events"] = [e for e in _jsonl(path) if isinstance(e, dict) and "type" in e]
    if not run.hypotheses["events"]:
        run.missing.append(f"{path.name} holds no live events (signlab live --jsonl writes one a line)")
    return run


def live_section(run: Run) -> str:
    """A live session: events, the latency of partial and final ones, and the finals as they came."""
    events = run.hypotheses.get("events") or []
    if not events:
        return ""
    by_type = defaultdict(list)
    for e in events:
        by_type[e["type"]].append(float(e.get("latency_ms") or 0))
    fig, ax = plt.subplots(figsize=(7, 3))
    for kind, values in sorted(by_type.items()):
        ax.hist(values, bins=30, alpha=0.6, label=f"{kind} ({len(values)})")
    ax.set_xlabel("latency after the last frame it covers (ms)")
    ax.set_ylabel("events")
    ax.legend()
    rows = [[k, len(v), float(np.median(v)), float(np.percentile(v, 95)), max(v)] for k, v in sorted(by_type.items())]
    finals = [[f"{e.get('start')}-{e.get('end')} s", " ".join(e.get("glosses") or []) or _answer_text(e.get("answer"))]
              for e in events if e["type"] == "final"]
    return (table(["events", "count", "median ms", "p95 ms", "max ms"], rows) + svg(fig)
            + table(["span", "final answer"], finals[:200]))


def _answer_text(answer: Any) -> str:
    if not isinstance(answer, dict):
        return ""
    return str(answer.get("text") or answer.get("sign") or answer.get("translation") or "")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


# ----------------------------------------------------------------------------- figures and tables


def svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return '<figure class="plot">' + text[text.index("<svg"):] + "</figure>"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="{"num" if i >= numeric_from else "txt"}" dir="auto">{esc(_fmt(v))}</td>' for i, v in enumerate(r))
        + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"
    return "" if v is None else str(v)


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def curves(runs: Sequence[Run], panels) -> str:
    """Each quantity in its panel, every run's line in it; the kept epoch marked."""
    drawn = [(title, keys) for title, keys in panels if any(k in e for r in runs for e in r.epochs for k in keys)]
    if not drawn:
        return note("no epoch lines to plot")
    cols = 2
    rows = (len(drawn) + 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(10, 3.2 * rows), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, drawn):
        for r in runs:
            for key in keys:
                points = [(e["epoch"], e[key]) for e in r.epochs if e.get(key) is not None and "epoch" in e]
                if points:
                    label = key if len(runs) == 1 else f"{r.name}: {key}"
                    ax.plot(*zip(*points), marker=".", label=label)
            best = (r.metrics or {}).get("best_epoch")
            if best is not None:
                ax.axvline(best, color="grey", linestyle=":", linewidth=1)
        ax.set_title(title + ("  (dotted: the epoch kept)" if title.startswith(("dev", "loss")) else ""), fontsize=9)
        ax.set_xlabel("epoch")
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(drawn):]:
        ax.axis("off")
    fig.tight_layout()
    return svg(fig)


def bars(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str) -> str:
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.2))
    ax.barh(range(len(labels)), values, color="#4c72b0")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.1f}", va="center", fontsize=7)
    return svg(fig)


# ----------------------------------------------------------------------------- gloss runs


def edit_ops(ref: list[str], hyp: list[str]) -> list[tuple[str, str | None, str | None]]:
    """Levenshtein alignment of two gloss lists: ('ok' | 'sub' | 'del' | 'ins', ref token, hyp token)."""
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    ops, i, j = [], n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            ops.append(("ok" if ref[i - 1] == hyp[j - 1] else "sub", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            ops.append(("del", ref[i - 1], None))
            i -= 1
        else:
            ops.append(("ins", None, hyp[j - 1]))
            j -= 1
    return ops[::-1]


def aligned(ops) -> str:
    """Reference over hypothesis, token by token, errors coloured."""
    cells = []
    for op, r, h in ops:
        cells.append(f'<span class="tok {op}"><span dir="auto">{esc(r or "·")}</span>'
                     f'<span dir="auto">{esc(h or "·")}</span></span>')
    return '<div class="align">' + "".join(cells) + "</div>"


def wer_of(rows: Sequence[dict[str, Any]]) -> float:
    errors = words = 0
    for r in rows:
        ref, hyp = str(r.get("reference", "")).split(), str(r.get("hypothesis", "")).split()
        errors += sum(op != "ok" for op, _, _ in edit_ops(ref, hyp))
        words += len(ref)
    return 100.0 * errors / max(words, 1)


def gloss_sections(run: Run, clips: dict[str, Any] | None) -> list[tuple[str, str]]:
    m = run.metrics or {}
    out = []
    summary = []
    for split in ("dev", "test"):
        if isinstance(m.get(split), dict):
            s = m[split]
            summary.append([split, s.get("decoding"), s.get("wer"), s.get("sub"), s.get("del"), s.get("ins"), s.get("n"),
                            s.get("blank_ratio")])
    body = table(["split", "decoding", "WER %", "sub", "del", "ins", "clips", "CTC blank ratio"], summary, 2) if summary \
        else note("no evaluation yet (metrics.json has no dev or test results)")
    if m.get("ctc_collapse"):
        body += note(f"CTC collapse: {json.dumps(m['ctc_collapse'])}")
    isolated = (m.get("test") or {}).get("isolated")
    if isolated:
        body += table(["isolated signs (test)", "value"], [[k, v] for k, v in isolated.items() if not isinstance(v, dict)])
    out.append(("Results", body))
    search = m.get("decoding_search")
    if search:
        rows = [[r.get("decoder"), r.get("wer"), "chosen" if r.get("decoder") == search.get("chosen") else ""]
                for r in search.get("results", [])]
        text = table(["decoder (dev search)", "dev WER %", ""], rows)
        for split in ("dev", "test"):
            every = run.path / f"decode_all_{split}.json"
            if every.is_file():
                try:
                    results = json.loads(every.read_text(encoding="utf-8"))["results"]
                    text += table([f"decoder ({split}, evaluate --decode all)", "WER %", "sub", "del", "ins"],
                                  [[r["decoder"], r["wer"], r["sub"], r["del"], r["ins"]] for r in results])
                except (ValueError, KeyError, TypeError):
                    text += note(f"{every.name} could not be read")
        out.append(("Decoders: the dev search that chose the default", text))
    rows = run.hypotheses.get("test") or run.hypotheses.get("dev") or []
    split = "test" if run.hypotheses.get("test") else "dev"
    if not rows:
        out.append(("Errors", note("no per-clip hypotheses (test_results.hyp.jsonl): evaluate the bundle to see them")))
        return out
    out.append((f"Errors ({split}, {len(rows)} clips)", error_sections(rows, clips, run)))
    return out


def error_sections(rows: list[dict[str, Any]], clips: dict[str, Any] | None, run: Run) -> str:
    parts = []
    by_signer: dict[str, list] = defaultdict(list)
    by_length: dict[str, list] = defaultdict(list)
    subs, dels, ins = Counter(), Counter(), Counter()
    for r in rows:
        ref, hyp = str(r.get("reference", "")).split(), str(r.get("hypothesis", "")).split()
        by_signer[str(r.get("signer") or "(unknown)")].append(r)
        n = len(ref)
        by_length["1-3" if n <= 3 else "4-6" if n <= 6 else "7-10" if n <= 10 else "11-15" if n <= 15 else "16+"].append(r)
        for op, a, b in edit_ops(ref, hyp):
            if op == "sub":
                subs[(a, b)] += 1
            elif op == "del":
                dels[a] += 1
            elif op == "ins":
                ins[b] += 1
    signers = sorted(by_signer, key=lambda s: -wer_of(by_signer[s]))
    parts.append(bars([f"{s} ({len(by_signer[s])})" for s in signers], [wer_of(by_signer[s]) for s in signers],
                      "WER % by signer (clips)", "WER %"))
    order = [k for k in ("1-3", "4-6", "7-10", "11-15", "16+") if k in by_length]
    parts.append(bars([f"{k} glosses ({len(by_length[k])})" for k in order], [wer_of(by_length[k]) for k in order],
                      "WER % by reference length", "WER %"))
    parts.append('<div class="cols">' + table(["confused (reference → hypothesis)", "times"],
                                              [[f"{a} → {b}", n] for (a, b), n in subs.most_common(10)])
                 + table(["deleted", "times"], dels.most_common(10)) + table(["inserted", "times"], ins.most_common(10))
                 + "</div>")
    worst = sorted(rows, key=lambda r: -float(r.get("wer") or 0))[:WORST]
    items = []
    for r in worst:
        ops = edit_ops(str(r.get("reference", "")).split(), str(r.get("hypothesis", "")).split())
        figure = clips.get(str(r.get("id"))) if clips else ""
        items.append(f'<div class="clip"><h4 dir="auto">{esc(r.get("id"))} · {esc(r.get("signer") or "")} · '
                     f'WER {float(r.get("wer") or 0):.0f}%</h4>{aligned(ops)}{figure or ""}</div>')
    hint = "" if clips is not None else note("pass --manifest (the run's data) to see each clip's CTC alignment and the "
                                             "decoder's cross-attention")
    parts.append(f"<h3>The worst {len(worst)} clips: reference above, hypothesis below</h3>{hint}" + "".join(items))
    return "".join(parts)


def clip_figures(run: Run, manifest: Path, ids: Sequence[str]) -> dict[str, str]:
    """For each clip: the CTC head's best label per encoder frame as a strip over time, and the
    attention decoder's cross-attention (last layer, mean over heads) while it reads its own output."""
    import numpy as np
    import torch

    from signlab.data.dataset import pad_clips
    from signlab.data.manifest import read_manifests
    from signlab.inference.recognizer import Recognizer
    from signlab.vocab import BLANK, SOS

    recognizer = Recognizer.load(run.path)
    model, vocab = recognizer.bundle.model, recognizer.bundle.vocab
    samples = {s.id: s for s in read_manifests([manifest])}
    out = {}
    for clip_id in ids:
        s = samples.get(clip_id)
        if s is None:
            continue
        try:
            features = recognizer.prepare(recognizer.prep.read(s.features, s.span), s.where)
        except SignlabError as exc:  # one unreadable clip must not stop the page
            out[clip_id] = note(str(exc))
            continue
        glosses = recognizer.transcribe_prepared([features])[0].glosses
        x, lengths = pad_clips([features], recognizer.config.data.max_frames)  # as the recogniser reads it
        with torch.no_grad():
            enc = model.encode(torch.from_numpy(x), torch.from_numpy(lengths))
            tokens = torch.tensor([[SOS, *vocab.encode(glosses)]]) if model.decoder is not None else None
            o = model.heads(enc, tokens, need_attention=True) if tokens is not None else model.heads(enc)
        best = o.ctc_logits[0, : int(o.lengths[0])].argmax(-1).numpy()
        rows = [1, 4] if o.attention is not None else [1]
        fig, axes = plt.subplots(len(rows), 1, figsize=(9, 0.8 * sum(rows) + 0.6), squeeze=False,
                                 gridspec_kw={"height_ratios": rows})
        strip = axes[0, 0]
        strip.imshow((best != BLANK)[None], aspect="auto", cmap="Greys", vmin=0, vmax=1.5)
        for t in np.flatnonzero((best != BLANK) & np.r_[True, best[1:] != best[:-1]]):
            strip.text(t, 0, vocab.tokens[best[t]], fontsize=7, rotation=60, ha="left", va="bottom")
        strip.set_yticks([])
        strip.set_xlabel("encoder frame: the CTC head's glosses where they fire (grey), blank elsewhere", fontsize=7)
        if o.attention is not None:
            att = o.attention[0, : len(glosses) + 1, : int(o.lengths[0])].numpy()
            ax = axes[1, 0]
            ax.imshow(att, aspect="auto", cmap="viridis")
            ax.set_yticks(range(len(glosses) + 1), [*glosses, "<eos>"], fontsize=7)
            ax.set_xlabel("encoder frame: where the decoder looks while writing each gloss", fontsize=7)
        fig.tight_layout()
        out[clip_id] = svg(fig)
    return out


# ----------------------------------------------------------------------------- sentence runs


def flat_numbers(d: Any, prefix: str = "") -> list[tuple[str, float]]:
    """The numbers in a nested dict, as (``a.b.c``, value)."""
    if isinstance(d, dict):
        return [x for k, v in d.items() for x in flat_numbers(v, f"{prefix}{k}.")]
    if isinstance(d, (int, float)) and not isinstance(d, bool):
        return [(prefix.rstrip("."), float(d))]
    return []


def sentence_sections(run: Run) -> list[tuple[str, str]]:
    m = run.metrics or {}
    out = []
    rows = [[k, v] for split in ("dev", "test") for k, v in flat_numbers(m.get(split) or {}, f"{split}.")]
    out.append(("Results", table(["metric", "value"], rows) if rows else note("no evaluation yet")))
    cal = m.get("calibration") or {}
    curve = cal.get("curve") or []
    if curve:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ts = [c["threshold"] for c in curve]
        for key, label in (("accept_rate", "known clips accepted"), ("precision", "accepted answers right"),
                           ("unknown_rejected", "unknown sentences rejected")):
            ax.plot(ts, [c.get(key) if c.get(key) is not None else float("nan") for c in curve], label=label)
        if "sim_threshold" in cal:
            ax.axvline(cal["sim_threshold"], color="grey", linestyle=":", label="chosen threshold")
        ax.set_xlabel("similarity threshold")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        out.append(("Calibration: threshold → acceptance, precision, unknown rejected", svg(fig) + table(
            ["calibration", "value"], [[k, v] for k, v in cal.items() if not isinstance(v, (list, dict))])))
    elif cal:
        out.append(("Calibration", table(["calibration", "value"], [[k, v] for k, v in cal.items()
                                                                   if not isinstance(v, (list, dict))])))
    predictions = run.hypotheses.get("test") or run.hypotheses.get("dev") or []
    confusions = Counter((str(p["sentence"]), str(p["retrieved"])) for p in predictions
                         if p.get("retrieved") and p.get("sentence") and p["retrieved"] != p["sentence"])
    if confusions:
        out.append(("Sentences taken for others", table(["signed", "answered", "times"],
                                                        [[a, b, n] for (a, b), n in confusions.most_common(15)], 2)))
    return out


# ----------------------------------------------------------------------------- the page


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:12px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ddd;margin-top:1.6em}h3{font-size:1em}
h4{font-size:.9em;margin:.3em 0}
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:.5em 1em .5em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:2px 6px}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{background:#fff6dd;border-left:3px solid #e0b000;padding:4px 8px}
.cols{display:flex;flex-wrap:wrap}.plot svg{max-width:100%;height:auto}
.align{display:flex;flex-wrap:wrap;gap:2px;margin:.3em 0}.tok{display:inline-flex;flex-direction:column;
padding:1px 4px;border-radius:3px;font-family:ui-monospace,monospace;font-size:.85em}
.tok.ok{background:#eef5ee}.tok.sub{background:#fde2c8}.tok.del{background:#f8c9c9}.tok.ins{background:#d6e4fb}
.clip{border:1px solid #eee;padding:4px 8px;margin:6px 0}
details pre{white-space:pre-wrap;font-size:.8em;background:#f7f7f7;padding:6px}
.runs{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:12px}
"""


def render(runs: Sequence[Run], clips: dict[str, dict[str, str]] | None = None, title: str = "signlab report") -> str:
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
             f"content='width=device-width,initial-scale=1'><title>{esc(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1>"]
    if len(runs) > 1:
        parts.append("<h2>Runs side by side</h2>")
        rows = []
        for r in runs:
            m = r.metrics or {}
            test, dev = m.get("test") or {}, m.get("dev") or {}
            rows.append([r.name, r.task, dev.get("wer"), test.get("wer"), test.get("decoding"), m.get("best_epoch"),
                         m.get("epochs"), m.get("train_time_s")])
        parts.append(table(["run", "task", "dev WER %", "test WER %", "decoding", "best epoch", "epochs", "train s"], rows, 2))
        for name in dict.fromkeys(r.task for r in runs):
            same = [r for r in runs if r.task == name and r.epochs]
            if len(same) > 1 and name in TASKS:
                parts.append(curves(same, get_task(name).panels))
    for r in runs:
        parts.append(f'<h2 dir="auto">{esc(r.name)} <small>({esc(r.task)}, {esc(r.path)})</small></h2>')
        for problem in r.missing:
            parts.append(note(problem))
        if r.kind == "live":
            parts.append("<h3>Live session</h3>" + live_section(r))
            continue
        task = get_task(r.task) if r.task in TASKS else None
        if r.epochs and task is not None:
            parts.append("<h3>Training curves</h3>" + curves([r], task.panels))
        for heading, body in task.report_sections(r, (clips or {}).get(str(r.path))) if task else []:
            parts.append(f"<h3>{esc(heading)}</h3>{body}")
        if r.kind == "run":
            parts.append("<h3>Data</h3>" + data_section(r))
    parts.append("</body></html>")
    return "\n".join(parts)


def data_section(r: Run) -> str:
    m, cfg = r.metrics or {}, r.config
    rows = [["feature kind", (cfg.get("data") or {}).get("feature_kind")],
            ["features a frame", (cfg.get("model") or {}).get("input_dim")],
            ["vocabulary (with special tokens)", r.vocabulary],
            ["parameters", m.get("parameters")]]
    rows += [[f"{split} clips", (m.get(split) or {}).get("n")] for split in ("dev", "test")]
    text = table(["data", ""], [x for x in rows if x[1] is not None])
    if r.excluded:
        kinds = Counter(x.get("reason") or x.get("kind") or "?" for x in r.excluded)
        text += table(["excluded rows: why", "rows"], kinds.most_common())
        text += "<details><summary>every excluded row</summary>" + table(
            list(r.excluded[0]), [list(x.values()) for x in r.excluded[:500]], 99) + "</details>"
    if r.config_text:
        text += f"<details><summary>config.yaml</summary><pre>{esc(r.config_text)}</pre></details>"
    return text


def write_report(runs: Sequence[str | Path], out: str | Path, manifest: str | Path | None = None,
                 title: str | None = None) -> Path:
    """Read each run folder, evaluation (``evaluate --output`` JSON) and live session (``live
    --jsonl``) and write the page; returns its path."""
    read = [read_run(p) if p.is_dir() else read_live(p) if p.suffix == ".jsonl" else read_evaluation(p) for p in map(Path, runs)]
    clips = None
    if manifest is not None:
        from signlab.data.manifest import read_manifests

        signers = {s.id: s.signer for s in read_manifests([Path(manifest)])}
        for r in read:  # hypotheses written before they carried the signer
            for rows in r.hypotheses.values():
                for x in rows:
                    x.setdefault("signer", signers.get(str(x.get("id"))))
        clips = {str(r.path): get_task(r.task).report_clips(r, Path(manifest)) for r in read if r.task in TASKS}
    page = render(read, clips, title or "signlab report: " + ", ".join(r.name for r in read))
    out = Path(out)
    write_text(out, re.sub(r"\n\s*\n", "\n", page))
    return out
