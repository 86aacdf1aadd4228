import pytest

from signlab.errors import SignlabError
from signlab.vocab import BLANK, EOS, PAD, SOS, UNK, Vocabulary, tokenize_words


def test_special_tokens_have_fixed_ids():
    v = Vocabulary.build([["GO", "HOME"]])
    assert [v.index[t] for t in ("<pad>", "<unk>", "<blank>", "<sos>", "<eos>")] == [PAD, UNK, BLANK, SOS, EOS] == [0, 1, 2, 3, 4]


def test_build_orders_by_frequency_then_name_and_respects_min_count():
    v = Vocabulary.build([["B", "A", "C"], ["A", "C"], ["A"]], min_count=2)
    assert v.tokens[5:] == ["A", "C"]


def test_encode_maps_unknown_to_unk_and_decode_drops_specials():
    v = Vocabulary.build([["ME", "GO"]])
    ids = v.encode(["ME", "FLY", "GO"])
    assert ids[1] == UNK
    assert v.decode([SOS, *ids, EOS, PAD, BLANK]) == ["ME", "<unk>", "GO"]
    assert v.unknown(["ME", "FLY"]) == {"FLY"}


def test_save_load_round_trip(tmp_path):
    v = Vocabulary.build([["ME", "GO", "GO"]])
    v.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json").tokens == v.tokens


def test_bad_vocabulary_files_are_clear_errors(tmp_path):
    with pytest.raises(SignlabError, match="must start with"):
        Vocabulary(["A", "B"])
    (tmp_path / "v.json").write_text("{not json")
    with pytest.raises(SignlabError, match="is not a readable vocabulary"):
        Vocabulary.load(tmp_path / "v.json")


def test_tokenize_words():
    assert tokenize_words("Where did you go, yesterday?") == ["where", "did", "you", "go", "yesterday"]
    assert tokenize_words("It's my mother's book.") == ["it's", "my", "mother's", "book"]
