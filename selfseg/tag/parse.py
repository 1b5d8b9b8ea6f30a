"""Reading tag lists (and tag -> description objects) out of free-form model replies.

Chat models asked for "a JSON list only" still wrap it in code fences, put prose before or after it,
think aloud first (<think>...</think>), use Python quotes, answer with objects ({"name": ...}) or mix in
numbers. The rules, in order:

1. Drop reasoning blocks (<think>...</think>); a reply cut off inside one has no answer. Read at most
   32k characters.
2. Look inside ```code fences``` first, then in the whole reply.
3. The first JSON value (starting at a '[' or '{') that parses AND holds a name wins, so "[]" or a
   citation "[1]" before the answer is skipped. When a reply holds several lists with names (noted):
   a list introduced as an earlier answer ("Previous list:", "My original answer was"), an example or
   format, or removed / not-visible items is skipped; a list introduced as the final, revised, corrected
   or updated one wins; otherwise lists each behind a label ("Objects: [...] Background: [...]"), all in
   code fences or none, are joined. Nested lists are flattened, an object contributes every
   list it holds ({"objects": [...], "background": [...]}). Curly quotes are straightened first; a
   Python-literal list ('dog', 'cat') is accepted too.
4. A list cut off by max_new_tokens keeps its complete quoted items (noted).
5. No JSON at all: a bulleted or numbered list, one item per line, is read instead (noted).
6. Items: strings are kept; objects give their "name" / "label" / "object" / "tag" string; anything else
   (numbers, null) is dropped and counted in a note; placeholders ("none", "N/A") are dropped.

Then every tag is normalised: lower-cased, articles and surrounding punctuation stripped, whitespace
collapsed, the last word singularised when WordNet knows its singular ("traffic lights" -> "traffic
light", "shoes" -> "shoe"; "jeans" stays), duplicates dropped (first wins); counts ("2 dogs", "dog (2)")
are removed. Nothing here raises: a reply with no list, or a list with no names, gives no tags,
`ok=False` and a note saying why.
"""
from __future__ import annotations

import ast
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.S)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.+?)\s*$")
# "Objects:" / "**Background**:" / "2. Stuff:" right before a list (a fence opener may sit between).
_LABEL = re.compile(r"(?:^|[\n.!?;])[ \t>#*_\-]*(?:\d+[.)][ \t]*)?([A-Za-z][\w '/&-]{0,48}?)[ \t*_]*:[ \t*_]*"
                    r"(?:\n[ \t]*)?(?:```[\w-]*)?\s*$")
# What introduces a list that is not the answer: the earlier answer quoted before the revised one (a
# reflection reply), the prompt's example or format echoed back, or items the model removed. (Bare "old"
# or "before" would also catch "an old car: [...]"; these phrases rarely describe a scene.)
_SKIPPED_LEAD = re.compile(
    r"\b(?:previous|original|initial|earlier|prior|draft|(?:first|last|old) (?:answer|list|version)|"
    r"examples?|e\.g|for instance|format|template|removed?|remove[sd]?|deleted?|dropped|excluded?|"
    r"not (?:visible|present|in the (?:image|picture|photo)))\b", re.I)
# What introduces the answer itself when a reply holds several lists.
_FINAL_LEAD = re.compile(r"\b(?:final|revised|corrected|updated|amended|refined|improved|new (?:list|answer))\b",
                         re.I)
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_LIST_KEYS = ("tags", "objects", "labels", "names", "items", "classes", "nouns", "keywords", "list")
_NAME_KEYS = ("name", "label", "object", "tag", "class", "noun", "keyword")
_ARTICLES = ("a ", "an ", "the ", "some ")
_MAX_REPLY = 32_000  # characters read of one reply (a runaway generation is not parsed to its end)
# Placeholders models write for "nothing": never tags.
_NULL_WORDS = frozenset({"none", "null", "nil", "n/a", "na", "nothing", "unknown", "other", "others", "etc",
                         "no objects", "not applicable", "empty"})
