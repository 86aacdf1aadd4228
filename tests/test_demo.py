import json

import pytest
from rich.console import Console

from signlab.data.synthetic import CorpusSpec
from signlab.demo import run_demo
from tests.conftest import TINY_MODEL, run_cli


@pytest.mark.slow
def test_demo_prints_the_numbers_it_writes_to_summary_json(tmp_path):
    console = Console(record=True, width=200)
    spec = CorpusSpec(train_signers=2, dev_signers=1, test_signers=1, clips_per_signer=8, seed=5)
    models = {"hybrid": ("hybrid", []), "tcn (baseline)": ("tcn", ["model.type=tcn"])}
    decoders = {"ctc_greedy": {"method": "ctc_greedy"}, "joint (beam 2)": {"method": "joint", "beam_size": 2}}
    summary = run_demo(tmp_path, spec, models, decoders, extra_overrides=(*TINY_MODEL, "training.epochs=1"),
                       console=console)

    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (tmp_path / "dev_wer.png").is_file()
    printed = console.export_text()
    assert f"report: {tmp_path / 'report.html'}" in printed.replace("\n", "")[-600:]  # said in its last lines
    assert "WER % by signer" in (tmp_path / "report.html").read_text()
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in printed.splitlines() if line.startswith("│")}
    for m in summary["models"]:
        assert rows[m["model"]] == [m["decoding"], f"{m['dev_wer']:.2f}", f"{m['test_wer']:.2f}",
                                    f"{m['test_blank_ratio']:.3f}", f"{m['epochs']} ({m['best_epoch']})",
                                    f"{m['train_time_s']:.0f}"]
        assert m["epochs"] == 1 and 0 <= m["test_wer"] and 0 <= m["test_blank_ratio"] <= 1
    assert [r["decoder"] for r in summary["decoding"]["results"]] == list(decoders)
    for r in summary["decoding"]["results"]:
        assert rows[r["decoder"]][:2] == [f"{r['wer']:.2f}", f"{r['sub']} / {r['del']} / {r['ins']}"]
        assert r["clips"] == 8


def test_sentence_demo_refuses_a_bad_setting_before_any_work(tmp_path):
    r = run_cli("sentence", "demo", "--out", str(tmp_path / "sd"), "--set", "engine.sim_treshold=0.5")
    assert r.returncode == 2 and "sim_treshold" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "sd").exists()  # no corpus rendered, no run started
