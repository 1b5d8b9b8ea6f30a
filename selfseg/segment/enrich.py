"""Prompt enrichment: a short visual description per tag, for segmenters that read phrases.

Grounding DINO and CLIPSeg are prompted with text; "fire hydrant, short red metal post with side
outlets" can find what the bare tag misses (OpenSeg-R's description prompts). Two modes
(`segment.enrich`):

- "generic": a text-only chat LM (`vlm.llm`, or the VLM without an image) describes each tag once; the
  description is the same for every image, so a batch asks only about tags the enricher has not seen.
- "image": the VLM sees the image and describes every tag as it looks there, in ONE reply per image
  (a JSON object tag -> description); the images of a batch are one batched pass.

The segmenter is prompted with "tag, description", but every label it returns is the plain tag, and
Grounding DINO still scores a box on the tag's own tokens (see `GroundingDinoLocator.plan`). A tag the
model did not describe is prompted as itself, with a note.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..io import LoadedImage
from ..models.chat import ChatModelBase, ChatRequest
from ..tag.parse import TagNormaliser, find_object, json_values, strip_reasoning
from ..tag.vlm import fill

GENERIC_PROMPT = (
    "In at most {max_words} words, describe what a {tag} looks like in a photo: its shape, parts, colour or "
    "texture. Do not name other objects. Reply with the description only."
)
IMAGE_PROMPT = (
    "These things are in this image: {tags}. For each one, describe in at most {max_words} words how it looks "
    "here (colour, shape, texture), without naming the other things. Reply with a JSON object that maps each "
    'name to its description, for example {{"dog": "small brown short-haired dog"}}. No other text.'
)


@dataclass
class Enrichment:
    """One image's prompts: tag -> phrase (tags without a description are absent) and notes."""

    prompts: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def phrase(self, tag: str) -> str:
        return self.prompts.get(tag, tag)


_ANNOUNCING = re.compile(r"^(?:sure|certainly|okay|ok|of course|absolutely|here|below)\b|^(?:a |the )?"
                         r"(?:visual |short )?description\b", re.I)


def _announces(line: str, tag: str) -> bool:
    """A line (ending in ':') that only announces a description: "Here it is:", "Description:", "Fire hydrant:"."""
    body = line[:-1].strip(" *_#\"'`")
    return bool(_ANNOUNCING.search(body)) or body.lower() == tag.lower()


def clean_description(text: Any, tag: str, max_words: int) -> str:
    """A reply -> a one-line description of at most `max_words` words ("" when there is none): reasoning
    blocks, lines ending in ':' that introduce others, quotes, a leading "tag:" or "Description:" and the characters
    Grounding DINO reads as phrase ends are removed."""
    if not isinstance(text, str):
        return ""
    text, _ = strip_reasoning(text)
    # A line ending in ':' that more lines follow introduces them ("Visual features:", "Sure! Here's a
    # description:"); alone, it is the description unless it only announces one ("Here it is:").
    lines = [ln for ln in (raw.replace("**", "").replace("__", "").strip() for raw in text.splitlines()) if ln]
    line = next((ln for n, ln in enumerate(lines) if not (ln.endswith(":") and (n + 1 < len(lines)
                                                                              or _announces(ln, tag)))), "")
    line = re.sub(r"^\d{1,2}[.)]\s+", "", line.strip(" \"'`*#-"))  # "1. red" as a list's first item
    for label in (tag, "description", "visual description", "answer"):
        if line.lower().startswith(label.lower() + ":"):
            line = line[len(label) + 1:]
            break
    words = line.replace(".", " ").replace("?", " ").replace(";", ",").split()[:max_words]
    return " ".join(words).strip(" ,:-")


