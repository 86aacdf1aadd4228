"""`signlab export` of gloss bundles and `--backend onnx`: the exported graphs on ONNX Runtime give
what PyTorch gives, with every decoding method, in the API, the CLI and the service."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from signlab.config import decoding_options
from signlab.data.manifest import read_manifest
from signlab.errors import SignlabError
from signlab.export import export_gloss, verify_gloss
from signlab.inference.onnx import OnnxGlossModel
from signlab.tasks import load_predictor
from signlab.inference.recognizer import COMPARED_DECODERS, Recognizer, scan_for_wer
from signlab.models import TCNCTCModel
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """A copy of the tiny gloss bundle with its graphs exported by the CLI, as a user would."""
    run = tmp_path_factory.mktemp("exported") / "run"
    shutil.copytree(tiny_run, run)
    r = run_cli("export", str(run))
    assert r.returncode == 0, r.stderr
    assert "max difference from PyTorch" in r.stdout and "decoder.onnx" in r.stdout
    return run


def test_every_decoding_method_gives_the_same_hypotheses_on_onnx_runtime(exported, tiny_corpus):
    test = [s for s in read_manifest(tiny_corpus) if s.split == "test"]
    decodings = {**COMPARED_DECODERS, "joint (beam 2, ctc 0.5, bonus 0.5)":
                 {"method": "joint", "beam_size": 2, "ctc_weight": 0.5, "length_bonus": 0.5}}
    hyps = {}
    for backend in ("torch", "onnx"):
        recognizer = Recognizer.load(exported, backend=backend)
        opts = [decoding_options(recognizer.config, **v) for v in decodings.values()]
        hyps[backend] = recognizer.decode_scanned(scan_for_wer(recognizer, test, "test"), 5, opts).hyps
    assert isinstance(Recognizer.load(exported, backend="onnx").model, OnnxGlossModel)
    for name, a, b in zip(decodings, hyps["torch"], hyps["onnx"]):
        assert a == b, name
    assert any(h for h in hyps["onnx"][-1].values())  # not all empty: the comparison says something


def test_cli_and_service_run_the_onnx_backend(exported, tiny_corpus, tmp_path):
    r = run_cli("evaluate", str(exported), "-m", str(tiny_corpus), "--backend", "onnx", "--output", str(tmp_path / "o.json"))
    assert r.returncode == 0, r.stderr
    onnx_wer = json.loads((tmp_path / "o.json").read_text())["wer"]
    assert onnx_wer == pytest.approx(json.loads((exported / "metrics.json").read_text())["test"]["wer"])
    features = np.load(read_manifest(tiny_corpus)[0].features)
    predictor = load_predictor(exported, backend="onnx")
    answer = predictor.predict([predictor.prepare(features, "clip")])[0]
    assert answer["glosses"] == Recognizer.load(exported).recognize(features)


def test_a_ctc_only_model_exports_its_encoder_alone(tmp_path):
    torch.manual_seed(0)
    model = TCNCTCModel(540, 12, d_model=32, num_layers=2, subsampling=2, pose_layout=True).eval()
    paths = export_gloss(model, tmp_path)
    assert [p.name for p in paths] == ["encoder.onnx"] and verify_gloss(model, tmp_path) < 1e-4
    onnx = OnnxGlossModel(tmp_path, 2, has_decoder=False)
    x, n = torch.randn(2, 30, 540), torch.tensor([30, 17])
    want = model.heads(model.encode(x, n))
    got = onnx.heads(onnx.encode(x, n))
    assert torch.equal(got.lengths, want.lengths) and onnx.decoder is None
    assert torch.allclose(got.ctc_logits[1, :9], want.ctc_logits[1, :9], atol=1e-4)


def test_missing_or_damaged_graphs_are_one_line_errors(exported, tiny_run, tmp_path):
    with pytest.raises(SignlabError, match="encoder.onnx not found: run `signlab export"):
        Recognizer.load(tiny_run, backend="onnx")
    run = tmp_path / "run"
    shutil.copytree(exported, run)
    data = (run / "decoder.onnx").read_bytes()
    (run / "decoder.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(SignlabError, match="decoder.onnx is not a readable ONNX model.*signlab export"):
        Recognizer.load(run, backend="onnx")
    with pytest.raises(SignlabError, match="CPU provider"):
        Recognizer.load(exported, "cuda", backend="onnx")
    with pytest.raises(SignlabError, match="unknown backend 'tensorrt'"):
        Recognizer.load(exported, backend="tensorrt")
    r = run_cli("recognize", "missing.mp4", "--model", str(run), "--backend", "onnx")
    assert r.returncode != 0 and "Traceback" not in r.stderr
