"""What a model wrapper is given: which checkpoint and where it runs (`ModelSpec`), and the config file's
shared `model` section every component factory receives (`ModelConfig`). Free of torch."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, check, choices
from ..resources import split_revision

#: Model id that builds a tiny random-init twin of a model family in code (no download); outputs are
#: meaningless, but depend on the inputs (tests use them to check wiring).
TINY_MODEL = "tiny-random"

#: The weight dtypes a spec may name (the torch dtypes of the same names).
DTYPE_NAMES = ("float32", "float16", "bfloat16")

#: The captioner of the Self-Seg paper: BLIP ViT-L fine-tuned for COCO captions.
PAPER_MODEL = "Salesforce/blip-image-captioning-large"


@dataclass(frozen=True)
class ModelSpec:
    """id: a Hugging Face id, a local checkpoint folder, or TINY_MODEL; "owner/name@rev" pins a revision.
    revision: a branch, tag or commit of the id (None: the one after '@' in the id, else the default
    branch). device: "auto" (CUDA when available, else CPU) or a torch device string. dtype: "float32",
    "float16", "bfloat16" (or "auto" where a wrapper documents it). cache_dir: the Hugging Face cache
    (None: HF_HOME). local_files_only: never touch the network."""

    id: str
    device: str = "auto"
    dtype: str = "float32"
    cache_dir: str | None = None
    local_files_only: bool = False
    revision: str | None = None

    def __post_init__(self) -> None:
        name, revision = split_revision(self.id)
        if revision is not None:
            if self.revision not in (None, revision):
                raise ConfigError(f"{self.id!r} pins revision {revision!r} but revision={self.revision!r} was "
                                 f"also given")
            object.__setattr__(self, "id", name)
            object.__setattr__(self, "revision", revision)

    @property
    def is_tiny(self) -> bool:
        return self.id == TINY_MODEL

    @property
    def name(self) -> str:
        """The id as results record it: with "@revision" when one is pinned."""
        return f"{self.id}@{self.revision}" if self.revision else self.id

    def identity(self) -> str:
        """What names the files behind this spec now, for keys of saved model output: a hub checkpoint's
        snapshot commit (the revision asked for when it is not cached yet), a folder's files (names, sizes,
        modification times), the tiny model's building code. A changed checkpoint then never serves the
        replies of the one before it."""
        h = hashlib.sha256()
        if self.is_tiny:
            here = Path(__file__).parent
            for name in ("tiny.py", "loading.py"):
                h.update((here / name).read_bytes())
            return f"tiny:{h.hexdigest()[:16]}"
        folder = Path(self.id).expanduser()
        if folder.is_dir():
            for root, dirs, files in os.walk(folder):
                # Hidden folders are tools' bookkeeping (.git, huggingface-cli's .cache), rewritten by reads.
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    path = Path(root, name)
                    try:
                        st = path.stat()
                    except OSError:  # a broken link: not a file the model read
                        continue
                    h.update(f"{path.relative_to(folder).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            return f"folder:{h.hexdigest()[:16]}"
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(self.id, "config.json", cache_dir=self.cache_dir, revision=self.revision)
        except Exception:  # an id the cache cannot name (the load will say why)
            found = None
        if isinstance(found, str):
            return f"commit:{Path(found).parent.name}"
        return f"revision:{self.revision or 'default'}"

    def pretrained_kwargs(self, local_files_only: bool) -> dict:
        """Keywords every `from_pretrained` of this spec takes."""
        kw: dict = {"cache_dir": self.cache_dir, "local_files_only": local_files_only}
        if self.revision:
            kw["revision"] = self.revision
        return kw


@dataclass(frozen=True)
class CaptionSampling:
    """Resolved caption sampling settings (a profile with its overrides applied)."""

    top_p: float
    top_k: int
    repetition_penalty: float
    min_length: int
    max_length: int
    length_counts_prompt: bool

    def new_token_limits(self, prompt_tokens: int) -> tuple[int, int]:
        """(min_new_tokens, max_new_tokens) for a prompt of `prompt_tokens` tokens (BOS included)."""
        if not self.length_counts_prompt:
            return self.min_length, self.max_length
        return max(0, self.min_length - prompt_tokens), max(0, self.max_length - prompt_tokens)


@dataclass
class ModelConfig:
    """The config file's `model` section: where every model runs, and the BLIP captioner's checkpoint."""

    # Hugging Face id or local path of a BLIP captioning checkpoint; "owner/name@rev" pins a branch, tag or
    # commit (as every model setting does). The paper uses the ViT-L COCO captioner; the authors' released
    # code uses "Salesforce/blip-image-captioning-base". "tiny-random" builds a tiny random-init model in code
    # for tests and install checks (its captions are noise).
    blip: str = PAPER_MODEL
    # "auto" picks CUDA when available, else CPU; or "cpu", "cuda", "cuda:N", "mps" (checked on this machine).
    device: str = "auto"
    # float32 everywhere (no TF32 on a GPU either); float16 / bfloat16 halve memory and speed up the forwards on a GPU.
    dtype: str = "float32"
    # Hugging Face cache directory (None: the library default, HF_HOME).
    cache_dir: str | None = None
    # Never touch the network; only use checkpoints already in the cache.
    local_files_only: bool = False

    def __post_init__(self) -> None:
        check(self.dtype in DTYPE_NAMES, "dtype", choices(DTYPE_NAMES), self.dtype)

    def spec(self, model_id: str, dtype: str | None = None) -> ModelSpec:
        """The spec a model wrapper loads `model_id` from: this section's device, cache and offline
        settings, and its dtype unless another is given (the chat models have their own)."""
        return ModelSpec(id=model_id, device=self.device, dtype=dtype or self.dtype, cache_dir=self.cache_dir,
                         local_files_only=self.local_files_only)
