"""Vision-language taggers (TALOS, Sect. 2.1): ask a VLM for the tags, or have it describe the image and
an LLM extract the tags; either with optional self-reflection rounds.

- "vlm": the VLM sees the image and answers with a JSON list of singular object names.
- "describe_extract": the VLM writes a free description; a text-only chat LM (`vlm.llm`, or the VLM
  itself without the image) extracts the JSON list from it.

Every model call covers the whole batch (one conversation per image, `vlm.batch_size` rows per generate
call), decoding is greedy, and replies are cached per (model, image, conversation): a rerun asks nothing.
A reply with no parsable list gives no tags and a note in `TagResult.notes`, never an error. Each result
keeps the full transcript in `TagResult.replies`.
"""
from __future__ import annotations

import string
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, check, choices
from ..io import LoadedImage
from ..models.chat import ChatModelBase, ChatRequest
from ..models.spec import DTYPE_NAMES, ModelConfig
from .base import TAGGERS
from .nouns import NounsConfig
from .parse import ParsedTags, TagNormaliser, parse_tags, strip_reasoning
from .result import NounSupport, TagResult

#: The chat models' dtypes (vlm.dtype): "auto" is bfloat16 on a GPU, float32 on a CPU.
VLM_DTYPES = ("auto", *DTYPE_NAMES)


@dataclass
class VlmConfig:
    # Image-text-to-text chat model (transformers' AutoModelForImageTextToText) of the "vlm" and
    # "describe_extract" taggers and of image-specific prompt enrichment. Qwen2.5-VL is TALOS's tagger;
    # "Qwen/Qwen2.5-VL-7B-Instruct" is stronger, 3B fits a laptop. "tiny-random": a tiny random-init model.
    model: str = "Qwen/Qwen2.5-VL-3B-Instruct"
    # Text-only chat LM (AutoModelForCausalLM) that extracts keywords from descriptions (describe_extract)
    # and writes generic tag descriptions (segment.enrich: generic). None, or the VLM's own checkpoint: the
    # VLM itself, without an image (TALOS's same-model option; one model in memory). TALOS used DeepSeek-R1;
    # its <think> blocks are skipped.
    llm: str | None = None
    # "auto": bfloat16 on a GPU, float32 on a CPU; or float32 / float16 / bfloat16.
    dtype: str = "auto"
    # Conversations per generate call (each row holds its own image).
    batch_size: int = 4
    # Text-only conversations per generate call (describe_extract's extraction, generic enrichment): rows
    # without an image are short, so more of them fit in one call.
    text_batch_size: int = 16
    # Longest reply, in new tokens.
    max_new_tokens: int = 256
    # Scene context added to the prompts ("an indoor kitchen", "a street seen from a car").
    context: str = ""
    # Ask for at most this many tags, most prominent first, and keep at most this many (0: no limit).
    max_tags: int = 0
    # Self-reflection rounds: the model sees its previous answer and may revise it (0: off). For
    # describe_extract the extractor reflects on its keyword list.
    reflection_rounds: int = 0
    # Prompt templates; None: the built-in ones (selfseg/tag/vlm.py). {context} and {limit} are filled with a
    # sentence each (or nothing); literal braces are doubled. The vlm tagger's question:
    tag_prompt: str | None = None
    # describe_extract: the request for a description of the image.
    describe_prompt: str | None = None
    # describe_extract: the request to list the objects of {description} (required in the template).
    extract_prompt: str | None = None
    # The self-reflection request (vlm.reflection_rounds).
    reflection_prompt: str | None = None
    # Reply cache (SQLite): replies are keyed by (model and its checkpoint's files, dtype, image pixels,
    # conversation, max_new_tokens), so a rerun never asks the model again. None: no cache.
    cache: str | None = "~/.cache/selfseg/replies.sqlite"

    def __post_init__(self) -> None:
        check(self.dtype in VLM_DTYPES, "dtype", choices(VLM_DTYPES), self.dtype)
        check(self.batch_size >= 1 and self.text_batch_size >= 1 and self.max_new_tokens >= 1,
              "batch_size / text_batch_size / max_new_tokens", "integers >= 1",
              (self.batch_size, self.text_batch_size, self.max_new_tokens))
        check(self.max_tags >= 0 and self.reflection_rounds >= 0, "max_tags / reflection_rounds", "integers >= 0",
              (self.max_tags, self.reflection_rounds))
        for name in ("tag_prompt", "describe_prompt", "extract_prompt", "reflection_prompt"):
            if getattr(self, name) is not None:
                check_template(getattr(self, name), name,
                               ("description", *SENTENCES) if name == "extract_prompt" else SENTENCES)
        check(self.extract_prompt is None or "description" in _fields(self.extract_prompt), "extract_prompt",
              "a template containing {description}", self.extract_prompt)

