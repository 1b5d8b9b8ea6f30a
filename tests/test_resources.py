from __future__ import annotations

from pathlib import Path

import pytest

from selfseg.errors import ResourceMissingError
from selfseg.resources import install_wordnet_from_dir


@pytest.mark.filterwarnings("ignore:The multilingual functions")
def test_wordnet_from_a_local_database(tmp_path, monkeypatch):
    src = Path("/usr/share/wordnet")
    if not (src / "data.noun").is_file():
        pytest.skip(reason="no local WordNet database (Debian package wordnet-base) on this machine")
    dest = install_wordnet_from_dir(src, tmp_path)
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)] + nltk.data.path)  # NLTK reads only its own paths

    wn = WordNetCorpusReader(str(dest), None)
    assert wn.morphy("hydrants", wn.NOUN) == "hydrant"
    assert len(list(wn.all_synsets("n"))) == 82115  # WordNet 3.0
    assert len((dest / "lexnames").read_text().splitlines()) == 45


def test_not_a_wordnet_directory(tmp_path):
    with pytest.raises(ResourceMissingError, match="not a WordNet database"):
        install_wordnet_from_dir(tmp_path, tmp_path / "out")


def test_load_wordnet_answers_as_nltks_own_reader():
    """selfseg's reader skips NLTK's mapping of WordNet 3.0 onto itself (for other languages' lemmas);
    every English answer is the same as nltk.corpus.wordnet's, and it loads once per process."""
    from nltk.corpus import wordnet as stock

    from selfseg.resources import load_wordnet

    wn = load_wordnet()
    assert load_wordnet() is wn and wn.get_version() == "3.0" and wn.map30 is None
    for word in ("dog", "geese", "leaves", "glasses", "traffic_light", "bank", "mice", "running", "better",
                 "hot_dog", "teeth", "cacti"):
        for pos in (None, "n", "v", "a", "r"):
            assert [s.name() for s in wn.synsets(word, pos)] == [s.name() for s in stock.synsets(word, pos)]
        assert wn.morphy(word, "n") == stock.morphy(word, "n")
    ours, theirs = wn.synset("poodle.n.01"), stock.synset("poodle.n.01")
    assert [s.name() for s in ours.closure(lambda s: s.hypernyms())] == \
        [s.name() for s in theirs.closure(lambda s: s.hypernyms())]
    assert sorted(wn.all_lemma_names("n")) == sorted(stock.all_lemma_names("n"))


def test_wordnet_from_a_zip_and_a_missing_one(tmp_path, monkeypatch):
    """As NLTK reads it: a wordnet.zip on the data path (what the GPU kit carries) serves as the folder does;
    none at all is one line naming the fix."""
    import zipfile

    import nltk

    from selfseg import resources

    folder = Path(nltk.data.find("corpora/wordnet").path)
    want = [s.name() for s in resources.load_wordnet().synsets("geese")]
    (tmp_path / "zipped" / "corpora").mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "zipped" / "corpora" / "wordnet.zip", "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"wordnet/{f.name}")
    monkeypatch.setattr(resources, "_wordnet_cache", [])
    monkeypatch.setattr(resources, "default_nltk_dir", lambda: tmp_path / "zipped")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "zipped")])
    wn = resources.load_wordnet()
    assert "wordnet.zip" in str(wn.root) and [s.name() for s in wn.synsets("geese")] == want

    monkeypatch.setattr(resources, "_wordnet_cache", [])
    monkeypatch.setattr(resources, "default_nltk_dir", lambda: tmp_path / "empty")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    with pytest.raises(ResourceMissingError, match="WordNet is not installed for NLTK; run `selfseg resources`"):
        resources.load_wordnet()
