"""The command line as a user meets it: any terminal width, clear errors, Ctrl-C, resume rules."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import TINY_MODEL, run_cli

SETS = [a for o in TINY_MODEL for a in ("--set", o)]


@pytest.fixture
def long_dir(tmp_path):
    """A folder whose path is well over 100 characters, as on a user's machine."""
    d = tmp_path / ("a_rather_long_folder_name_" * 3) / "and_then_some_more_for_the_path"
    d.mkdir(parents=True)
    assert len(str(d)) > 100
    return d


def test_cli_output_does_not_depend_on_terminal_width(tiny_corpus, long_dir):
    run = long_dir / "run"
    outputs = {}
    for columns in ("40", "300"):
        r = run_cli("train", "-m", str(tiny_corpus), "--out", str(run), *SETS, "--set", "training.epochs=1", COLUMNS=columns)
        assert r.returncode == 0, r.stderr[-2000:]
        outputs[columns] = r
        r = run_cli("evaluate", str(run), "-m", str(tiny_corpus), "--output", str(long_dir / "e.json"), COLUMNS=columns)
        assert r.returncode == 0 and json.loads(r.stdout)["hypotheses"] == "e.hyp.jsonl", r.stdout
        again = run_cli("train", "-m", str(tiny_corpus), "--out", str(run), *SETS, COLUMNS=columns)
        assert again.returncode == 2
        assert f"{run} already holds a training run" in again.stderr  # one line, however long the path
        shutil.rmtree(run)
    for r in outputs.values():
        assert [line for line in r.stdout.splitlines() if line.startswith("test: WER")], r.stdout
    assert outputs["40"].stdout == outputs["300"].stdout


def test_output_files_are_checked_before_the_work(tiny_run, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")  # never read: the output check comes first
    r = run_cli("recognize", str(video), "--model", str(tiny_run), "--json", str(tmp_path))
    assert r.returncode == 2 and "is a folder: give the file to write" in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("recognize", str(video), "--model", str(tiny_run), "--json", str(blocker / "x.json"))
    assert r.returncode == 2 and "cannot create the folder" in r.stderr and "Traceback" not in r.stderr


def test_recognize_names_a_folder_an_empty_file_and_a_dash_name(tiny_run, tmp_path):
    r = run_cli("recognize", str(tmp_path), "--model", str(tiny_run))
    assert r.returncode == 2 and "is a folder: give a video file" in r.stderr
    dashed = tmp_path / "-d5dN54tH2E_12-1-rgb_front.mp4"  # How2Sign's names start with a dash
    dashed.write_bytes(b"")
    r = run_cli("recognize", "--model", str(tiny_run), "--", dashed.name, cwd=tmp_path)
    assert r.returncode == 2 and "is empty (0 bytes)" in r.stderr and dashed.name in r.stderr


def test_resume_refuses_a_new_config_and_settings_it_would_ignore(tiny_run, tiny_corpus, tmp_path):
    r = run_cli("train", "--resume", "-m", str(tiny_corpus), "--out", str(tiny_run), "--config", str(tiny_run / "config.yaml"))
    assert r.returncode == 2 and "would be ignored: drop it" in r.stderr
    r = run_cli("train", "--resume", "-m", str(tiny_corpus), "--out", str(tiny_run), "--set", "model.d_model=64")
    assert r.returncode == 2 and "--set model.d_model=64: a resumed run keeps what it trains" in r.stderr
    assert "training.epochs" in r.stderr  # and says what may change


def test_warnings_name_each_excluded_row_once(tiny_corpus, tmp_path):
    m = tmp_path / "m.csv"
    lines = tiny_corpus.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    dev = next(i for i, row in enumerate(rows) if ",dev," in row)
    rows[dev] = rows[dev].replace(".npy", "_gone.npy")
    m.write_text("\n".join([header, *rows]) + "\n")
    (tmp_path / "features").symlink_to(tiny_corpus.parent / "features")
    r = run_cli("train", "-m", str(m), "--out", str(tmp_path / "run"), *SETS, "--set", "training.epochs=1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("_gone.npy not found") == 1, r.stderr
    assert r.stderr.count(f"m.csv:{dev + 2}") == 1


@pytest.mark.slow
def test_ctrl_c_during_training_says_how_to_continue(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "signlab.cli", "train", "-m", str(tiny_corpus), "--out", str(out), *SETS,
                             "--set", "training.epochs=50", "--set", "training.batch_size=2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "40"})
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoints" / "latest.ckpt").exists():
        time.sleep(0.1)
    time.sleep(0.5)
    for _ in range(12):  # CPython drops a KeyboardInterrupt raised inside a finaliser: a user presses again
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        proc.kill()
        pytest.fail("training went on through 12 SIGINTs, 10 s apart")
    assert proc.returncode == 130, stderr[-2000:]
    assert "training interrupted in epoch" in stderr and "run the same command with --resume" in stderr
    assert "Traceback" not in stderr
    before = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in x]
    r = run_cli("train", "--resume", "-m", str(tiny_corpus), "--out", str(out), "--set", f"training.epochs={len(before) + 1}")
    assert r.returncode == 0, r.stderr[-2000:]
    epochs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in x]
    times = [e["time_s"] for e in epochs]
    assert len(epochs) == len(before) + 1 and times == sorted(times)  # time goes on from where it stopped