# Plural nouns that name one object ("jeans" is one garment): never singularised.
_PLURALIA_TANTUM = frozenset("""
barracks bellows binoculars braces clothes earphones falls glasses goggles goods headphones jeans leggings
overalls pajamas pants pliers people pyjamas rapids scissors shorts spectacles stairs sunglasses suspenders
tights tongs trousers trunks tweezers
""".split())


@dataclass
class ParsedTags:
    tags: list[str]
    notes: list[str] = field(default_factory=list)
    ok: bool = True  # False: nothing list-like was found in the reply


def strip_reasoning(text: str) -> tuple[str, str | None]:
    """A reply without its <think> block, and a note when the block never closed (the reply ran out)."""
    text = _THINK.sub(" ", text)
    low = text.lower()
    if "<think>" in low:  # opened, never closed: the reply ran out of tokens while reasoning
        return text[: low.index("<think>")], "the reply ended inside <think>; raise max_new_tokens"
    if "</think>" in low:  # some chat templates open the block themselves: only the closing tag is generated
        text = text[low.rindex("</think>") + len("</think>"):]
    return text, None


def json_values(text: str) -> Iterable[Any]:
    """Every JSON (or Python-literal) value that starts at a '[' or '{' of `text`, in order, outermost
    first (a value's inner brackets are not tried again)."""
    for _, _, value in _json_values_at(text):
        yield value


def _json_values_at(text: str) -> Iterable[tuple[int, int, Any]]:
    """`json_values` with the offsets where each value starts and ends (exclusive)."""
    decoder = json.JSONDecoder()
    skip_to = 0
    for m in re.finditer(r"[\[{]", text):
        if m.start() < skip_to:
            continue
        try:
            value, end = decoder.raw_decode(text, m.start())
            skip_to = end
            yield m.start(), end, value
            continue
        except (ValueError, RecursionError):
            pass
        end = _matching_bracket(text, m.start())
        if end is not None and end - m.start() < 20_000:
            try:
                value = ast.literal_eval(text[m.start():end + 1])
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            skip_to = end + 1
            yield m.start(), end + 1, value


def _matching_bracket(text: str, start: int) -> int | None:
    pairs = {"[": "]", "{": "}"}
    stack, quote = [], None
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if ch == "\\":
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            # An apostrophe inside a word ("people's") does not open a quote.
            if ch == "'" and i > 0 and text[i - 1].isalnum() and i + 1 < len(text) and text[i + 1].isalnum():
                continue
            quote = ch
        elif ch in pairs:
            stack.append(pairs[ch])
            if len(stack) > 32:  # no tag list nests this deep
                return None
        elif ch in ")]}":
            if not stack or stack.pop() != ch:
                return None
            if not stack:
                return i
    return None


def _names_in(value: Any, depth: int = 0) -> list | None:
    """The name-like items of a parsed value, flattened: a list's items (nested lists joined), or every
    list an object holds ("objects" and "background" both count). None when the value holds no list."""
    if depth > 4:
        return None
    if isinstance(value, list):
        out: list = []
        for item in value:
            inner = _names_in(item, depth + 1) if isinstance(item, list) else None
            out += inner if inner is not None else [item]
        return out
    if isinstance(value, dict):
        if _item_name(value) is not None:  # {"name": "dog"} alone is one item
            return [value]
        lists = [_names_in(v, depth + 1) for v in value.values() if isinstance(v, (list, dict))]
        lists = [x for x in lists if x is not None]
        return [i for x in lists for i in x] if lists else None
    return None


