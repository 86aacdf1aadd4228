"""The third task, isolated signs, reached only through the task interface: trained, evaluated,
predicted, exported to ONNX, served over HTTP, streamed live and reported with the shared verbs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from signlab.inference.streaming import StreamingRecognizer
from signlab.report_page import write_report
from signlab.tasks import load_predictor
from signlab.training.isolated import synthetic_isolated_corpus
from tests.conftest import run_cli
from tests.test_serve import as_json, call, serve  # noqa: F401 - serve: the fixture that runs a real server

SMALL = ["training.epochs=16", "training.batch_size=16", "training.accelerator=cpu",
         "training.log_every_n_steps=2", "training.early_stopping_patience=0"]


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    """A small isolated-sign bundle trained with `signlab train --task isolated`, and its corpus."""
    root = tmp_path_factory.mktemp("isolated")
    manifest = synthetic_isolated_corpus(root / "corpus", train_signers=4, repeats=1)
    run = root / "run"
    r = run_cli("train", "-m", str(manifest), "--task", "isolated", "--out", str(run), *[a for s in SMALL for a in ("--set", s)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "test: top-1" in r.stdout
    return run, manifest


def test_isolated_signs_train_and_evaluate_on_unseen_signers(isolated, tmp_path):
    run, manifest = isolated
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["n"] == 92 and len(metrics["test"]["per_class"]) == 46  # 2 unseen signers x 46 signs
    # chance is 1/46; 4 training signers signing once, 16 epochs (the README's run, 6 signers twice, reaches 0.97)
    assert metrics["test"]["top1"] >= 0.6 and metrics["test"]["top5"] >= metrics["test"]["top1"]
    r = run_cli("evaluate", str(run), "-m", str(manifest), "--output", str(tmp_path / "e.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "e.json").read_text())["top1"] == pytest.approx(metrics["test"]["top1"])
    assert len((tmp_path / "e.predictions.jsonl").read_text().splitlines()) == 92
    r = run_cli("evaluate", str(run), "-m", str(manifest), "--decode", "joint")
    assert r.returncode == 2 and "an isolated-sign model takes no --decode" in r.stderr


def test_isolated_signs_predicted_exported_and_served_with_equal_answers(isolated, serve):  # noqa: F811
    run, manifest = isolated
    features = sorted(manifest.parent.glob("features/s05_*.npy"))[:6]  # a test signer
    r = run_cli("export", str(run))
    assert r.returncode == 0 and "classifier.onnx" in r.stdout, r.stderr[-2000:]
    torch_p, onnx_p = load_predictor(run), load_predictor(run, backend="onnx")
    clips = [torch_p.prepare(np.load(f), f.name) for f in features]
    want, got = torch_p.predict(clips), onnx_p.predict(clips)
    assert [a["sign"] for a in got] == [a["sign"] for a in want]
    assert np.allclose([a["confidence"] for a in got], [a["confidence"] for a in want], atol=1e-4)

    r = run_cli("predict", str(run), *map(str, features[:2]))
    assert r.returncode == 0 and [json.loads(x)["sign"] for x in r.stdout.splitlines()] == [a["sign"] for a in want[:2]]

    base = serve([torch_p])
    status, answer = call(f"{base}/v1/models/{run.name}:predict", as_json(np.load(features[0])))
    assert status == 200 and answer["task"] == "isolated" and answer["sign"] == want[0]["sign"], answer
    status, schema = call(f"{base}/openapi.json")
    assert "IsolatedSignAnswer" in json.dumps(schema)


def test_isolated_signs_live_one_answer_a_motion_segment_and_report(isolated, tmp_path):
    run, manifest = isolated
    predictor = load_predictor(run)
    clips = [np.load(f) for f in sorted(manifest.parent.glob("features/s05_*.npy"))[:3]]
    rest = np.repeat(clips[0][:1], 25, axis=0)  # a still second between signs
    stream = np.concatenate([rest, clips[0], rest, clips[1], rest, clips[2], rest])
    live = StreamingRecognizer(predictor, fps=25)
    events = live.push(stream) + live.flush()
    finals = [e for e in events if e.type == "final"]
    assert finals and all(e.answer and "sign" in e.answer for e in finals) and not any(e.type == "partial" for e in events)

    page = write_report([run], tmp_path / "report.html").read_text()
    assert "test: accuracy" in page and "least recognised signs" in page and "<svg" in page
