"""What a model wrapper is given: which checkpoint and where it runs. Free of torch and of the application's
config, so that the config can build specs and the wrappers can read them without either depending on
the other's internals."""
from __future__ import annotations

from dataclasses import dataclass

#: Model id that builds a tiny random-init twin of a model family in code (no download); outputs are
#: meaningless, but depend on the inputs (tests use them to check wiring).
TINY_MODEL = "tiny-random"

#: The weight dtypes a spec may name (the torch dtypes of the same names).
DTYPE_NAMES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelSpec:
    """id: a Hugging Face id, a local checkpoint folder, or TINY_MODEL. revision: a branch, tag or commit
    of the id (None: the default branch). device: "auto" (CUDA when available, else CPU) or a torch device
    string. dtype: "float32", "float16", "bfloat16" (or "auto" where a wrapper documents it). cache_dir:
    the Hugging Face cache (None: HF_HOME). local_files_only: never touch the network."""

    id: str
    device: str = "auto"
    dtype: str = "float32"
    cache_dir: str | None = None
    local_files_only: bool = False
    revision: str | None = None

    @property
    def is_tiny(self) -> bool:
        return self.id == TINY_MODEL

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
