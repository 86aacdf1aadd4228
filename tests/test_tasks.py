"""One task interface: the registry is the only place that tells tasks apart, and the shared
verbs (train, evaluate, predict, export) work on any bundle through it."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from signlab.errors import SignlabError
from signlab.inference.recognizer import Recognizer
from signlab.tasks import TASKS, get_task, task_of_bundle
from tests.conftest import REPO, run_cli

SRC = REPO / "src" / "signlab"
TASK_MODULES = {module for module, _ in (spec.split(":") for spec in TASKS.values())}
# what serves any task: it must reach a task through the registry, never by importing it
SHARED = ["cli.py", "service.py", "live.py", "export.py", "report_page.py", "inference/predictor.py",
          "inference/streaming.py", "training/run.py"]


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


@pytest.mark.parametrize("name", SHARED)
def test_shared_modules_import_no_task_module(name):
    assert not imports(SRC / name) & TASK_MODULES


def test_nothing_outside_a_task_branches_on_which_task_it_is():
    """No file-presence sniffing, no isinstance on a task's config, no comparing task names:
    outside the task modules and the registry, a task is only ever asked."""
    owners = {SRC / "tasks.py", SRC / "config.py"} | {SRC / (m.removeprefix("signlab.").replace(".", "/") + ".py")
                                                      for m in TASK_MODULES}
    sniffing = re.compile(r"""isinstance\([^)]*(SentenceConfig|\bConfig)\)|(\.task|_task\(.*\))\s*[!=]=\s*["']"""
                          r"""|["']bank\.npz["']\)?\s*\.(is_file|exists)""")
    offenders = [f"{p.relative_to(SRC)}:{i}: {line.strip()}" for p in SRC.rglob("*.py") if p not in owners
                 for i, line in enumerate(p.read_text().splitlines(), 1) if sniffing.search(line)]
    assert not offenders, offenders


def test_an_unknown_task_is_a_one_line_error(tmp_path):
    with pytest.raises(SignlabError, match="unknown task 'signs': signlab knows gloss, sentence"):
        get_task("signs")
    (tmp_path / "config.yaml").write_text("task: signs\n")
    with pytest.raises(SignlabError, match="unknown task 'signs'"):
        task_of_bundle(tmp_path)
    r = run_cli("train", "-m", str(tmp_path / "m.csv"), "--out", str(tmp_path / "run"), "--task", "signs")
    assert r.returncode == 2 and "unknown task 'signs'" in r.stderr and "Traceback" not in r.stderr


def test_predict_and_evaluate_are_one_verb_for_any_bundle(tiny_run, tiny_corpus, tmp_path):
    files = sorted(tiny_corpus.parent.glob("features/*.npy"))[:2]
    r = run_cli("predict", str(tiny_run), *map(str, files), "--json", str(tmp_path / "p.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    recognizer = Recognizer.load(tiny_run)
    assert [x["glosses"] for x in lines] == [recognizer.recognize(np.load(f)) for f in files]
    assert set(json.loads((tmp_path / "p.json").read_text())) == {str(f) for f in files}

    r = run_cli("train", "-m", str(tiny_corpus), "--out", str(tmp_path / "x"), "--task", "sentence",
                "--config", str(tiny_run / "config.yaml"))
    assert r.returncode == 2 and "--task sentence, but" in r.stderr and "trains a gloss model" in r.stderr


def test_a_sentence_config_has_only_the_decoding_keys_it_reads():
    from signlab.config import SentenceConfig, as_saved, load_config, parse_config

    old = SentenceConfig().to_dict()
    old["decoding"] |= {"method": "attention", "ctc_weight": 0.3, "phoenix_cleanup": False, "choose_on_dev": False}
    assert parse_config(as_saved(old, SentenceConfig), "config.yaml", SentenceConfig).decoding.beam_size == 4  # an older bundle
    with pytest.raises(SignlabError, match="decoding.method"):
        load_config(None, ["decoding.method=joint"], SentenceConfig)