def _item_name(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for k in _NAME_KEYS:
            for key, v in item.items():
                if isinstance(key, str) and key.lower() == k and isinstance(v, str):
                    return v
    return None


def _truncated_items(text: str) -> list[str]:
    """The complete quoted items of a list that was cut off before its ']' (max_new_tokens reached)."""
    start = text.find("[")
    if start < 0 or _matching_bracket(text, start) is not None:
        return []
    return re.findall(r'"([^"\\\n]{1,80})"\s*,', text[start:])


def _has_name(items: list) -> bool:
    return any(_item_name(i) is not None and _item_name(i).strip().lower() not in _NULL_WORDS for i in items)


def _lead_in(text: str, start: int, floor: int) -> tuple[str, str | None]:
    """(what introduces the value starting at `start`: its "Label:" or else the words back to the line or
    sentence start; that label, or None). Never reaches back past `floor`, the end of the previous list.
    "Objects: [...]", "**Background:**", a fence on the next line and "2. Stuff:" are labels."""
    before = text[max(floor, start - 120):start]
    m = _LABEL.search(before)
    if m:
        return m.group(1).strip(), m.group(1).strip()
    segments = [seg.strip(" \t`*_#>-") for seg in re.split(r"\n|[.!?;]\s", before)]
    segments = [seg for seg in segments if seg and not re.fullmatch(r"(?:json|python|text)?", seg, re.I)]
    return (segments[-1] if segments else ""), None


def _labelled_lists(text: str, values: list[tuple[int, int, Any]]) -> tuple[list | None, str | None]:
    """Rule 3's exceptions, for replies with several name lists (see the module docstring):
    lists introduced as an earlier answer, an example, a format or removed items are skipped; a list
    introduced as the final / revised / corrected one wins; otherwise two or more lists, each behind a
    label and either all or none in code fences, are joined. Returns (items, note), or (None, None) when
    rule 3 applies as it is. `values`: `_json_values_at(text)`, parsed once by the caller."""
    fences = [m.span() for m in _FENCE.finditer(text)]
    found, floor = [], 0
    for start, end, value in values:
        items = _names_in(value)
        if items is not None and _has_name(items):
            lead, label = _lead_in(text, start, floor)
            fenced = any(a <= start < b for a, b in fences)
            found.append((lead, label, fenced, items))
            floor = end
    if len(found) < 2:
        return None, None
    kept = [f for f in found if not _SKIPPED_LEAD.search(f[0])]
    skipped = [f[0] for f in found if _SKIPPED_LEAD.search(f[0])]
    final = [f for f in kept if _FINAL_LEAD.search(f[0])]
    if final:
        return final[-1][3], f"took the list introduced as {final[-1][0]!r}" + (
            f", skipped {len(skipped)} introduced as an earlier answer, example or removed items" if skipped else "")
    if len(kept) >= 2 and all(f[1] for f in kept) and len({f[2] for f in kept}) == 1:
        labels = [f[1] for f in kept]
        shown = ", ".join(labels[:5]) + (f", ... ({len(labels) - 5} more)" if len(labels) > 5 else "")
        return [i for f in kept for i in f[3]], f"joined {len(kept)} labelled lists ({shown})"
    if kept and skipped:
        shown = "; ".join(repr(x) for x in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        return kept[0][3], f"skipped the list(s) introduced as an earlier answer, example or removed items ({shown})"
    return None, None


def find_list(reply: str) -> tuple[list | None, list[str]]:
    """The raw items of the first list in a reply that holds at least one name (None when there is none)
    and notes on how it was found."""
    text, note = strip_reasoning(str(reply)[:_MAX_REPLY].translate(_QUOTES))
    notes = [note] if note else []
    whole = list(_json_values_at(text))  # the whole reply is parsed once, for both uses below
    items, how = _labelled_lists(text, whole)
    if items is not None:
        return items, notes + [how]
    empty = None
    fenced = (json_values(m.group(1)) for m in _FENCE.finditer(text))  # lazily: the first answer stops it
    for values in itertools.chain(fenced, [[v for _, _, v in whole]]):
        for value in values:
            found = _names_in(value)
            if found is None:
                continue
            if _has_name(found):
                return found, notes
            empty = found if empty is None else empty
    cut = _truncated_items(text)
    if cut:
        return cut, notes + [f"the reply was cut off inside its list; kept its {len(cut)} complete item(s) "
                             f"(raise vlm.max_new_tokens)"]
    bullets = [m.group(1) for line in text.splitlines() if (m := _BULLET.match(line))]
    if bullets:
        return bullets, notes + ["no JSON list in the reply; read its bulleted lines instead"]
    return empty, notes


def find_object(reply: str) -> tuple[dict | None, list[str]]:
    """The first JSON object in a reply (None when there is none) and notes."""
    text, note = strip_reasoning(str(reply)[:_MAX_REPLY].translate(_QUOTES))
    notes = [note] if note else []
    for part in [*(m.group(1) for m in _FENCE.finditer(text)), text]:
        for value in json_values(part):
            if isinstance(value, dict):
                return value, notes
    return None, notes


class TagNormaliser:
    """Lower-case, strip articles and punctuation, singularise the head word, drop stop words."""

    def __init__(self, stopwords: Iterable[str] = ()) -> None:
        self.stopwords = {w.lower() for w in stopwords}
        self._wn: Any = None

    def singular(self, words: list[str]) -> list[str]:
        if self._wn is None:
            from ..resources import load_wordnet

            self._wn = load_wordnet()
        if len(words) > 1:  # a compound WordNet knows: "traffic lights" -> "traffic light"
            whole = self._wn.morphy("_".join(words), self._wn.NOUN)
            if whole:
                return whole.split("_")
        return words[:-1] + [self._singular_word(words[-1])]

    def _singular_word(self, word: str) -> str:
        if word in _PLURALIA_TANTUM:
            return word
        wn = self._wn
        # Every base form WordNet's morphology allows, the word itself first when it is a lemma.
        forms = wn._morphy(word, wn.NOUN) if hasattr(wn, "_morphy") else [wn.morphy(word, wn.NOUN) or word]
        others = [f for f in forms if f != word]
        if not others:
            return word

        def count(w: str) -> int:  # how often WordNet's sense-tagged corpus saw the word as a noun
            return sum(lem.count() for syn in wn.synsets(w, wn.NOUN) for lem in syn.lemmas()
                       if lem.name().lower() == w)

        # Several base forms ("lenses": lens / lense): the commonest.
        best = max(others, key=count)
        # Both are nouns ("shoes" / "shoe", "species" / "specie"): keep the plural when it is the commoner.
        if word in forms and count(word) >= count(best):
            return word
        return best

    def __call__(self, raw: str) -> str | None:
        text = " ".join(str(raw).lower().split())
        text = re.sub(r"\s*\([^)]*\)?\s*$", "", text)     # "dog (2)", "cup (partly hidden"
        text = re.sub(r"^(\d+|x\d+)\s+", "", text)          # "2 dogs"
        text = re.sub(r"\s+(x\s*\d+|\d+)$", "", text)       # "dog x2", "dog 2"
        text = text.strip(" \t\"'`.,;:!?*()[]{}<>")
        for art in _ARTICLES:
            if text.startswith(art):
                text = text[len(art):]
        text = text.strip(" \t\"'`.,;:!?*")
        if len(text) < 2 or len(text) > 60 or not any(c.isalpha() for c in text):
            return None
        words = text.split()
        if all(w.isalpha() or "-" in w for w in words):
            words = self.singular(words)
        tag = " ".join(words)
        return None if tag in self.stopwords or text in _NULL_WORDS or tag in _NULL_WORDS else tag


def parse_tags(reply: str, normalise: TagNormaliser | None = None, max_tags: int = 0) -> ParsedTags:
    """Tags from one reply, normalised and deduplicated, at most `max_tags` (0: all)."""
    normalise = normalise or TagNormaliser()
    found, notes = find_list(reply)
    if found is None:
        snippet = " ".join(str(reply).split())[:80]
        return ParsedTags([], notes + [f"no parsable list in the reply: {snippet!r}"], ok=False)
    tags: list[str] = []
    wrong = 0
    for item in found:
        name = _item_name(item)
        if name is None:
            wrong += 1
            continue
        tag = normalise(name)
        if tag and tag not in tags:
            tags.append(tag)
    if wrong:
        notes.append(f"{wrong} list item(s) that were not names dropped")
    if not tags:  # "[]", or only placeholders / stop words: no answer to build on
        return ParsedTags([], notes + ["the reply's list holds no names"], ok=False)
    if max_tags and len(tags) > max_tags:
        notes.append(f"{len(tags) - max_tags} tag(s) beyond max_tags={max_tags} dropped")
        tags = tags[:max_tags]
    return ParsedTags(tags, notes)
