"""LOVE: the Self-Seg paper's LLM-based open-vocabulary evaluator (its App. A).

An LLM is asked, noun by noun, which dataset class the noun is "exclusively most similar to", with the
paper's prompt templates: for VOC and Cityscapes the prompt lists the classes; for ADE20K it relies on the
LLM knowing the dataset. The reply is parsed as the paper's Algorithm 1:
  * the quoted names in the reply ('...', "...", curly quotes), intersected with the vocabulary (any name
    the dataset lists for a class, case-insensitive); the first one, in reply order, wins;
  * a noun that already is a class name maps to itself (and the LLM is not asked);
  * a reply with no quoted class name, or 'background', maps to background: VOC's background class, or
    none for datasets without one.
Decoding is greedy (the released code sampled at temperature 1.0 without a seed, so its mappings change
from run to run). Replies are cached in a JSON file keyed by (model, prompt template, class list, reply
length, dtype): a rerun never calls the model for a noun it has seen. The paper's ADE20K template lacks the
noun in its first sentence (a typo; the released code has it): selfseg puts it there.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError, SelfSegError, check
from ..datasets import ClassInfo
from .base import MAPPERS, ClassIndex, HeadNouns, LabelMatch, MapperWithoutLevels, check_level, normalize

DEFAULT_LLM = "meta-llama/Llama-2-7b-chat-hf"

LIST_TEMPLATE = (
    "To which class in the list {classes} is {noun} exclusively most similar to? If {noun} is not similar to "
    "any class in the list or if the term describes stuff instead of things, answer with 'background'. Reply "
    "in single quotation marks with the class name that is part of the list {classes} and do not link it to "
    "any other class name which is not part of the given list or 'background'."
)
KNOWLEDGE_TEMPLATE = (
    "To which class in the {dataset} dataset is {noun} exclusively most similar to? If {noun} is not similar "
    "to any class in {dataset} or if the term describes stuff instead of things, answer with 'background'. "
    "Reply in single quotation marks with the class name that is part of {dataset} and do not link it to any "
    "other class name which is not part of the given list or 'background'."
)
BACKGROUND = "background"
# A quote inside a word ("I'd", "it's") opens nothing: Llama-2-chat starts most replies with "I'd be happy".
_QUOTED = re.compile(r"(?<![A-Za-z])'([^'\n]+?)'(?![A-Za-z])|\"([^\"\n]+)\"|\u2018([^\u2019\n]+)\u2019"
                     r"|\u201c([^\u201d\n]+)\u201d")


def parse_reply(reply: str, index: ClassIndex) -> tuple[int | None, bool]:
    """(class index or None, True when the reply named a class or 'background' in quotes). A <think> block
    is skipped (a reasoning model quotes the classes it weighs there), and a reply cut off inside one named
    nothing."""
    from ...tag.parse import strip_reasoning

    answer, cut_inside = strip_reasoning(reply or "")
    if cut_inside:
        return None, False
    for m in _QUOTED.finditer(answer):
        name = normalize(next(g for g in m.groups() if g is not None))
        if name == BACKGROUND and BACKGROUND not in index.by_name:
            return None, True
        if name in index.by_name:
            return index.by_name[name], True
    return None, False


def _check_template(template: str, key: str = "llm_prompt") -> None:
    """Only {noun}, {classes} and {dataset} may be filled in; literal braces must be doubled."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"{key}: not a valid template ({exc}); write literal braces as {{{{ }}}}") from None
    unknown = fields - {"noun", "classes", "dataset"}
    if "noun" not in fields or unknown:
        raise ConfigError(f"{key}: expected a template with {{noun}} and optionally {{classes}} "
                          f"or {{dataset}} (literal braces doubled), got fields {sorted(fields)}")


