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
