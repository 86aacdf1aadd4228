import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time

import lightning as L
import numpy as np
import pytest
import torch

from signlab.data.manifest import read_manifest
from signlab.errors import SignlabError
from signlab.inference.recognizer import Recognizer, evaluate
from signlab.training.callbacks import average_checkpoints, load_checkpoint
from signlab.training import gloss
from signlab.training.gloss import (
    GlossDataModule,
    GlossRecognitionModule,
    ctc_min_frames,
    prepare_gloss_data,
    token_dropout,
)
from signlab.training.run import train
from signlab.training.task import warmup_cosine
from signlab.vocab import BLANK, PAD, SOS, UNK
from tests.conftest import TINY_MODEL, run_cli


def test_warmup_then_cosine_schedule():
    f = warmup_cosine(4, 20)
    assert [round(f(s), 3) for s in (0, 3, 4, 12, 20)] == [0.25, 1.0, 1.0, 0.5, 0.0]
    assert warmup_cosine(2, 10, cosine=False)(9) == 1.0


def test_ctc_min_frames_counts_blanks_between_repeats():
    assert ctc_min_frames(["A", "B"]) == 2 and ctc_min_frames(["A", "A", "B", "B", "B"]) == 8


def test_train_writes_a_bundle_that_evaluate_and_the_api_load(tiny_corpus, tiny_config, tmp_path):
    run = train([tiny_corpus], tiny_config(), tmp_path / "run", progress=False)
    for name in ("config.yaml", "vocab.json", "stats.npz", "model.safetensors", "metrics.json", "curves.png",
                 "checkpoints/best.ckpt", "checkpoints/latest.ckpt", "excluded.csv", "test_results.hyp.jsonl"):
        assert (run / name).is_file(), name
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [0, 1]
    assert {"train_loss", "dev_wer", "dev_blank_ratio", "lr"} <= set(epochs[-1]) and any(r["kind"] == "step" for r in epochs)
    # Lightning's CSV and TensorBoard loggers, on by default, read what the run logged
    logged = list(csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open()))
    assert {"dev_wer", "dev_blank_ratio", "train_loss_epoch", "lr-AdamW"} <= set(logged[0])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard" / "version_0")).Reload()
    assert {"dev_wer", "dev_blank_ratio", "lr-AdamW"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("dev_wer")) == 2
    metrics = json.loads((run / "metrics.json").read_text())
    search = metrics["decoding_search"]  # the decoder of lowest dev WER became the bundle's default
    best = min(search["results"], key=lambda r: r["wer"])
    assert search["chosen"] == best["decoder"] and len(search["results"]) == 11
    assert metrics["test"]["n"] == 12 and metrics["test"]["decoding"] == best["method"]
    assert metrics["dev"]["wer"] == pytest.approx(best["wer"], abs=0.005)
    assert Recognizer.load(run).decoding.method == best["method"]

    results = evaluate(run, [tiny_corpus], "test", output=tmp_path / "results.json")
    assert results["wer"] == pytest.approx(metrics["test"]["wer"])  # the saved bundle is the trained model
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {"wer", "sub", "del", "ins", "blank_ratio", "n", "decoding"} <= set(saved)
    assert len((tmp_path / "results.hyp.jsonl").read_text().splitlines()) == 12

    recognizer = Recognizer.load(run)
    sample = read_manifest(tiny_corpus)[0]
    glosses = recognizer.recognize(np.load(sample.features))
    assert all(g in recognizer.vocab for g in glosses)
    ctc = Recognizer.load(run, method="ctc_beam", beam_size=3)
    assert ctc.decoding.method == "ctc_beam" and isinstance(ctc.recognize(np.load(sample.features)), list)


