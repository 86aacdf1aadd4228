"""Malformed input, generated: every loader and the Python API give a result, a counted exclusion,
or a SignlabError naming the file, never another exception."""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from signlab.config import Config, SentenceConfig, load_config
from signlab.data.features import Preprocessor, load_features, scan
from signlab.data.manifest import read_manifest
from signlab.data.stats import FeatureStats
from signlab.errors import SignlabError
from signlab.inference.bank import EmbeddingBank
from signlab.inference.bundle import load_bundle
from signlab.inference.recognizer import Recognizer
from signlab.kinds import HOLISTIC
from signlab.training.callbacks import load_checkpoint
from signlab.vocab import Vocabulary

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="signlab-prop-"))


def assert_named(err: SignlabError, path: Path) -> None:
    assert str(path) in str(err) or path.name in str(err), str(err)


# ----------------------------------------------------------------------------- manifests

cells = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)
manifest_text = st.one_of(
    st.lists(st.lists(cells, max_size=8), max_size=6).map(lambda rows: "\n".join(",".join(r) for r in rows)),
    st.lists(st.lists(cells, min_size=3, max_size=8), max_size=6).map(
        lambda rows: "id,split,features,glosses\n" + "\n".join(",".join(r) for r in rows)),
    st.lists(st.lists(cells, max_size=8), max_size=4).map(
        lambda rows: "name|video|start|end|speaker|orth|translation\n" + "\n".join("|".join(r) for r in rows)),
)


@SETTINGS
@given(text=manifest_text, encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]), noise=st.binary(max_size=20))
def test_manifest_reader_gives_rows_or_a_named_error(text, encoding, noise):
    folder = scratch()
    path = folder / "x.train.corpus.csv"
    path.write_bytes(text.encode(encoding, errors="replace") + noise)
    try:
        samples = read_manifest(path)
    except SignlabError as err:
        assert_named(err, path)
        return
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = scan(samples, Preprocessor(HOLISTIC), cache_bytes=0)  # every row is kept or excluded with a reason
    assert len(result.samples) + len(result.excluded) == len(samples)


# ----------------------------------------------------------------------------- feature arrays

arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int16, np.uint8, np.bool_, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
    elements=None,
)


@SETTINGS
@given(array=arrays, garbage=st.one_of(st.none(), st.binary(max_size=64)))
def test_feature_files_load_or_give_a_named_error(array, garbage):
    folder = scratch()
    path = folder / "clip.npy"
    if garbage is None:
        np.save(path, array)
    else:
        path.write_bytes(garbage)
    try:
        out = load_features(path, expected_dim=6)
    except SignlabError as err:
        assert_named(err, path)
    else:
        assert out.dtype == np.float32 and out.ndim == 2 and out.shape[1] == 6 and np.isfinite(out).all()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def recognizer(tiny_run):
    return Recognizer.load(tiny_run)


@SETTINGS
@given(array=hnp.arrays(dtype=np.float32,
                        shape=st.sampled_from([(0,), (540,), (3, 540), (40, 540), (40, 539), (2, 40, 540), (40, 1)]),
                        elements=st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.just(0.0))),
       dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int8]))
def test_python_api_gives_glosses_or_a_signlab_error(recognizer, array, dtype):
    with np.errstate(all="ignore"):
        array = array.astype(dtype)
    try:
        glosses = recognizer.recognize(array)
    except SignlabError:
        return
    assert isinstance(glosses, list) and all(g in recognizer.vocab for g in glosses)


# ----------------------------------------------------------------------------- configs

yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=10), children, max_size=3)),
    max_leaves=8,
)
sections = st.dictionaries(st.sampled_from(["model", "training", "data", "decoding", "engine", "extract", "other"]),
                           st.one_of(yaml_values, st.dictionaries(st.sampled_from(
                               ["d_model", "nhead", "epochs", "lr", "method", "fps", "beam_size", "typo"]), yaml_values,
                               max_size=3)), max_size=4)


@SETTINGS
@given(data=st.one_of(sections, yaml_values), schema=st.sampled_from([Config, SentenceConfig]),
       sets=st.lists(st.tuples(st.sampled_from(["model.d_model", "training.lr", "x", "model", "decoding.method"]),
                               st.text(max_size=6)).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=2),
       raw=st.one_of(st.none(), st.text(max_size=40)))
def test_configs_load_or_give_a_named_error(data, schema, sets, raw):
    folder = scratch()
    path = folder / "c.yaml"
    path.write_text(raw if raw is not None else yaml.safe_dump(data))
    try:
        cfg = load_config(path, sets, schema)
    except SignlabError as err:
        assert str(path) in str(err) or "--set" in str(err), str(err)
    else:
        assert isinstance(cfg, schema)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- bundle files and checkpoints

BUNDLE_PARTS = ["config.yaml", "vocab.json", "stats.npz", "model.safetensors", "metrics.json"]


def spoil(data: bytes, how: str, at: float, junk: bytes) -> bytes:
    cut = int(len(data) * at)
    return {"truncate": data[:cut], "overwrite": data[:cut] + junk + data[cut + len(junk):], "replace": junk,
            "append": data + junk}[how]


@SETTINGS
@given(part=st.sampled_from(BUNDLE_PARTS), how=st.sampled_from(["truncate", "overwrite", "replace", "append"]),
       at=st.floats(0, 1), junk=st.binary(min_size=1, max_size=64))
def test_damaged_bundles_load_or_give_a_named_error(tiny_run, part, how, at, junk):
    folder = scratch() / "bundle"
    shutil.copytree(tiny_run, folder, ignore=shutil.ignore_patterns("checkpoints", "*.png", "*.jsonl"))
    (folder / part).write_bytes(spoil((folder / part).read_bytes(), how, at, junk))
    try:
        load_bundle(folder)
    except SignlabError as err:
        assert str(folder) in str(err), str(err)
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


@SETTINGS
@given(how=st.sampled_from(["truncate", "overwrite", "replace", "append"]), at=st.floats(0, 1),
       junk=st.binary(min_size=1, max_size=64))
def test_damaged_checkpoints_load_or_give_a_named_error(tiny_run, how, at, junk):
    folder = scratch()
    path = folder / "latest.ckpt"
    path.write_bytes(spoil((tiny_run / "checkpoints" / "latest.ckpt").read_bytes(), how, at, junk))
    try:
        assert "state_dict" in load_checkpoint(path)
    except SignlabError as err:
        assert_named(err, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@SETTINGS
@given(loader=st.sampled_from([Vocabulary.load, FeatureStats.load, EmbeddingBank.load]), junk=st.binary(max_size=200),
       as_npz=st.booleans(), arrays=st.dictionaries(st.sampled_from(["mean", "std", "embeddings", "sequences", "tokens"]),
                                                    hnp.arrays(np.float32, hnp.array_shapes(max_dims=3)), max_size=3))
def test_small_bundle_files_load_or_give_a_named_error(loader, junk, as_npz, arrays):
    folder = scratch()
    path = folder / "file.npz"
    if as_npz:
        np.savez(path, **arrays)
    else:
        path.write_bytes(junk)
    try:
        loader(path)
    except SignlabError as err:
        assert_named(err, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