TAG_PROMPT = (
    "List every kind of object and region you can see in this image, including the background "
    "(sky, wall, floor, road, grass, water).{context} Reply with a JSON list of names only, for example "
    '["dog", "grass", "fence"]. Use short, generic, singular names: "shoe", not "pair of shoes"; "sofa", '
    'not "big red sofa". Name each kind of thing once.{limit} No other text.'
)
DESCRIBE_PROMPT = (
    "Describe this image in detail.{context} Mention every object, animal and person you can see and the "
    "regions around them: sky, walls, floor, ground, road, vegetation, water."
)
EXTRACT_PROMPT = (
    "Here is a description of a photo:\n\n{description}\n\nList the things the description says are "
    'visible in the photo. Reply with a JSON list of names only, for example ["dog", "grass", "fence"]. Use '
    'short, generic, singular names: "shoe", not "pair of shoes"; "sofa", not "big red sofa". Name each kind '
    "of thing once.{limit} No other text."
)
REFLECTION_PROMPT = (
    "Check your list. Remove anything that is not really there, add visible objects or regions you missed, "
    "and make every name short, generic and singular.{limit} Reply with the corrected JSON list only."
)


def _fields(template: str) -> list[str]:
    """The {fields} a template names ({{ and }} are literal braces); ValueError for a stray brace."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def check_template(template: str, setting: str, allowed: Sequence[str]) -> None:
    """ConfigError naming the setting for a stray brace or a field not in `allowed` exactly: str.format would
    also read {context.strip} or {limit[0]} and send the model a method's repr."""
    names = ", ".join("{" + k + "}" for k in allowed)
    try:
        parsed = [(name, spec) for _, name, spec, _ in string.Formatter().parse(template) if name is not None]
        # a field inside a format spec ({context:{limit}}) would be filled with a sentence and break the spec
        wrong = [name for name, spec in parsed if name not in allowed] + \
            [f"{name}:{spec}" for name, spec in parsed if "{" in (spec or "")]
    except ValueError as exc:
        raise ConfigError(f"{setting}: cannot fill the template ({exc}); it may use {names}, and literal "
                          f"braces must be doubled") from None
    if wrong:
        raise ConfigError(f"{setting}: the template names {{{wrong[0]}}}; it may use {names}, and literal "
                          f"braces must be doubled")
    try:  # the values are always text: a format spec that text refuses, or one naming a field, fails here
        template.format(**dict.fromkeys(allowed, ""))
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{setting}: cannot fill the template ({type(exc).__name__}: {exc}); it may use "
                          f"{names}, and literal braces must be doubled") from None


def fill(template: str, setting: str, **values: str) -> str:
    """`template` with its {fields} filled; a field the template may not use, or a stray brace, is one
    ConfigError naming the setting (write literal braces as {{ and }})."""
    check_template(template, setting, tuple(values))
    return template.format(**values)


#: The sentences every prompt template may place: {context} (vlm.context) and {limit} (vlm.max_tags).
SENTENCES = ("context", "limit")


def _sentences(config: ChatTaggerConfig) -> dict[str, str]:
    v = config.vlm
    return {
        "context": f" Context: {v.context.strip()}." if v.context.strip() else "",
        "limit": f" Give at most {v.max_tags} names, the most prominent first." if v.max_tags else "",
    }