def test_cli_train_and_evaluate(tiny_corpus, tmp_path):
    sets = [a for o in TINY_MODEL for a in ("--set", o)]
    r = run_cli("train", "-m", str(tiny_corpus), "--out", str(tmp_path / "run"), *sets, "--set", "training.epochs=1")
    assert r.returncode == 0, r.stderr
    assert "test: WER" in r.stdout
    r = run_cli("evaluate", str(tmp_path / "run"), "-m", str(tiny_corpus), "--split", "dev", "--decode", "ctc_greedy",
                "--output", str(tmp_path / "dev.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "dev.json").read_text())["decoding"] == "ctc_greedy"
    r = run_cli("train", "-m", str(tiny_corpus), "--out", str(tmp_path / "run"), *sets)
    assert r.returncode == 2 and "already holds a training run" in r.stderr


def test_cli_reports_user_errors_without_a_traceback(tiny_corpus, tmp_path):
    r = run_cli("train", "-m", str(tiny_corpus), "--out", str(tmp_path / "x"), "--set", "training.epoch=3")
    assert r.returncode == 2 and "unknown key 'training.epoch'" in r.stderr and "did you mean 'training.epochs'" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("evaluate", str(tmp_path / "nothing"), "-m", str(tiny_corpus))
    assert r.returncode == 2 and "is not a model bundle" in r.stderr
    r = run_cli("train", "-m", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "missing.csv not found" in r.stderr


def bad_manifest(corpus, tmp_path):
    """The tiny corpus plus one row of each kind of bad input."""
    rows = list(csv.DictReader(corpus.open()))
    base = corpus.parent
    for row in rows:
        row["features"] = str(base / row["features"])
    good = np.load(rows[0]["features"])
    np.save(tmp_path / "nan.npy", np.where(np.arange(len(good))[:, None] == 3, np.nan, good))
    np.save(tmp_path / "dim.npy", good[:, :100])
    np.save(tmp_path / "empty.npy", good[:0])
    np.save(tmp_path / "short.npy", good[:4])
    (tmp_path / "corrupt.npy").write_bytes(b"not an npy file")
    template = dict(rows[0], split="train")
    bad = [
        ("missing", "missing.npy", None), ("corrupt", "corrupt.npy", None), ("empty", "empty.npy", None),
        ("nan", "nan.npy", None), ("dim", "dim.npy", None), ("short", "short.npy", "ME GO HOME NOW TODAY"),
        ("noglosses", "short.npy", ""),
    ]
    for name, file, glosses in bad:
        rows.append(dict(template, id=f"bad_{name}", features=str(tmp_path / file),
                         glosses=template["glosses"] if glosses is None else glosses))
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_bad_rows_are_excluded_with_reasons_never_replaced(tiny_corpus, tiny_config, tmp_path, caplog):
    manifest = bad_manifest(tiny_corpus, tmp_path)
    with caplog.at_level(logging.WARNING):
        run = train([manifest], tiny_config("training.epochs=1"), tmp_path / "run", progress=False)
    excluded = {r["id"]: r["reason"] for r in csv.DictReader((run / "excluded.csv").open())}
    assert excluded == {"bad_missing": "missing", "bad_corrupt": "corrupt", "bad_empty": "empty", "bad_nan": "nonfinite",
                        "bad_dim": "dim", "bad_short": "too_short", "bad_noglosses": "no_glosses"}
    assert "train: excluded 7 of 43 rows" in caplog.text
    assert "bad.csv:" in caplog.text and "need 5 CTC frames but the clip gives 2" in caplog.text


def test_setup_errors_name_the_fix(tiny_corpus, tiny_config, tmp_path):
    samples = read_manifest(tiny_corpus)
    with pytest.raises(SignlabError, match=r"--set model.input_dim=540"):
        prepare_gloss_data(samples, tiny_config("model.input_dim=1024"))
    with pytest.raises(SignlabError, match="no 'dev' rows"):
        prepare_gloss_data([s for s in samples if s.split != "dev"], tiny_config())
    with pytest.raises(SignlabError, match="nothing to resume"):
        train([tiny_corpus], tiny_config(), tmp_path / "none", resume=True)


def test_decoder_token_dropout_auto_follows_the_training_split_size(tiny_corpus, tiny_config, caplog, monkeypatch):
    samples = read_manifest(tiny_corpus)
    train_clips = sum(s.split == "train" for s in samples)
    with caplog.at_level(logging.INFO):
        assert prepare_gloss_data(samples, tiny_config()).config.model.decoder_token_dropout == 0.0
    assert f"model.decoder_token_dropout auto: 0 ({train_clips} training clips" in caplog.text
    monkeypatch.setattr(gloss, "TOKEN_DROPOUT_FROM", train_clips)
    assert prepare_gloss_data(samples, tiny_config()).config.model.decoder_token_dropout == 0.2
    assert prepare_gloss_data(samples, tiny_config("model.decoder_token_dropout=0.1")).config.model.decoder_token_dropout == 0.1
    with pytest.raises(SignlabError, match=r"--set model.decoder_token_dropout=1.5: .* a probability below 1"):
        tiny_config("model.decoder_token_dropout=1.5")


def test_token_dropout_hides_only_sentence_tokens_at_its_rate():
    tokens = torch.tensor([[SOS, 5, 6, 7, PAD, PAD]] * 2000)
    dropped = token_dropout(tokens, 0.2)
    assert (dropped[:, 0] == SOS).all() and (dropped[:, 4:] == PAD).all()
    assert set(dropped[:, 1:4].unique().tolist()) == {5, 6, 7, UNK}
    assert abs((dropped[:, 1:4] == UNK).float().mean().item() - 0.2) < 0.02


def test_collapse_warning_when_blank_dominates_after_warmup(tiny_corpus, tiny_config, caplog):
    cfg = tiny_config("training.warmup_epochs=0")
    data = prepare_gloss_data(read_manifest(tiny_corpus), cfg)
    module = GlossRecognitionModule(cfg.to_dict(), data.vocab.tokens, data.prep.dim, data.stats)
    with torch.no_grad():
        module.model.ctc_head.bias[BLANK] = 100.0  # a collapsed CTC head
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with caplog.at_level(logging.WARNING):
        (result,) = trainer.validate(module, datamodule=GlossDataModule(data), verbose=False)
    assert result["dev_blank_ratio"] == 1.0 and "CTC collapse: 100.0% of dev frames" in caplog.text


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_from_latest(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    args = ["-m", str(tiny_corpus), "--out", str(out), *[a for o in TINY_MODEL for a in ("--set", o)],
            "--set", "training.epochs=4", "--set", "training.batch_size=2"]
    proc = subprocess.Popen([sys.executable, "-m", "signlab.cli", "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    # wait until epoch 0 is done and epoch 1 is under way, then kill without warning
    while time.time() < deadline:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if any(json.loads(x)["kind"] == "step" and json.loads(x)["epoch"] == 1 for x in lines):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = torch.load(out / "checkpoints" / "latest.ckpt", weights_only=True)
    assert ckpt["epoch"] >= 0 and not (out / "model.safetensors").exists()
    assert not list((out / "checkpoints").glob(".*partial"))  # no half-written checkpoint left
    r = run_cli("train", "--resume", "-m", str(tiny_corpus), "--out", str(out))
    assert r.returncode == 0, r.stderr
    records = [json.loads(x) for x in metrics.read_text().splitlines()]
    epochs = [r["epoch"] for r in records if r["kind"] == "epoch"]
    assert epochs == [0, 1, 2, 3]  # finished epochs kept, the interrupted one redone once
    steps = [r["step"] for r in records if r["kind"] == "step"]
    assert steps == sorted(set(steps))  # no step logged twice
    assert (out / "model.safetensors").is_file()
    resumed = [r for r in csv.DictReader((out / "csv" / "version_1" / "metrics.csv").open()) if r["dev_wer"]]
    assert [int(r["epoch"]) for r in resumed] == [1, 2, 3] and (out / "csv" / "version_0").is_dir()  # nothing overwritten


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tiny_corpus, tmp_path):
    """From a packed store: each process reads the shards itself (the sentence task's DDP test reads a manifest)."""
    from signlab.data.store import pack

    packed = pack([tiny_corpus], tmp_path / "store", shard_gb=0.001)
    sets = [a for o in TINY_MODEL for a in ("--set", o)]
    r = run_cli("train", "-m", str(packed), "--out", str(tmp_path / "ddp"), *sets, "--set", "training.devices=2",
                "--set", "training.strategy=ddp", "--set", "training.max_steps=2", "--set", "training.epochs=1",
                "--set", "training.log_every_n_steps=1")
    assert r.returncode == 0, r.stderr[-3000:]
    steps = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines() if '"step"' in x]
    assert max(s["step"] for s in steps) == 2
    assert (tmp_path / "ddp" / "model.safetensors").is_file()


@pytest.mark.parametrize("features, message", [
    (np.full((20, 540), np.nan, np.float32), "has 10800 NaN/inf values"),
    (np.zeros((20, 100), np.float32), "has 100 dims per frame, expected 540"),
    (np.zeros(540, np.float32), "has shape \\(540,\\), expected \\(frames, dims\\)"),
    (np.zeros((0, 540), np.float32), "has 0 frames"),
    ([["a"] * 540], "not real numbers"),
])
def test_python_api_applies_the_same_checks_as_the_cli(tiny_run, features, message):
    recognizer = Recognizer.load(tiny_run)
    with pytest.raises(SignlabError, match=message):
        recognizer.recognize(features)



def test_every_decoder_in_one_pass_gives_what_each_gives_alone(tiny_run, tiny_corpus, tmp_path):
    from signlab.inference.recognizer import (
        COMPARED_DECODERS,
        compare_decoders,
        evaluate_samples,
    )

    test = [s for s in read_manifest(tiny_corpus) if s.split == "test"]
    table = compare_decoders(Recognizer.load(tiny_run), test, "test")
    assert [r["decoder"] for r in table["results"]] == list(COMPARED_DECODERS) and table["clips"] == 12
    for row in table["results"]:
        alone = evaluate_samples(Recognizer.load(tiny_run, **COMPARED_DECODERS[row["decoder"]]), test, "test")
        assert (row["wer"], row["sub"], row["del"], row["ins"]) == (round(alone["wer"], 2), alone["sub"], alone["del"],
                                                                    alone["ins"]), row["decoder"]
    r = run_cli("evaluate", str(tiny_run), "-m", str(tiny_corpus), "--decode", "all", "--output", str(tmp_path / "all.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "every decoding method on test (12 clips" in r.stdout and "rescore (beam 4, ctc 0.3)" in r.stdout
    saved = json.loads((tmp_path / "all.json").read_text())["results"]
    assert [(s["decoder"], s["wer"]) for s in saved] == [(t["decoder"], t["wer"]) for t in table["results"]]


def test_checkpoints_are_chosen_by_a_cheap_proxy_and_averaged_only_when_it_helps(tiny_corpus, tiny_config, tmp_path):
    from safetensors.torch import load_file

    run = train([tiny_corpus], tiny_config("training.epochs=3", "training.average_checkpoints=2"), tmp_path / "run",
                progress=False)
    epochs = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "epoch"]
    for r in epochs:  # the decoder is chosen after training, so each epoch is judged by the better of two cheap ones
        assert r["dev_wer"] == pytest.approx(min(r["dev_wer_rescore"], r["dev_wer_ctc"]))
    top = sorted((run / "checkpoints").glob("top-*.ckpt"))
    assert len(top) == 2
    averaging = json.loads((run / "metrics.json").read_text())["checkpoint_averaging"]
    assert averaging["epochs"] == sorted(int(p.stem[4:]) for p in top)
    assert averaging["used"] == ("averaged" if averaging["dev_wer_averaged"] < averaging["dev_wer_best"] else "best")
    expected = average_checkpoints(top) if averaging["used"] == "averaged" else load_checkpoint(
        run / "checkpoints" / "best.ckpt")["state_dict"]
    saved = load_file(run / "model.safetensors")
    assert all(torch.equal(saved[k], expected[f"model.{k}"]) for k in saved)


def test_average_checkpoints_is_the_mean_of_floating_point_weights(tmp_path):
    for i, value in enumerate((1.0, 4.0)):
        torch.save({"state_dict": {"w": torch.full((2,), value), "steps": torch.tensor(i)}}, tmp_path / f"{i}.ckpt")
    mean = average_checkpoints([tmp_path / "0.ckpt", tmp_path / "1.ckpt"])
    assert torch.equal(mean["w"], torch.full((2,), 2.5)) and mean["steps"] == 0  # counters come from the first


def test_a_logger_that_is_not_installed_is_a_clear_error(tmp_path):
    import importlib.util

    from signlab.training.run import make_loggers

    if importlib.util.find_spec("mlflow") is not None:
        pytest.skip("mlflow is installed here")
    with pytest.raises(SignlabError, match="mlflow is not installed: pip install mlflow, or drop it from training.loggers"):
        make_loggers(["csv", "mlflow"], tmp_path)
    assert make_loggers([], tmp_path) == []


@pytest.mark.slow
def test_two_slurm_tasks_train_as_two_nodes(tiny_corpus, tmp_path):
    """What ``srun --nodes 2 --ntasks-per-node 1 signlab train ... --set training.num_nodes=2`` starts:
    two processes with SLURM's variables, here on one machine; Lightning's SLURM environment makes them
    ranks 0 and 1, and only the first writes the run's files."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sets = [a for o in [*TINY_MODEL, "training.num_nodes=2", "training.devices=1", "training.strategy=ddp",
                        "training.epochs=1", "training.log_every_n_steps=1"] for a in ("--set", o)]
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "signlab-train", "SLURM_NTASKS": "2", "SLURM_NNODES": "2",
             "SLURM_NTASKS_PER_NODE": "1", "SLURM_NODELIST": "127.0.0.1", "SLURM_LOCALID": "0", "MASTER_PORT": str(port)}
    tasks = [subprocess.Popen([sys.executable, "-m", "signlab.cli", "train", "-m", str(tiny_corpus), "--out",
                               str(tmp_path / "run"), *sets], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **slurm, "SLURM_PROCID": str(rank), "SLURM_NODEID": str(rank)})
             for rank in (0, 1)]
    results = [t.communicate(timeout=600) for t in tasks]
    for t, (_, err) in zip(tasks, results):
        assert t.returncode == 0, err[-3000:]
    steps = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"step"' in x]
    assert max(s["step"] for s in steps) == 3  # 36 clips in batches of 8: 5 batches, 3 for each of 2 ranks (1 alone: 5)
    assert (tmp_path / "run" / "model.safetensors").is_file()
