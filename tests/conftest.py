from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "ade20k_sample"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def ade_images() -> list[Path]:
    """Real ADE20K validation photos: the three beside the repository (../shared/data/ade20k_sample) when
    present, else the two the repository ships in examples/images."""
    imgs = sorted((SHARED / "images").glob("*.jpg")) or sorted((REPO / "examples" / "images").glob("*.jpg"))
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
    """A chat model whose replies are scripted (`respond(request) -> str`), run through selfseg's real
    batching and caching (`ChatModelBase.chat`). For testing parsers and conversation flows: the replies
    are the test's, not a model's."""

    def __new__(cls, respond, batch_size: int = 4, cache=None, model_id: str = "scripted"):
        from selfseg.models.chat import ChatModelBase

        class _Scripted(ChatModelBase):
            def __init__(self) -> None:
                super().__init__()
                self.model_id, self.batch_size, self.max_new_tokens = model_id, batch_size, 64
                self.cache, self.requests = cache, []

            def _generate(self, requests):
                self.requests += list(requests)
                return [respond(r) for r in requests]

        return _Scripted()


@pytest.fixture
def scripted_chat():
    return ScriptedChat