class _Transcript:
    """One image's conversation with the models: replies, parsed answers, notes."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.answers: list[list[str]] = []  # every parsable answer, in order
        self.tags: list[str] = []
        self.notes: list[str] = []

    def record(self, step: str, model: str, reply: Any, parsed: ParsedTags | None = None) -> None:
        self.replies.append({"step": step, "model": model, "reply": reply.text, "cached": reply.cached})
        if parsed is None:
            return
        self.notes += [f"{step}: {n}" for n in parsed.notes]
        if parsed.ok:
            self.answers.append(parsed.tags)
            self.tags = parsed.tags
        elif self.answers:
            self.notes.append(f"{step}: kept the previous answer")

    def nouns(self) -> list[NounSupport]:
        # support / cycles: how many of the answers (first one and every reflection) listed the tag.
        return [NounSupport(noun=t, support=sum(t in a for a in self.answers),
                            cycles=sum(t in a for a in self.answers), clusters=[]) for t in self.tags]


@dataclass
class ChatTaggerConfig:
    """The settings of the vlm and describe_extract taggers: the config file's `vlm` section, and the
    `nouns` section's stopwords (words that name the picture, never kept as tags)."""

    vlm: VlmConfig
    nouns: NounsConfig


def _chat_checkpoints(block: ChatTaggerConfig, models: ModelConfig) -> list[str]:
    return [block.vlm.model]


def _describe_extract_checkpoints(block: ChatTaggerConfig, models: ModelConfig) -> list[str]:
    return [block.vlm.model, block.vlm.llm or block.vlm.model]


class _ChatTagger:
    name = ""

    def __init__(self, config: ChatTaggerConfig, models: ModelConfig) -> None:
        self.config, self.models = config, models
        self.normalise = TagNormaliser(config.nouns.stopwords)
        s = _sentences(config)
        self.reflection = fill(config.vlm.reflection_prompt or REFLECTION_PROMPT, "vlm.reflection_prompt",
                               limit=s["limit"], context=s["context"])

    def _parse(self, text: str) -> ParsedTags:
        return parse_tags(text, self.normalise, self.config.vlm.max_tags)

    def _reflect(self, chat: ChatModelBase, requests: list[ChatRequest], replies: list[Any],
                 logs: list[_Transcript], timings: dict[str, float]) -> None:
        """`vlm.reflection_rounds` rounds, each ONE batched pass over every image's conversation so far."""
        for r in range(1, self.config.vlm.reflection_rounds + 1):
            t0 = time.perf_counter()
            requests = [q.then(a.text, self.reflection) for q, a in zip(requests, replies)]
            replies = chat.chat(requests)
            timings[f"reflection_{r}"] = time.perf_counter() - t0
            for log, reply in zip(logs, replies):
                log.record(f"reflection {r}", chat.model_id, reply, self._parse(reply.text))

    def _results(self, images: Sequence[LoadedImage], logs: list[_Transcript], model: str,
                 timings: dict[str, float], meaningless: bool) -> list[TagResult]:
        out = []
        for im, log in zip(images, logs):
            notes = list(log.notes)
            if meaningless:
                notes.append("tiny random-init model: its replies are meaningless noise")
            out.append(TagResult(source=im.source, image_size=im.size, tagger=self.name, model=model,
                                 nouns=log.nouns(), cycles_run=len(log.answers), timings=dict(timings),
                                 batch_size=len(images), meaningless=meaningless, notes=notes,
                                 replies=log.replies))
        return out