def default_cache_dir() -> Path:
    base = os.environ.get("SELFSEG_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "selfseg" / "love"


class LLMMapper(MapperWithoutLevels):
    name = "llm"

    def __init__(self, classes: Sequence[ClassInfo], background: int | None = None,
                 model: str = DEFAULT_LLM, template: str | None = None, list_classes: bool = True,
                 dataset_name: str = "", batch_size: int = 8, max_new_tokens: int = 512,
                 cache: str | Path | None = None, device: str = "auto", dtype: str = "auto",
                 cache_dir: str | None = None, local_files_only: bool = False,
                 spacy_pipeline: str = "auto", llm: Any = None, rare: Any = ()) -> None:
        self.classes = list(classes)
        # Names the class list gives a class only in a rare sense ("throne" for ADE20K's toilet, "coach" for
        # its bus: the dataset's lexicon lists them): a description using one is asked of the LLM like any
        # other, where a plain class name maps to its class unasked.
        self.rare = frozenset(normalize(w) for w in rare)
        self.background = background
        self.index = ClassIndex(self.classes)
        self.model_id = model
        self.template = template or (LIST_TEMPLATE if list_classes else KNOWLEDGE_TEMPLATE)
        self.dataset_name = dataset_name
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device, self.dtype = device, dtype
        self.cache_dir, self.local_files_only = cache_dir, local_files_only
        self._llm = llm
        self.heads = HeadNouns(spacy_pipeline)
        listing = "[" + ", ".join(f"'{c.name}'" for c in self.classes) + "]"
        self._fill = {"classes": listing, "dataset": dataset_name}
        _check_template(self.template)
        # float32 and bfloat16 may answer differently: the key holds the dtype the model will run in; and how
        # a reply is made from the model's tokens (REPLY_FORMAT).
        from ...models.chat import REPLY_FORMAT

        self._key_parts = [model, self.template, listing, dataset_name, max_new_tokens, _effective_dtype(device, dtype),
                           REPLY_FORMAT]
        self._cache_arg = cache
        from ...models.spec import ModelSpec

        self._use_key(ModelSpec(model, cache_dir=cache_dir).identity())
        self.replies: dict[str, str] = self._read_cache()
        self.asked = 0  # nouns sent to the LLM by this mapper (cache misses)

    # -------------------------------------------------------------------------------------------- cache
    def _use_key(self, checkpoint: str) -> None:
        """Key the replies by the checkpoint's identity too (a snapshot's commit, a folder's files), so a
        new snapshot is asked again."""
        self.checkpoint = checkpoint
        key = json.dumps([self._key_parts[0], checkpoint, *self._key_parts[1:]])
        self.key = hashlib.sha256(key.encode()).hexdigest()[:16]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.dataset_name or 'custom'}-{self.model_id}")
        self.cache_path = Path(self._cache_arg) if self._cache_arg else default_cache_dir() / f"{slug}-{self.key}.json"

    def _cache_file(self) -> dict[str, Any]:
        """The cache file's entries ({} when there is none). A file that is not such a cache (not a JSON
        object: a file given by mistake, or damaged) is refused in one line rather than overwritten."""
        if not self.cache_path.exists():
            return {}
        try:
            data = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
            data, problem = None, f"cannot read it as JSON ({reason})"
        else:
            problem = None if isinstance(data, dict) else f"holds a JSON {type(data).__name__}, not an object"
        if problem:
            raise SelfSegError(f"LLM reply cache {self.cache_path}: {problem}; it is left as it is: remove it or "
                               f"set another cache path")
        return data

    def _read_cache(self) -> dict[str, str]:
        entry = self._cache_file().get(self.key, {})
        replies = entry.get("replies", {}) if isinstance(entry, dict) else {}
        # an entry of another shape costs LLM calls, never a wrong mapping
        return {str(k): str(v) for k, v in replies.items()} if isinstance(replies, dict) else {}

    def _write_cache(self) -> None:
        from ...io import atomic_write

        data = self._cache_file()
        data[self.key] = {"model": self.model_id, "template": self.template, "dataset": self.dataset_name,
                          "replies": self.replies}
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.cache_path, lambda f: f.write(json.dumps(data, indent=1, sort_keys=True).encode()))
        except OSError as exc:
            raise SelfSegError(f"LLM reply cache {self.cache_path} cannot be written ({exc.strerror or exc}); "
                               f"set another cache path") from None

    # ---------------------------------------------------------------------------------------------- LLM
    def check_model(self) -> None:
        """Raise now the one-line error loading the LLM would raise later (a checkpoint neither cached nor
        downloadable, or of another kind than a causal LM), reading its config only. With replies cached the
        run may not need the model: then a warning says so instead."""
        spec = self._spec()
        if self._llm is not None or spec.is_tiny:
            return
        from ...models.chat import check_model_type
        from ...models.loading import check_available

        try:
            check_available("causal LM", spec)
            check_model_type(spec, "causal-lm", "evaluation.llm_model")
        except SelfSegError as exc:
            if not self.replies:
                raise
            import warnings

            warnings.warn(f"{exc}; {len(self.replies)} replies are cached: a noun not among them stops the run "
                          f"when it is reached", stacklevel=2)

    def _spec(self) -> Any:
        from ...models.spec import ModelSpec

        return ModelSpec(self.model_id, self.device, self.dtype, self.cache_dir, self.local_files_only)

    @property
    def llm(self) -> Any:
        if self._llm is None:
            from ...models.llm import ChatLM

            self._llm = ChatLM.from_spec(self._spec(), batch_size=self.batch_size, max_new_tokens=self.max_new_tokens)
            if self._llm.checkpoint and self._llm.checkpoint != self.checkpoint:
                # Loading fetched another snapshot than the key named (not cached when this mapper was made,
                # or updated since): its replies are the ones stored under its own key, the key later runs
                # compute up front.
                self._use_key(self._llm.checkpoint)
                self.replies = self._read_cache()
        return self._llm

    def _named(self, key: str | None, default: int | None = None) -> int | None:
        """The class a text or head noun names outright, unless by a rare name; else `default`."""
        if key is None or key in self.rare or key not in self.index.by_name:
            return default
        return self.index.by_name[key]

    def prompt(self, noun: str) -> str:
        return self.template.format(noun=noun, **self._fill)

    def map(self, descriptions: Sequence[str], level: str | None = None) -> list[LabelMatch]:
        check_level(self, level)
        descriptions = list(descriptions)
        nouns = self.heads(descriptions)
        texts = [" ".join(d.split()) for d in descriptions]
        own = [self._named(normalize(t), self._named(n)) for t, n in zip(texts, nouns)]
        todo = list(dict.fromkeys(t for t, o in zip(texts, own) if o is None and t not in self.replies))
        if todo and self.llm is not None:  # loading may re-key the replies to the snapshot it fetched
            todo = list(dict.fromkeys(t for t, o in zip(texts, own) if o is None and t not in self.replies))
        for start in range(0, len(todo), self.batch_size * 8):
            chunk = todo[start : start + self.batch_size * 8]
            for t, r in zip(chunk, self.llm.reply([self.prompt(t) for t in chunk])):
                self.replies[t] = r
            self.asked += len(chunk)
            self._write_cache()  # after every chunk: an interrupted mapping keeps what it paid for
        out = []
        for d, t, n, o in zip(descriptions, texts, nouns, own):
            if o is not None:
                out.append(LabelMatch(description=d, noun=n, cls=self.index.name(o), index=o))
                continue
            idx, _ = parse_reply(self.replies.get(t, ""), self.index)
            if idx is None and self.background is not None:
                idx = self.background
            out.append(LabelMatch(description=d, noun=n, cls=self.index.name(idx), index=idx,
                                  reply=self.replies.get(t)))
        return out