class PromptEnricher:
    """segment: the config file's `segment` section (enrich, enrich_max_words, ...); vlm: its `vlm` section (the
    chat models); models: the shared `model` section."""

    def __init__(self, segment: Any, vlm: Any, models: Any, chat: ChatModelBase | None = None) -> None:
        sc = segment
        self.mode = sc.enrich
        self.max_words = sc.enrich_max_words
        self.template = sc.enrich_prompt or (GENERIC_PROMPT if self.mode == "generic" else IMAGE_PROMPT)
        # Fail on a bad template now, not after the tagger ran.
        probe = {"tag": "dog"} if self.mode == "generic" else {"tags": "dog"}
        fill(self.template, "segment.enrich_prompt", max_words=str(self.max_words), **probe)
        if chat is None:
            from ..models import vlm as chat_models

            chat = (chat_models.text_chat(vlm, models) if self.mode == "generic"
                    else chat_models.vision_chat(vlm, models))
            # One reply describes every tag of an image: it needs more room than a tag list.
            chat.max_new_tokens = sc.enrich_max_new_tokens
        self.chat = chat
        self._names = TagNormaliser()
        # generic mode: tag -> its cleaned description, so a tag is asked about once per enricher, with or
        # without the reply cache (a long run's vocabulary repeats from batch to batch)
        self._described: dict[str, str] = {}

    def __call__(self, images: Sequence[LoadedImage], classes: Sequence[Sequence[str]]) -> list[Enrichment]:
        """One Enrichment per image (`classes[i]` are image i's tags); ONE batched chat pass for the batch."""
        if self.mode == "generic":
            return self._generic(classes)
        return self._image(images, classes)

    def _phrase(self, tag: str, description: str) -> str:
        return f"{tag}, {description}" if description else tag

    def _generic(self, classes: Sequence[Sequence[str]]) -> list[Enrichment]:
        desc = self._described
        tags = [t for t in dict.fromkeys(t for cs in classes for t in cs) if t not in desc]
        if tags:
            replies = self.chat.chat([ChatRequest.ask(fill(self.template, "segment.enrich_prompt", tag=t,
                                                           max_words=str(self.max_words))) for t in tags])
            desc.update((t, clean_description(r.text, t, self.max_words)) for t, r in zip(tags, replies))
        out = []
        for cs in classes:
            e = Enrichment({t: self._phrase(t, desc[t]) for t in cs if desc[t]})
            missing = [t for t in cs if not desc[t]]
            if missing:
                e.notes.append(f"enrich: no description for {', '.join(missing)}; prompted with the plain tag")
            out.append(e)
        return out

    def _image(self, images: Sequence[LoadedImage], classes: Sequence[Sequence[str]]) -> list[Enrichment]:
        rows = [i for i, cs in enumerate(classes) if cs]
        replies = self.chat.chat([ChatRequest.ask(fill(self.template, "segment.enrich_prompt",
                                                       tags=", ".join(classes[i]), max_words=str(self.max_words)),
                                                  images[i].image) for i in rows])
        out = [Enrichment() for _ in classes]
        for i, reply in zip(rows, replies):
            obj, notes = self._descriptions(reply.text)
            e = out[i]
            e.notes += [f"enrich: {n}" for n in notes]
            if obj is None:
                e.notes.append("enrich: no JSON object in the reply; every tag prompted as itself (if it was "
                               "cut off, raise segment.enrich_max_new_tokens)")
                continue
            # Keys match tags case-insensitively and in singular form ("Dogs" -> dog).
            by_key: dict[str, Any] = {}
            for k, v in obj.items():
                by_key.setdefault(str(k).strip().casefold(), v)
                by_key.setdefault(self._names(str(k)) or "", v)
            missing = []
            for t in classes[i]:
                d = clean_description(by_key.get(t.casefold(), by_key.get(self._names(t) or t)), t, self.max_words)
                if d:
                    e.prompts[t] = self._phrase(t, d)
                else:
                    missing.append(t)
            if missing:
                e.notes.append(f"enrich: no description for {', '.join(missing)}; prompted with the plain tag")
        return out

    def _descriptions(self, text: str) -> tuple[dict | None, list[str]]:
        """tag -> description from a reply: a JSON object, or a list of {"name", "description"} objects."""
        obj, notes = find_object(text)
        if obj is not None and not any(isinstance(v, str) for v in obj.values()):
            obj = None  # {"objects": [...]}: not a mapping of descriptions
        if obj is None:
            stripped, _ = strip_reasoning(str(text))
            for value in json_values(stripped):
                if isinstance(value, list) and all(isinstance(x, dict) for x in value):
                    pairs = {}
                    for x in value:
                        name = next((x[k] for k in ("name", "tag", "label", "object")
                                     if isinstance(x.get(k), str)), None)
                        desc = next((x[k] for k in ("description", "desc", "looks", "appearance")
                                     if isinstance(x.get(k), str)), None)
                        if name and desc:
                            pairs[name] = desc
                    if pairs:
                        return pairs, notes
        return obj, notes


def enrich_checkpoints(segment: Any, vlm: Any) -> list[str]:
    """The chat checkpoints prompt enrichment loads under these `segment` and `vlm` sections."""
    if segment.enrich == "image":
        return [vlm.model]
    if segment.enrich == "generic":
        return [vlm.llm or vlm.model]
    return []
