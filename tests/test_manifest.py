import pytest

from signlab.data.manifest import read_manifest, read_manifests
from signlab.errors import SignlabError


def write(path, text):
    path.write_text(text)
    return path


def test_csv_manifest_paths_are_relative_and_extra_columns_kept(tmp_path):
    m = write(tmp_path / "m.csv", "id,split,features,glosses,text,signer,sentence_id,category\n"
              "a,train,feats/a.npy,ME GO,I go.,s1,7,statement\nb,DEV,feats/b.npy,YOU,You.,s2,8,x\n")
    a, b = read_manifest(m)
    assert a.features == tmp_path / "feats/a.npy" and a.glosses == ("ME", "GO") and a.text == "I go."
    assert a.extra == {"sentence_id": "7", "category": "statement"} and a.where == "m.csv:2 (id a)"
    assert b.split == "dev" and b.row == 3


def test_sentence_column_is_accepted_as_text(tmp_path):
    m = write(tmp_path / "m.csv", "id,split,features,sentence\na,train,a.npy,Hello there.\n")
    assert read_manifest(m)[0].text == "Hello there."


def test_missing_columns_bad_split_and_duplicates_are_reported(tmp_path):
    with pytest.raises(SignlabError, match=r"lacks the column\(s\) \['split'\]"):
        read_manifest(write(tmp_path / "a.csv", "id,features\na,a.npy\n"))
    with pytest.raises(SignlabError, match=r"line 3: 'validation'"):
        read_manifest(write(tmp_path / "b.csv", "id,split,features\na,train,a.npy\nb,validation,b.npy\n"))
    with pytest.raises(SignlabError, match=r"'a' at c.csv:3"):
        read_manifests([write(tmp_path / "c.csv", "id,split,features\nb,train,b.npy\na,train,a.npy\na,dev,c.npy\n")])
    with pytest.raises(SignlabError, match="not found"):
        read_manifest(tmp_path / "none.csv")
    with pytest.raises(SignlabError, match="empty"):
        read_manifest(write(tmp_path / "e.csv", ""))


def test_phoenix_corpus_files_are_read_as_they_are(tmp_path):
    m = write(tmp_path / "PHOENIX-2014-T.dev.corpus.csv",
              "name|video|start|end|speaker|orth|translation\n"
              "01April_2010_Thursday_heute-6697|dev/01April_2010_Thursday_heute-6697/1/*.png|-1|-1|Signer08|"
              "REGEN SCHNEE REGION VERSCHWINDEN|regen und schnee lassen an den alpen in der nacht nach .\n")
    (s,) = read_manifest(m, features_dir=tmp_path / "i3d")
    assert s.split == "dev" and s.signer == "Signer08" and s.glosses[0] == "REGEN"
    assert s.features == tmp_path / "i3d" / "01April_2010_Thursday_heute-6697.npy"
    assert s.text.startswith("regen und schnee")
    with pytest.raises(SignlabError, match="cannot tell the split"):
        read_manifest(write(tmp_path / "corpus.csv", m.read_text()))


@pytest.mark.parametrize("encoding, message", [("latin-1", "line 3: byte 0xe9 is not UTF-8"),
                                               ("utf-16", "is UTF-16 text: save it as UTF-8")])
def test_manifest_not_in_utf8_is_a_one_line_error_naming_the_line(tmp_path, encoding, message):
    m = tmp_path / "m.csv"
    m.write_bytes("id,split,features,glosses,text\na,train,a.npy,X,ok\nb,train,b.npy,Y,caf\u00e9\n".encode(encoding))
    with pytest.raises(SignlabError, match=message) as err:
        read_manifest(m)
    assert str(m) in str(err.value)


def test_manifest_with_a_utf8_bom_reads_like_one_without(tmp_path):
    m = tmp_path / "m.csv"
    m.write_bytes("\ufeffid,split,features\na,train,a.npy\n".encode("utf-8"))
    assert [s.id for s in read_manifest(m)] == ["a"]


def test_manifest_that_is_a_folder_or_bad_csv_is_named(tmp_path):
    with pytest.raises(SignlabError, match="is a folder"):
        read_manifest(tmp_path)
    bad = write(tmp_path / "p.train.corpus.csv", "name|video|start|end|speaker|orth|translation\nonly-a-name\n")
    with pytest.raises(SignlabError, match="line 2: expected 7"):
        read_manifest(bad)


def test_short_long_and_blank_rows_read_as_csv_dictreader_reads_them(tmp_path):
    (tmp_path / "m.csv").write_text("id,split,features,glosses\na,train,a.npy,A B,EXTRA,MORE\n\nb,dev,b.npy\n")
    a, b = read_manifest(tmp_path / "m.csv")
    assert (a.glosses, a.extra, a.row) == (("A", "B"), {}, 2)  # cells past the header are not read
    assert (b.id, b.glosses, b.text, b.row) == ("b", (), "", 3)  # a blank line is skipped, missing cells are empty