def _effective_dtype(device: str, dtype: str) -> str:
    """The dtype ChatLM will load the model in ("auto": bfloat16 on a GPU, float32 on a CPU)."""
    if dtype != "auto":
        return dtype
    from ...models.loading import resolve_device

    return "bfloat16" if resolve_device(device).type == "cuda" else "float32"


@dataclass(kw_only=True)  # keyword-only: its fields sit beside the other mappers' in the evaluation section
class LlmMapperConfig:
    """The LLM (LOVE) mapper's settings (in a config file: the `evaluation` section)."""

    # LOVE: any transformers chat causal LM ("tiny-random": a tiny random-init model, meaningless replies).
    llm_model: str = DEFAULT_LLM
    # Prompts per generate call.
    llm_batch_size: int = 8
    # Longest LOVE reply, in new tokens: 512 as the released LAVE code decoded; a chat model's preamble can
    # push the quoted class name far into the reply.
    llm_max_new_tokens: int = 512
    # A custom prompt template with {noun} and {classes} or {dataset}; None: the paper's template per dataset.
    llm_prompt: str | None = None
    # Reply cache (JSON); None: a benchmark's <out>/love_cache.json, `selfseg label`'s in ~/.cache/selfseg/love/
    # (SELFSEG_CACHE moves it). Reruns never ask the LLM about a noun twice.
    llm_cache: str | None = None

    def __post_init__(self) -> None:
        check(self.llm_batch_size >= 1 and self.llm_max_new_tokens >= 1, "llm_batch_size / llm_max_new_tokens",
              "integers >= 1", (self.llm_batch_size, self.llm_max_new_tokens))
        check(bool(self.llm_model.strip()), "llm_model", "a model id or folder", self.llm_model)
        if self.llm_prompt is not None:
            _check_template(self.llm_prompt)


@MAPPERS.register("llm", config=LlmMapperConfig, section="evaluation",
                  checkpoints=lambda ev, models: [ev.llm_model])
def llm(config: LlmMapperConfig, models: Any, *, classes: Sequence[ClassInfo], background: int | None = None,
        list_classes: bool = True, dataset_name: str = "", cache: str | Path | None = None, dtype: str = "auto",
        spacy_pipeline: str = "auto", llm: Any = None, lexicon: Any = None, **_: Any) -> LLMMapper:
    """The mapper of a config block into a dataset's classes. The LLM loads like every checkpoint (the shared
    model section's device, cache and offline settings) in the chat models' dtype; cache: the reply cache
    when the block names none; llm: a chat model to use instead (tests); lexicon: the dataset's, whose rare
    names are asked rather than taken as their class."""
    return LLMMapper(classes, background=background, model=config.llm_model, template=config.llm_prompt,
                     list_classes=list_classes, dataset_name=dataset_name, batch_size=config.llm_batch_size,
                     max_new_tokens=config.llm_max_new_tokens, cache=config.llm_cache or cache, device=models.device,
                     dtype=dtype, cache_dir=models.cache_dir, local_files_only=models.local_files_only,
                     spacy_pipeline=spacy_pipeline, llm=llm, rare=lexicon.rare if lexicon is not None else ())
