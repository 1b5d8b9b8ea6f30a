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
    """The real ADE20K validation photos shipped beside the repository (../shared/data/ade20k_sample)."""
    imgs = sorted((SHARED / "images").glob("*.jpg"))
    if not imgs:
        pytest.skip(reason=f"real sample photos not found under {SHARED}")
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
