"""The packed store: the same rows, features and batches as the manifest it was packed from, read
from a few shard files; damaged, cut-short or foreign stores get one-line errors; packing resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, TINY_MODEL, run_cli
from signlab.config import load_config
from signlab.data import shards, store
from signlab.data.dataset import GlossDataset, LengthBucketBatchSampler, hybrid_collate_fn
from signlab.data.features import Preprocessor, scan
from signlab.data.manifest import read_manifests
from signlab.data.stats import RunningStats
from signlab.errors import SignlabError
from signlab.kinds import HOLISTIC
from signlab.vocab import Vocabulary


@pytest.fixture(scope="module")
def packed(tiny_corpus, tmp_path_factory) -> Path:
    """``tiny_corpus`` packed into shards of about 0.5 MiB (several shards): read it, copy it before changing it."""
    return store.pack([tiny_corpus], tmp_path_factory.mktemp("store") / "store", shard_gb=0.0005)


def copy_of(packed: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(packed, tmp_path / "store"))


def batches(samples, split: str, num_replicas: int = 1, rank: int = 0, pad_replicas: bool = True) -> list[dict]:
    prep, rows = Preprocessor(HOLISTIC), [s for s in samples if s.split == split]
    result = scan(rows, prep, stats=RunningStats(prep.dim) if split == "train" else None)
    vocab = Vocabulary.build(s.glosses for s in rows)
    ds = GlossDataset(result, prep, vocab, max_frames=300)
    sampler = LengthBucketBatchSampler(ds.lengths, 4, seed=5, num_replicas=num_replicas, rank=rank,
                                       pad_replicas=pad_replicas)
    return [hybrid_collate_fn([ds[i] for i in b]) for b in sampler]


def test_a_store_holds_its_manifests_rows_and_gives_identical_batches(tiny_corpus, packed):
    loose, rows = read_manifests([tiny_corpus]), read_manifests([packed])
    assert [(s.id, s.split, s.glosses, s.text, s.signer) for s in rows] == \
           [(s.id, s.split, s.glosses, s.text, s.signer) for s in loose]
    assert len(json.loads((packed / "index.json").read_text())["shards"]) > 1
    assert all(s.span and s.features.parent == packed for s in rows)
    for split in ("train", "dev"):
        ours, theirs = batches(rows, split), batches(loose, split)
        assert len(ours) == len(theirs) > 1
        for a, b in zip(ours, theirs):
            assert a["ids"] == b["ids"] and torch.equal(a["features"], b["features"])
            assert torch.equal(a["ctc_targets"], b["ctc_targets"])


def test_two_ddp_ranks_read_every_clip_of_a_store_once(tiny_corpus, packed):
    rows, loose = read_manifests([packed]), read_manifests([tiny_corpus])
    train_ids = sorted(s.id for s in rows if s.split == "train")
    seen = []
    for rank in (0, 1):
        ours = batches(rows, "train", num_replicas=2, rank=rank, pad_replicas=False)
        theirs = batches(loose, "train", num_replicas=2, rank=rank, pad_replicas=False)
        assert [b["ids"] for b in ours] == [b["ids"] for b in theirs]
        seen += [i for b in ours for i in b["ids"]]
    assert sorted(seen) == train_ids  # none lost, none twice


def test_a_store_is_not_read_clip_by_clip_to_start(packed, monkeypatch):
    """Lengths, motion and train statistics come from the index: no clip is read before training,
    and the statistics equal those of a pass over the clips."""
    rows = [s for s in read_manifests([packed]) if s.split == "train"]
    prep = Preprocessor(HOLISTIC)
    passed = RunningStats(prep.dim)
    for s in rows:
        x = prep.sample(s)
        passed.update(x, prep.present(x))
    monkeypatch.setattr(shards, "read_clip", lambda *a: pytest.fail("a clip was read"))
    indexed = RunningStats(prep.dim)
    result = scan(rows, prep, stats=indexed, cache_bytes=0)
    assert result.lengths == [s.span[1] for s in rows] and result.arrays is None
    a, b = passed.finalize(), indexed.finalize()
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-6)
    np.testing.assert_allclose(a.std, b.std, rtol=1e-5)


def test_training_and_evaluation_take_a_store(tiny_corpus, packed, tmp_path):
    """The same run from the store and from the manifest: the same dev results and weights; evaluate reads a store."""
    from signlab.training.run import train

    cfg = load_config(REPO / "configs" / "hybrid.yaml", [*TINY_MODEL, "training.epochs=1"])
    runs = [train([m], cfg, tmp_path / name, progress=False) for name, m in (("loose", tiny_corpus), ("packed", packed))]
    dev = [{k: v for k, v in json.loads((run / "metrics.json").read_text())["dev"].items() if "seconds" not in k}
           for run in runs]
    assert dev[0] == dev[1] and "wer" in dev[0]
    weights = [load_file(run / "model.safetensors") for run in runs]  # equal but for the statistics' last bits
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-5) for k in weights[0])
    r = run_cli("evaluate", str(runs[1]), "-m", str(packed / "index.json"), "--split", "test")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "test" in r.stdout


def test_float16_store_is_close_and_half_the_size(tiny_corpus, packed, tmp_path):
    half = store.pack([tiny_corpus], tmp_path / "half", dtype="float16")
    size = lambda p: sum(f.stat().st_size for f in p.glob("shard-*.bin"))  # noqa: E731
    assert size(half) * 2 == size(packed)
    a, b = read_manifests([packed])[0], read_manifests([half])[0]
    prep = Preprocessor(HOLISTIC)
    np.testing.assert_allclose(prep.read(a.features, a.span), prep.read(b.features, b.span), atol=1e-3)


def test_values_beyond_float16_are_an_error_not_inf(tmp_path):
    clip = tmp_path / "big.npy"
    np.save(clip, np.full((10, 6), 1e6, np.float32))
    (tmp_path / "m.csv").write_text("id,split,features,glosses\na,train,big.npy,HELLO\n")
    with pytest.raises(SignlabError, match=r"m.csv:2 \(id a\): values beyond float16's range.*--dtype float32"):
        store.pack([tmp_path / "m.csv"], tmp_path / "store", dtype="float16", feature_kind="custom-6")


def test_a_shard_left_partial_by_a_kill_never_reads_as_whole(tiny_corpus, packed, tmp_path):
    again = copy_of(packed, tmp_path)
    (again / "index.json").unlink()  # killed before the index was written, in the middle of a shard
    (again / ".shard-00001.bin.partial").write_bytes(b"\0" * 100)
    with pytest.raises(SignlabError, match="is a folder without index.json.*run it again"):
        read_manifests([again])
    store.pack([tiny_corpus], again, shard_gb=0.0005)
    assert not list(again.glob(".*partial")) and not list(again.glob("shard-*.json"))
    for name in ["clips.csv", "index.json", "stats.npz", *(s.name for s in packed.glob("shard-*.bin"))]:
        assert (again / name).read_bytes() == (packed / name).read_bytes(), name


def test_packing_again_keeps_the_whole_shards_of_a_killed_packing(tiny_corpus, packed, tmp_path, monkeypatch):
    reads = []
    original_read, original_close = Preprocessor.read, store._ShardWriter.close
    monkeypatch.setattr(Preprocessor, "read", lambda self, *a: reads.append(a) or original_read(self, *a))

    def killed_at_the_third(self, end):
        if self.file == "shard-00002.bin":
            raise KeyboardInterrupt
        return original_close(self, end)

    monkeypatch.setattr(store._ShardWriter, "close", killed_at_the_third)
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        store.pack([tiny_corpus], out, shard_gb=0.0005)
    assert not (out / "index.json").exists() and len(list(out.glob("shard-*.json"))) == 2
    kept = json.loads((out / "shard-00001.json").read_text())["end"]
    monkeypatch.setattr(store._ShardWriter, "close", original_close)
    reads.clear()
    store.pack([tiny_corpus], out, shard_gb=0.0005)
    assert len(reads) == len(read_manifests([tiny_corpus])) - kept  # the clips of the whole shards are not read again
    for name in ["clips.csv", "index.json", "stats.npz", *(s.name for s in packed.glob("shard-*.bin"))]:
        assert (out / name).read_bytes() == (packed / name).read_bytes(), name


@pytest.mark.parametrize("damage, message", [
    (lambda s: (s / "shard-00001.bin").write_bytes((s / "shard-00001.bin").read_bytes()[:-8]),
     r"shard .*shard-00001.bin is [\d,]+ bytes; the index says [\d,]+ \(\d+ rows\).*pack it again"),
    (lambda s: (s / "shard-00001.bin").unlink(), r"shard .*shard-00001.bin is missing"),
    (lambda s: (s / "index.json").write_text("{not json"), r"index.json is damaged .*pack the store again"),
    (lambda s: (s / "index.json").write_text(json.dumps({**json.loads((s / "index.json").read_text()), "version": 99})),
     r"packs stores in version 99; this one reads version 1: pack the manifests again"),
    (lambda s: (s / "clips.csv").write_text((s / "clips.csv").read_text().replace(",0,", ",1,", 1)),
     r"clips.csv: the clip list disagrees with the shards at clips.csv:2 .*pack the store again"),
    (lambda s: (s / "clips.csv").write_text((s / "clips.csv").read_text().replace(",0,", ",x,", 1)),
     r"clips.csv, line 2: first and frames must be whole numbers"),
])
def test_a_damaged_store_is_a_one_line_error(packed, tmp_path, damage, message):
    broken = copy_of(packed, tmp_path)
    damage(broken)
    r = run_cli("pack", str(broken), "--out", str(tmp_path / "repacked"))  # any command that reads it
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1
    with pytest.raises(SignlabError, match=message):
        shards._INDEXES.clear()
        read_manifests([broken])


def test_pack_from_the_command_line_says_what_it_wrote(tiny_corpus, tmp_path):
    r = run_cli("pack", str(tiny_corpus), "--out", str(tmp_path / "s"), "--dtype", "float16")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"written: {tmp_path / 's'}" in r.stdout and "packed 60 clips (train 36, dev 12, test 12)" in r.stderr
    r = run_cli("pack", str(tiny_corpus), "--out", str(tmp_path / "s"), "--dtype", "float16")
    assert r.returncode == 0 and "already holds these clips" in r.stderr
    r = run_cli("pack", str(tiny_corpus), "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "holds a store packed from other rows or options" in r.stderr
