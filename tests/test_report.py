"""`signlab report`: the page of a gloss and a sentence run, opened in a real headless browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from signlab.config import SentenceConfig, load_config
from signlab.data.synthetic import CorpusSpec, generate_corpus
from signlab.report_page import edit_ops, write_report
from tests.conftest import REPO, run_cli

XSS = "<script>alert(1)</script>"
RTL = "مرحبا & \"quoted\""


@pytest.fixture(scope="session")
def chromium() -> str:
    """Chromium from Debian's packages, installed here when it is missing and this user may."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        done = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, text=True, timeout=900,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode == 0 and shutil.which("chromium"):
            return shutil.which("chromium")
        reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"chromium could not be installed (apt-get install chromium: {reason[0]})")
    pytest.skip("chromium is not installed and cannot be here (needs apt-get as root): the report's browser test skipped")


def open_in_browser(chromium: str, page: Path) -> tuple[str, str]:
    """The DOM after the page loaded, and the browser's log (console messages go there)."""
    done = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


@pytest.fixture(scope="module")
def sentence_run(tmp_path_factory) -> Path:
    from signlab.training.run import train

    out = tmp_path_factory.mktemp("report_sentence")
    manifest = generate_corpus(out / "data", CorpusSpec(train_signers=3, dev_signers=1, test_signers=1, clips_per_signer=8,
                                                        sentence_pool=8, seed=4))
    cfg = load_config(REPO / "configs" / "sentence.yaml", [
        "model.proj_dim=32", "model.embed_dim=32", "model.attn_heads=2", "model.encoder_layers=1", "model.encoder_ff_dim=64",
        "model.decoder_layers=1", "training.epochs=2", "training.batch_size=8", "training.accelerator=cpu",
        "training.scheduler_t0=2", "data.seq_len=32"], SentenceConfig)
    run = train([manifest], cfg, out / "run", progress=False)
    assert run_cli("sentence", "evaluate", str(run), "-m", str(manifest), "--output", str(run / "test_results.json")
                   ).returncode == 0
    return run


def test_edit_ops_align_reference_and_hypothesis():
    ops = edit_ops("A B C D".split(), "A X C D E".split())
    assert [op for op, _, _ in ops] == ["ok", "sub", "ok", "ok", "ins"]
    assert edit_ops([], ["A"]) == [("ins", None, "A")] and edit_ops(["A"], []) == [("del", "A", None)]


@pytest.mark.slow
def test_reports_of_a_gloss_and_a_sentence_run_render_in_a_browser(tiny_run, tiny_corpus, sentence_run, chromium, tmp_path):
    gloss = tmp_path / "gloss_run"
    shutil.copytree(tiny_run, gloss)
    hyps = gloss / "test_results.hyp.jsonl"
    rows = [json.loads(line) for line in hyps.read_text().splitlines()]
    rows[0].update(reference=f"{XSS} A", hypothesis="A", signer=RTL, wer=50.0)  # text from the data, as a manifest may hold
    hyps.write_text("".join(json.dumps(r) + "\n" for r in rows))

    page = tmp_path / "report.html"
    done = run_cli("report", str(gloss), str(sentence_run), "--out", str(page), "-m", str(tiny_corpus))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "written:" in done.stdout and page.stat().st_size < 5 * 2**20
    text = page.read_text()
    assert "<script" not in text.replace("&lt;script&gt;", "")  # no script at all: the page is static
    for heading in ("Runs side by side", "Training curves", "Decoders: the dev search that chose the default",
                    "WER % by signer", "The worst", "Calibration", "config.yaml"):
        assert heading in text, heading

    dom, log = open_in_browser(chromium, page)
    assert not re.search(r"CONSOLE|Uncaught|SyntaxError", log), log[-2000:]
    figures = re.findall(r'<figure class="plot">(.*?)</figure>', dom, re.S)
    assert len(figures) >= 8 and all("<svg" in f and ("<path" in f or "<text" in f) for f in figures)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and XSS not in dom  # the gloss is text, never markup
    assert "مرحبا &amp; \"quoted\"" in dom or "مرحبا &amp; &quot;quoted&quot;" in dom


def test_a_run_still_training_or_cut_short_still_renders(tiny_run, tmp_path):
    run = tmp_path / "cut"
    shutil.copytree(tiny_run, run)
    (run / "metrics.json").unlink()  # still training
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # killed mid-line
    empty = tmp_path / "empty"
    empty.mkdir()
    page = write_report([run, empty], tmp_path / "r.html")
    text = page.read_text()
    assert "metrics.json is not there yet: the run is still training" in text
    assert "metrics.jsonl: 1 line(s) could not be read" in text and "<svg" in text  # the curves of the lines that read
    assert "config.yaml could not be read" in text  # a folder that is not a run says so, the page still renders
    done = run_cli("report", str(tmp_path / "nope"), "--out", str(tmp_path / "x.html"))
    assert done.returncode == 2 and "is not a folder" in done.stderr and "Traceback" not in done.stderr


def test_an_evaluation_on_other_data_and_a_live_session_are_read_on_their_own(tiny_run, tiny_corpus, tmp_path):
    results = tmp_path / "other_corpus.json"
    assert run_cli("evaluate", str(tiny_run), "-m", str(tiny_corpus), "--output", str(results)).returncode == 0
    events = [{"type": "partial", "start": 0.2, "end": 1.0, "emitted_at": 1.1, "latency_ms": 92.4, "glosses": ["A"]},
              {"type": "final", "start": 0.2, "end": 2.5, "emitted_at": 2.6, "latency_ms": 69.4, "glosses": ["WE", XSS]},
              {"type": "final", "start": 3.0, "end": 4.0, "emitted_at": 4.1, "latency_ms": 80.0, "answer": {"sign": "GO"}}]
    live = tmp_path / "session.jsonl"
    live.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"type": "fin')  # cut short while writing
    old = tmp_path / "old.json"
    old.write_text('{"wer": 3.0}')  # results written before they named their task
    text = write_report([results, live, old], tmp_path / "r.html").read_text()
    assert f"other_corpus.json: {tiny_run} on test" in text and "WER % by signer" in text  # the task's own sections
    assert "Live session" in text and "median ms" in text and "GO" in text and "&lt;script&gt;" in text
    assert "old.json does not say its task" in text