@TAGGERS.register("vlm", config=ChatTaggerConfig, checkpoints=_chat_checkpoints)
class VLMTagger(_ChatTagger):
    """The VLM lists the tags of each image as JSON; optional self-reflection rounds."""

    name = "vlm"

    def __init__(self, config: ChatTaggerConfig, models: ModelConfig, chat: ChatModelBase | None = None) -> None:
        super().__init__(config, models)
        self.prompt = fill(config.vlm.tag_prompt or TAG_PROMPT, "vlm.tag_prompt", **_sentences(config))
        if chat is None:
            from ..models.vlm import vision_chat

            chat = vision_chat(config.vlm, models)
        self.chat = chat

    def tag_batch(self, images: Sequence[LoadedImage]) -> list[TagResult]:
        if not images:
            return []
        t0 = time.perf_counter()
        requests = [ChatRequest.ask(self.prompt, im.image) for im in images]
        replies = self.chat.chat(requests)
        timings = {"tags": time.perf_counter() - t0}
        logs = [_Transcript() for _ in images]
        for log, reply in zip(logs, replies):
            log.record("tags", self.chat.model_id, reply, self._parse(reply.text))
        self._reflect(self.chat, requests, replies, logs, timings)
        return self._results(images, logs, self.chat.model_id, timings, self.chat.is_tiny)


@TAGGERS.register("describe_extract", config=ChatTaggerConfig, checkpoints=_describe_extract_checkpoints)
class DescribeExtractTagger(_ChatTagger):
    """The VLM describes each image; a text-only chat LM extracts the tags from the description as JSON;
    optional self-reflection rounds of the extractor."""

    name = "describe_extract"

    def __init__(self, config: ChatTaggerConfig, models: ModelConfig, vision: ChatModelBase | None = None,
                 extractor: ChatModelBase | None = None) -> None:
        super().__init__(config, models)
        s = _sentences(config)
        self.describe = fill(config.vlm.describe_prompt or DESCRIBE_PROMPT, "vlm.describe_prompt", **s)
        self.extract = config.vlm.extract_prompt or EXTRACT_PROMPT
        fill(self.extract, "vlm.extract_prompt", description="", **s)  # fail now, not after the VLM ran
        from ..models import vlm as _vlm

        self.vision = vision or _vlm.vision_chat(config.vlm, models)
        self.extractor = extractor or _vlm.text_chat(config.vlm, models)

    def tag_batch(self, images: Sequence[LoadedImage]) -> list[TagResult]:
        if not images:
            return []
        s = _sentences(self.config)
        t0 = time.perf_counter()
        descriptions = self.vision.chat([ChatRequest.ask(self.describe, im.image) for im in images])
        timings = {"describe": time.perf_counter() - t0}
        logs = [_Transcript() for _ in images]
        texts = []
        for log, d in zip(logs, descriptions):
            log.record("describe", self.vision.model_id, d)
            # The extractor reads what the VLM says it sees, not the candidates it weighed while reasoning.
            text, cut_inside = strip_reasoning(d.text)
            texts.append(text.strip())
            if cut_inside:
                log.notes.append(f"describe: {cut_inside.replace('max_new_tokens', 'vlm.max_new_tokens')}")
            elif d.truncated:
                log.notes.append(f"describe: the description reached vlm.max_new_tokens "
                                 f"({self.vision.max_new_tokens}) and was cut; what it would have named after "
                                 f"that is missing (raise it)")
            if not texts[-1]:
                log.notes.append("describe: the description is empty")
        t0 = time.perf_counter()
        # An empty description has nothing to extract: asking anyway invites made-up tags.
        rows = [i for i, text in enumerate(texts) if text]
        requests = [ChatRequest.ask(fill(self.extract, "vlm.extract_prompt", description=texts[i], **s))
                    for i in rows]
        replies = self.extractor.chat(requests)
        timings["extract"] = time.perf_counter() - t0
        for i, reply in zip(rows, replies):
            logs[i].record("extract", self.extractor.model_id, reply, self._parse(reply.text))
        self._reflect(self.extractor, requests, replies, [logs[i] for i in rows], timings)
        model = self.vision.model_id if self.extractor.model_id == self.vision.model_id else \
            f"{self.vision.model_id} + {self.extractor.model_id}"
        return self._results(images, logs, model, timings, self.vision.is_tiny or self.extractor.is_tiny)
