import pytest

from signlab.config import builtin_config, load_config
from signlab.errors import SignlabError
from tests.conftest import REPO


def test_seed_yaml_mirrors_the_seed_config():
    cfg = load_config(REPO / "configs" / "seed.yaml")
    m, t, d = cfg.model, cfg.training, cfg.data
    assert (m.type, m.encoder, m.d_model, m.nhead, m.num_encoder_layers, m.num_decoder_layers, m.input_dim) == (
        "hybrid", "transformer", 512, 8, 6, 3, 1024)
    assert (m.ctc_weight, m.ce_weight) == (0.3, 0.7)
    assert (t.epochs, t.batch_size, t.lr, t.warmup_epochs, t.scheduler, t.gradient_clip) == (100, 8, 1e-4, 5, "cosine", 5.0)
    assert (d.augmentation, d.max_frames) == (True, 150)


def test_hybrid_yaml_is_the_seeds_but_for_what_learns_real_data():
    seed, ours = (load_config(REPO / "configs" / f"{n}.yaml").to_dict() for n in ("seed", "hybrid"))
    changed = {(s, k) for s in seed if isinstance(seed[s], dict) for k in seed[s] if seed[s][k] != ours[s][k]}
    assert changed == {("model", "encoder"), ("model", "num_encoder_layers"), ("model", "ctc_weight"),
                       ("model", "ce_weight"), ("model", "decoder_token_dropout"), ("training", "lr"),
                       ("training", "warmup_epochs")}


def test_builtin_configs_are_packaged_and_valid():
    for name in ("hybrid", "seed", "demo"):
        load_config(builtin_config(name))


def test_overrides_parse_values_like_yaml():
    cfg = load_config(REPO / "configs" / "hybrid.yaml", ["training.epochs=3", "model.input_dim=null", "training.lr=2e-4"])
    assert cfg.training.epochs == 3 and cfg.model.input_dim is None and cfg.training.lr == 2e-4


def test_unknown_key_names_the_key_and_suggests_the_right_one(tmp_path):
    with pytest.raises(SignlabError, match=r"unknown key 'model.d_modle' \(did you mean 'model.d_model'\?\)"):
        load_config(None, ["model.d_modle=64"])
    (tmp_path / "c.yaml").write_text("trainng:\n  epochs: 3\n")
    with pytest.raises(SignlabError, match=r"c.yaml: unknown key 'trainng' \(did you mean 'training'\?\)"):
        load_config(tmp_path / "c.yaml")


def test_wrong_types_and_bad_override_syntax_are_errors():
    with pytest.raises(SignlabError, match="training.epochs"):
        load_config(None, ["training.epochs=lots"])
    with pytest.raises(SignlabError, match="key=value"):
        load_config(None, ["training.epochs"])
    with pytest.raises(SignlabError, match="model.subsampling"):
        load_config(None, ["model.subsampling=3"])


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(SignlabError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("model: [1, 2")
    with pytest.raises(SignlabError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  d_model: 64\n  nhead: [4\n")
    with pytest.raises(SignlabError) as err:
        load_config(bad)
    assert f"{bad}:4:" in str(err.value) and "<unicode string>" not in str(err.value)


def test_set_error_blames_the_override_not_the_file():
    with pytest.raises(SignlabError) as err:
        load_config(REPO / "configs" / "hybrid.yaml", ["training.epochs=lots"])
    assert str(err.value).startswith("--set training.epochs=lots: ") and "hybrid.yaml" not in str(err.value)


@pytest.mark.parametrize("sets, message", [
    (["model.d_model=30", "model.nhead=4"], r"model.d_model=30 must be divisible by model.nhead=4 \(e.g. model.d_model=28 or 32\)"),
    (["model.d_model=33", "model.nhead=3"], "model.d_model=33 must be even"),
    (["model.nhead=0"], "model.nhead"),
])
def test_attention_width_that_heads_cannot_split_is_a_config_error(sets, message):
    with pytest.raises(SignlabError, match=message):
        load_config(REPO / "configs" / "hybrid.yaml", sets)


def test_sentence_width_that_heads_cannot_split_is_a_config_error():
    from signlab.config import SentenceConfig

    with pytest.raises(SignlabError, match="model.embed_dim=100 must be divisible by model.attn_heads=3"):
        load_config(None, ["model.embed_dim=100", "model.attn_heads=3"], SentenceConfig)


def test_width_error_from_overrides_blames_the_overrides():
    with pytest.raises(SignlabError) as err:
        load_config(REPO / "configs" / "hybrid.yaml", ["model.d_model=30", "model.nhead=4"])
    assert str(err.value).startswith("--set model.d_model=30, --set model.nhead=4: model.d_model=30 must be divisible")


def test_a_saved_config_without_later_keys_loads_as_it_was_trained(tmp_path):
    from signlab.config import SentenceConfig

    path = tmp_path / "config.yaml"
    path.write_text("model:\n  d_model: 64\n  nhead: 4\n")
    old = load_config(path, saved=True)  # a run saved before the hand shapes and the attention guide, resumed
    assert (old.model.hand_shape, old.model.attention_guide) == (False, 0.0)
    new = load_config(path)  # the same file as a new run's config: today's defaults
    assert (new.model.hand_shape, new.model.attention_guide) == (True, 1.0)
    path.write_text("model:\n  proj_dim: 64\n")
    assert load_config(path, schema=SentenceConfig, saved=True).model.hand_shape is False  # no guide key there
