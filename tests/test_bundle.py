"""Bundles and checkpoints: written whole, readable by others, and refused clearly when damaged."""

import json
import os
import pickle
import shutil
import stat

import numpy as np
import pytest
import torch
import yaml

from signlab.atomic import atomic_write
from signlab.errors import SignlabError
from signlab.inference.bank import EmbeddingBank, Prototypes
from signlab.inference.bundle import load_bundle, save_bundle
from signlab.training.callbacks import load_checkpoint
from signlab.vocab import Vocabulary
from tests.conftest import run_cli


@pytest.fixture
def bundle(tiny_run, tmp_path):
    """A copy of the tiny trained bundle, to damage."""
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_run, copy)
    return copy


def truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


DAMAGES = {
    "weights are random bytes": ("model.safetensors", lambda p: p.write_bytes(os.urandom(4096))),
    "weights truncated": ("model.safetensors", truncate),
    "stats.npz corrupt": ("stats.npz", lambda p: p.write_bytes(b"PK\x03\x04" + os.urandom(200))),
    "stats.npz truncated": ("stats.npz", truncate),
    "stats.npz is one .npy array": ("stats.npz", lambda p: np.save(open(p, "wb"), np.zeros(540, np.float32))),
    "stats.npz lacks std": ("stats.npz", lambda p: np.savez(open(p, "wb"), mean=np.zeros(540, np.float32))),
    "vocab.json not JSON": ("vocab.json", lambda p: p.write_bytes(b"\xff\xfe{nope")),
    "config.yaml not YAML": ("config.yaml", lambda p: p.write_text("model: [1, 2\n")),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_bundle_file_is_a_one_line_error_naming_it(bundle, tiny_corpus, damage):
    name, spoil = DAMAGES[damage]
    spoil(bundle / name)
    with pytest.raises(SignlabError) as err:
        load_bundle(bundle)
    assert name in str(err.value)
    r = run_cli("evaluate", str(bundle), "-m", str(tiny_corpus))
    assert r.returncode == 2 and "Traceback" not in r.stderr and name in r.stderr, r.stderr[-2000:]


def test_vocabulary_of_another_size_is_named_as_such(bundle):
    tokens = Vocabulary.load(bundle / "vocab.json").tokens
    Vocabulary([*tokens, "EXTRA"]).save(bundle / "vocab.json")
    with pytest.raises(SignlabError, match=f"vocab.json has {len(tokens) + 1} tokens but the weights .* trained with {len(tokens)}"):
        load_bundle(bundle)


@pytest.mark.parametrize("section", ["decoding", "extract"])
def test_bundle_missing_a_config_section_says_which(bundle, section):
    config = yaml.safe_load((bundle / "config.yaml").read_text())
    del config[section]
    (bundle / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SignlabError, match=f"lacks the section\\(s\\) {section}"):
        load_bundle(bundle)


def test_a_bundle_from_before_the_hand_shape_input_loads_as_trained(bundle):
    from signlab.config import Config
    from signlab.inference.bundle import read_bundle_config

    config = yaml.safe_load((bundle / "config.yaml").read_text())
    assert config["model"]["hand_shape"] is True  # written by today's training
    del config["model"]["hand_shape"]
    (bundle / "config.yaml").write_text(yaml.safe_dump(config))
    assert read_bundle_config(bundle, Config).model.hand_shape is False


def test_damaged_bank_and_prototypes_are_one_line_errors(tmp_path):
    for cls, name in ((EmbeddingBank, "bank.npz"), (Prototypes, "prototypes.npz")):
        path = tmp_path / name
        path.write_bytes(os.urandom(300))
        with pytest.raises(SignlabError, match=name):
            cls.load(path)
    np.savez(tmp_path / "bank.npz", embeddings=np.zeros((3, 4)), sequences=np.zeros((2, 5, 4)), sentences=np.array(["a"] * 3),
             texts=np.array(["a"] * 3), clip_ids=np.array(["1", "2", "3"]))
    with pytest.raises(SignlabError, match="disagree in shape"):
        EmbeddingBank.load(tmp_path / "bank.npz")


def test_bundle_files_are_written_whole_and_readable_by_other_users(tiny_run, tmp_path):
    b = load_bundle(tiny_run)
    old = os.umask(0o022)
    try:
        out = save_bundle(tmp_path / "b", b.config, b.vocab, b.stats, b.model, {"x": 1})
    finally:
        os.umask(old)
    for name in ("config.yaml", "vocab.json", "stats.npz", "model.safetensors", "metrics.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    assert not list(out.glob(".*.partial"))
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(RuntimeError), atomic_write(out / "model.safetensors") as f:
        f.write(b"half a file")
        raise RuntimeError("the disk filled up")
    assert (out / "model.safetensors").read_bytes() == before and not list(out.glob(".*.partial"))
    assert load_bundle(out).metrics == {"x": 1}


class RunsCode:
    """Unpickling this calls os.system: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_crafted_checkpoint_runs_nothing_even_when_torch_is_told_to_unpickle(tiny_corpus, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "model.safetensors").unlink()  # an unfinished run, so --resume reads latest.ckpt
    marker = tmp_path / "pwned"
    ckpt = torch.load(run / "checkpoints" / "latest.ckpt", weights_only=True)
    ckpt["payload"] = RunsCode(marker)
    torch.save(ckpt, run / "checkpoints" / "latest.ckpt")
    r = run_cli("train", "--resume", "-m", str(tiny_corpus), "--out", str(run), TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    assert r.returncode == 2 and not marker.exists(), r.stderr[-2000:]
    assert "latest.ckpt holds objects other than tensors" in r.stderr and "Traceback" not in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.strip()]) == 1
    with pytest.raises(pickle.UnpicklingError):  # what torch itself would have done: the guard is ours
        torch.load(run / "checkpoints" / "latest.ckpt", weights_only=True)


@pytest.mark.parametrize("spoil", [truncate, lambda p: p.write_bytes(os.urandom(1000)), lambda p: p.write_bytes(b"")])
def test_resume_from_a_damaged_checkpoint_is_refused_in_one_line(tiny_corpus, tiny_run, tmp_path, spoil):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "model.safetensors").unlink()
    spoil(run / "checkpoints" / "latest.ckpt")
    with pytest.raises(SignlabError, match="latest.ckpt is damaged"):
        load_checkpoint(run / "checkpoints" / "latest.ckpt")
    r = run_cli("train", "--resume", "-m", str(tiny_corpus), "--out", str(run))
    assert r.returncode == 2 and "latest.ckpt is damaged" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_metrics_json_is_strict_json(tiny_run):
    json.loads((tiny_run / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))


def test_a_bundle_says_its_task_in_its_config_and_nothing_else_decides(bundle, tmp_path):
    import yaml

    from signlab.inference.bundle import bundle_task
    from signlab.inference.engine import load_sentence_bundle

    assert yaml.safe_load((bundle / "config.yaml").read_text())["task"] == "gloss"
    (bundle / "bank.npz").write_bytes(b"a file a sentence bundle has")  # once enough to pass for a sentence bundle
    assert bundle_task(bundle) == "gloss" and load_bundle(bundle).config.task == "gloss"
    with pytest.raises(SignlabError, match="is a gloss model bundle, not a sentence one: use signlab recognize"):
        load_sentence_bundle(bundle)
    old = yaml.safe_load((bundle / "config.yaml").read_text())
    del old["task"]  # written before configs named their task: read from its sections
    (bundle / "config.yaml").write_text(yaml.safe_dump(old))
    assert bundle_task(bundle) == "gloss"
    with pytest.raises(SignlabError, match="missing is not a model bundle: it does not exist"):
        bundle_task(tmp_path / "missing")
