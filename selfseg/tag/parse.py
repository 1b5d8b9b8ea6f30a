"""Reading tag lists (and tag -> description objects) out of free-form model replies.

Chat models asked for "a JSON list only" still wrap it in code fences, put prose before or after it,
think aloud first (<think>...</think>), use Python quotes, answer with objects ({"name": ...}) or mix in
numbers. The rules, in order:

1. Drop reasoning blocks (<think>...</think>); a reply cut off inside one has no answer. Read at most
   32k characters; invisible characters (zero-width space, BOM) are dropped.
2. Look inside ```code fences``` first, then in the whole reply.
3. The first JSON value (starting at a '[' or '{') that parses AND holds a name wins, so "[]" or a
   citation "[1]" before the answer is skipped. When a reply holds several lists with names (noted):
   a list introduced as an earlier answer ("Previous list:", "My original answer was"), an example, a
   bare "Format:" label, or removed / not-visible items is skipped; a list introduced as the final,
   revised, corrected or updated one wins, unless that word's own clause of the lead-in makes it removed
   items, an example or a format ("Final list of removed objects:", "Example of a final answer:"; not so
   "Corrected list in JSON format:" or "The final list, with the wolf removed:"), or an example word comes
   right before it ("..., e.g. [...]"); otherwise lists each behind a label ("Objects: [...] Background:
   [...]"), all in code fences or none, are joined; when every list is skipped, the last one not of
   removed items is taken. Nested lists are flattened, an object contributes every list it holds
   ({"objects": [...], "background": [...]}). Curly quotes are straightened first; a Python-literal list
   ('dog', 'cat') is accepted too, apostrophes inside words included (['children's toy']).
4. An object without lists gives the string under a list key ({"objects": "dog, cat"}) or a list of names
   under an answer key ({"answer": "dog, cat"}), or else its keys when it maps names to counts or
   descriptions ({"dog": 2}, {"dog": "a brown dog"}; a count of 0, false or "no" is absent) (noted). A
   record about the image or the reply ({"answer": "yes"}, {"description": "a dog on grass"}, {"image":
   "photo.jpg", "width": 640}) gives no tags.
5. A list cut off by max_new_tokens keeps its complete quoted items (noted).
6. No JSON at all: a bulleted or numbered list, one item per line or "1. dog 2. cat" on one line, is read
   instead, each item without its markdown emphasis and description ("1. **Sky**: blue" -> "Sky"), or
   what follows a place, a number or a label of the items ("Left: dog", "2001: A Space Odyssey poster",
   "Objects: dog, cat"); a note ("Note: the dog is brown", "Time: 10:30") is no item. Else a short reply
   that is only names separated by commas, semicolons or lines ("dog, cat, grass"). A sentence ("I see a
   dog, a cat and grass.") is prose, not a list: no tags (all noted).
7. Items: strings are kept; objects give their "name" / "label" / "object" / "tag" string; anything else
   (numbers, null) is dropped and counted in a note; placeholders ("none", "N/A") are dropped. A string
   whose comma / semicolon separated parts are each a short name ("dog, cat, grass") gives each part
   (noted); one with a longer or prose-like part ("dog, sitting on the grass") stays whole.

Then every tag is normalised: lower-cased, articles and surrounding punctuation stripped, whitespace
collapsed, the head word singularised when WordNet knows its singular ("traffic lights" -> "traffic
light", "shoes" -> "shoe"; "jeans" stays; the head is the last word, or the word before a first preposition
that makes no WordNet compound with it: "pairs of shoes" -> "pair of shoes", "walk-in closets" -> "walk-in
closet"), duplicates dropped (first wins); counts ("2 dogs", "dog (2)")
are removed. A name needs two characters, or one ideograph or syllable ("狗"). Nothing here raises: a reply
with no list, or a list with no names, gives no tags, `ok=False` and a note saying why. Parsing takes time
linear in the reply's length, whatever the reply holds.
"""
from __future__ import annotations

import ast
import bisect
import io
import itertools
import json
import re
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Replies are read with regular expressions that stay linear in the reply's length (up to 32k characters of
# whatever a model emits, runs of spaces included): no pattern lets a repeat over whitespace or word
# characters be retried from every position of a long run, which would be quadratic. Where a repeat could
# start anywhere in a run, a lookbehind lets it start at the run's first character only.
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_THINK_OPEN, _THINK_CLOSE = re.compile(r"<think>", re.I), re.compile(r"</think>", re.I)
# The language tag is taken only when whitespace follows it: "```json\n[...]```", not the "dog" of "```dog```"
# (a tag that could be any prefix of a long word would be retried at each of its lengths).
_FENCE = re.compile(r"```(?:[a-zA-Z0-9_-]+(?=\s))?(.*?)```", re.S)
# The item starts and ends with a non-space, so no two repeats compete for the spaces around it.
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|(\d+)[.)])\s+(\S(?:.*\S)?)\s*$")
# "1. dog 2. cat 3. grass": a numbered list written on one line.
_INLINE_NUMBER = re.compile(r"(?<!\s)\s+(\d{1,3})[.)]\s+")
# Where a bulleted name ends and its description starts: "**Sky**: blue", "Dog - a brown dog".
_DESCRIPTION_CUT = re.compile(r":|\s[-\u2013\u2014]\s")
# A bullet's head before ":" that says where its item is ("Left: dog", "Top left: lamp", "In the foreground:
# dog"): every word a place word or a filler, one at least a place word.
_PLACE_WORDS = frozenset("""
left right top bottom center centre middle upper lower front back rear foreground background midground
distance side sides corner corners edge edges far near behind above below
""".split())
_PLACE_FILLERS = frozenset("in on at to of the a an image picture photo frame view hand".split())
# A bullet's head that introduces the item itself ("Answer: dog, cat", "Name: dog").
_BULLET_ANSWER_HEADS = frozenset(
    "answer answers result results response output reply name label visible present".split())
# Markdown emphasis around a name ("**Sky**", "_dog_"); an underscore inside a word ("traffic_light") stays.
_EMPHASIS = re.compile(r"\*+|(?<!\w)_+|(?<!_)_+(?!\w)")
# The last word of a label that names a group of tags rather than a tag: "Objects: dog, cat".
_GROUP_WORDS = frozenset("""
object objects item items thing things tag tags label labels class classes noun nouns name names keyword
keywords list background foreground region regions element elements stuff entities
""".split())
# Separators of several names in one string ("dog, cat; grass", Chinese and Japanese commas). Spaces before
# one stay with the part before it, which is stripped anyway: a leading "\s*" would rescan a run of spaces
# from each of its positions.
_NAME_SEPARATORS = re.compile(r"[,;\uff0c\uff1b\u3001]\s*")
_PHRASE_WORD = re.compile(r"[^\W_][\w'-]*|&")
# Words of a sentence, not of an object name: a comma-separated part holding one is prose ("I see a dog").
# "of" is not among them ("cup of coffee"), nor "and" ("salt and pepper shaker").
_PROSE_WORDS = frozenset("""
i you he she it we they me my your its our their this that these those there here is are was were be been
being am has have had do does did can cannot could will would should may might must see sees saw seen
show shows showing shown contain contains containing depict depicts appear appears looks in on at with to
from by near behind under over above below into onto not no yes sorry ok okay please thanks thank hello
sure also very just which who what where when while because if but so than then like such as
""".split())
_PLAIN_MAX = 1_000  # characters of a reply read as a plain comma / line separated list (longer: prose)
# "Objects:" / "**Background**:" / "2. Stuff:" right before a list (a fence opener may sit between).
_LABEL = re.compile(r"(?:^|[\n.!?;])[ \t>#*_\-]*(?:\d+[.)][ \t]*)?([A-Za-z][\w '/&-]{0,48}?)[ \t*_]*:[ \t*_]*"
                    r"(?:\n[ \t]*)?(?:```[\w-]*)?\s*$")
# What introduces a list that is not the answer: the earlier answer quoted before the revised one (a
# reflection reply) or the prompt's example echoed back (bare "old" or "before" would also catch "an old
# car: [...]"; these phrases rarely describe a scene), ...
_EARLIER_LEAD = re.compile(
    r"\b(?:previous|original|initial|earlier|prior|draft|(?:first|last|old) (?:answer|list|version)|"
    r"examples?|e\.g|for instance)\b", re.I)
# ... items the model removed, ...
_EXCLUDED_LEAD = re.compile(
    r"\b(?:removed?|remove[sd]?|deleted?|dropped|excluded?|not (?:visible|present|in the (?:image|picture|photo)))\b",
    re.I)
# ... or the prompt's format, but only as a bare label ("Format:", "JSON format:"): "Here is the list in the
# requested format: [...]" and "Corrected list in JSON format: [...]" are answers.
_FORMAT_LABEL = re.compile(r"(?:(?:the|expected|required|requested|output|answer|response|reply|json|list|"
                           r"example|sample)\s+)*(?:format|template)(?:\s+(?:example|sample))?", re.I)
# What introduces the answer itself when a reply holds several lists, ...
_FINAL_LEAD = re.compile(r"\b(?:final|revised|corrected|updated|amended|refined|improved|new (?:list|answer))\b",
                         re.I)
# ... unless its clause of the lead-in says otherwise (see `_lead_kind`). Where clauses part: "The final list,
# with ...", "The updated list (the wolf ...", "My refined answer - I removed ...".
_CLAUSE_BREAK = re.compile(r"[,;:()]|\s[-\u2013\u2014]\s|[\u2013\u2014]")
# A removal told as what was done to the list, not what its items are: "with the wolf removed", "after
# the cat was dropped", "having removed the wolf" (but "with removed objects" lists them).
_REMOVAL_ASIDE = re.compile(r"(?:\b(?:with|after|once|since|because|now that)\s+(?:\S+\s+){1,5}?|\bhaving\s+"
                            r"(?:\S+\s+){0,5}?)" + _EXCLUDED_LEAD.pattern, re.I)
_EXAMPLE_WORD = re.compile(r"\b(?:examples?|e\.g|for instance|such as|samples?|format|template|schema)\b", re.I)
# A format the answer is written in: "in JSON format", "in the requested format".
_IN_FORMAT = re.compile(r"\bin\s+(?:[\w-]+\s+){0,3}?(?:format|template|schema)\b", re.I)
# An example word ending the lead-in: the list right after it is the example.
_EXAMPLE_END = re.compile(r"\b(?:examples?|e\.g|for instance|such as)\W*$", re.I)
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
# Invisible format characters a tag never needs (zero-width space, bidi marks, BOM, soft hyphen); the
# zero-width (non-)joiners stay, some scripts spell words with them.
_INVISIBLE = re.compile("[\u00ad\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# A Python-literal string whose apostrophes may sit inside a word ('children's toy'), and a list of them.
_PY_STRING = r"'(?:[^'\\\n]|\\.|(?<=\w)'(?=\w))*'"
_PY_LIST = re.compile(rf"\[\s*(?:{_PY_STRING}\s*,\s*)*(?:{_PY_STRING}\s*,?\s*)?\]")
_LIST_KEYS = ("tags", "objects", "labels", "names", "items", "classes", "nouns", "keywords", "list")
# Keys under which an object may hold its answer as one string ({"objects": "dog, cat"}).
_ANSWER_KEYS = (*_LIST_KEYS, "answer", "result", "response", "output")
_NAME_KEYS = ("name", "label", "object", "tag", "class", "noun", "keyword")
# Keys of a JSON record about the image or the reply ({"description": ..., "width": 640}), never names of
# objects in it: the whole key, ...
_RECORD_KEYS = frozenset("""
description desc caption captions summary scene setting context image photo picture file filename path url
uri id width height size resolution dimensions format type kind count total number num confidence score
probability answer result results response output reply text title note notes comment comments reason
reasoning explanation thought thoughts analysis question prompt status error message source model version
location place time date weather season mood atmosphere style lighting color colour colors colours
category language query success valid visible present yes no true false name label age gender activity
action emotion
""".split())
# ... or any word of one ("image_id", "imageWidth", "dog_count").
_RECORD_KEY_PARTS = frozenset("""
id width height url uri path filename confidence score caption description count num total resolution
timestamp
""".split())
# A bullet's head that makes it a note about the image or the reply, not an object ("Note: ...", "Time:
# 10:30", "Number of people: 3"); a head naming an object ("Sticky note: yellow") is kept.
_BULLET_NOTE_HEADS = _RECORD_KEYS - _BULLET_ANSWER_HEADS
_NOTE_HEAD = re.compile(r"(?:number|count|total|amount|time|colou?r|type|kind|size|description|caption|summary) of\b")
_ARTICLES = ("a ", "an ", "the ", "some ")
# Prepositions that end a name's head: "bunches of bananas" is many "bunch of bananas".
_HEAD_ENDS = frozenset("of with in on at for from under over near by behind beside inside without".split())
# Two quotes with only whitespace between them: where Python may join two string literals into one.
_ADJACENT_QUOTES = re.compile(r"[\"']\s*[\"']")
_MAX_REPLY = 32_000  # characters read of one reply (a runaway generation is not parsed to its end)
# Placeholders models write for "nothing": never tags.
_NULL_WORDS = frozenset({"none", "null", "nil", "n/a", "na", "nothing", "unknown", "other", "others", "etc",
                         "no objects", "not applicable", "empty"})
# Plural nouns that name one object ("jeans" is one garment): never singularised.
_PLURALIA_TANTUM = frozenset("""
barracks belongings bellows bermudas binoculars bloomers braces clothes corduroys earphones eyeglasses falls fries
glasses goggles goods grits headphones jeans jodhpurs khakis leftovers leggings nylons overalls pajamas pants
pliers people premises pyjamas rapids scissors scrubs shorts specs spectacles sprinkles stairs sunglasses
suspenders tights tongs trousers trunks tweezers waders
""".split())


@dataclass
class ParsedTags:
    tags: list[str]
    notes: list[str] = field(default_factory=list)
    ok: bool = True  # False: nothing list-like was found in the reply


def strip_reasoning(text: str) -> tuple[str, str | None]:
    """A reply without its <think> block, and a note when the block never closed (the reply ran out)."""
    closes = [m.end() for m in _THINK_CLOSE.finditer(text)]
    if closes:  # blocks are looked for before the last closing tag only: each "<think>" after it would be
        # searched to the end of the reply for a closing tag, quadratic in "<think><think>...".
        text = _THINK.sub(" ", text[:closes[-1]]) + text[closes[-1]:]
    opened = _THINK_OPEN.search(text)
    if opened:  # opened, never closed: the reply ran out of tokens while reasoning
        return text[:opened.start()], "the reply ended inside <think>; raise max_new_tokens"
    closes = [m.end() for m in _THINK_CLOSE.finditer(text)]
    if closes:  # some chat templates open the block themselves: only the closing tag is generated
        text = text[closes[-1]:]
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
    # Brackets are matched first: the JSON decoder would recurse into "[[[[..." as deep as it goes, from
    # each of its brackets in turn. One scan answers for every bracket it passes outside quotes, so none is
    # scanned again: those it saw close (`closes`) and those it left open when it failed (`failed`).
    closes: dict[int, int] = {}
    failed: set[int] = set()
    for m in re.finditer(r"[\[{]", text):
        if m.start() < skip_to or m.start() in failed:
            continue
        end = closes.get(m.start())
        if end is None:
            end, still_open = _bracket_scan(text, m.start(), closes)
            if end is None:
                failed.update(still_open)
                continue
        span = text[m.start():end + 1]
        try:  # the span alone: a decoding error counts the lines before it, in the whole text if given that
            value, stop = decoder.raw_decode(span)
            skip_to = m.start() + stop
            yield m.start(), skip_to, value
            continue
        except (ValueError, RecursionError):
            pass
        # A Python literal without a string holds no name ("[x]", "[1, 2,]"): not worth compiling.
        if end - m.start() < 20_000 and ("'" in span or '"' in span):
            try:
                value = _literal(span)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = _python_strings(span)
                if value is None:
                    continue
            skip_to = end + 1
            yield m.start(), end + 1, value


def _literal(span: str) -> Any:
    """`span` as a Python literal, two strings that only whitespace parts read as two (see
    `_comma_between_strings`). Repaired only once Python reads the span at all: a span it refuses is tried
    again from each bracket inside it, and tokenizing it each time would cost more than the reply is worth."""
    value = ast.literal_eval(span)
    if not _ADJACENT_QUOTES.search(span):
        return value
    return ast.literal_eval(_comma_between_strings(span))


def _comma_between_strings(span: str) -> str:
    """`span` with a comma between string literals that only whitespace parts, as items of a list: Python
    would join them into one ('["dog" "cat"]' is ["dogcat"]), and a model that forgets a comma means two
    names. Elsewhere the joining is Python's own reading and is kept: a dict value wrapped over two lines
    ({'scene': 'park ' 'at noon'}, as pprint writes it)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(span).readline))
    except (tokenize.TokenError, SyntaxError):
        return span
    # Rows as tokenize counts them: lines end at "\n" only (str.splitlines also ends them at \x85, \u2028, ...)
    starts = [0, *itertools.accumulate(len(line) for line in io.StringIO(span).readlines())]
    cuts, previous, opened = [], None, []
    for tok in tokens:
        if tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            continue
        if tok.type == tokenize.OP and tok.string in "([{":
            opened.append(tok.string)
        elif tok.type == tokenize.OP and tok.string in ")]}" and opened:
            opened.pop()
        elif tok.type == tokenize.STRING and previous is not None and previous.type == tokenize.STRING \
                and opened[-1:] == ["["]:
            cuts.append(starts[previous.end[0] - 1] + previous.end[1])
        previous = tok
    for cut in reversed(cuts):
        span = span[:cut] + "," + span[cut:]
    return span


def _python_strings(span: str) -> list[str] | None:
    """A Python-style list of strings that Python itself refuses because an apostrophe sits inside a word
    (['dog', 'children's toy'], or curly quotes straightened): its strings. None for anything else."""
    if not _PY_LIST.fullmatch(span):
        return None
    return [m.group(0)[1:-1].replace("\\'", "'") for m in re.finditer(_PY_STRING, span)]


def _matching_bracket(text: str, start: int) -> int | None:
    """Where the bracket at `start` closes, outside quoted strings; None when it never does, a wrong
    closer comes first or it nests more than 32 deep."""
    return _bracket_scan(text, start, {})[0]


_BRACKET_SCAN = re.compile(r"[\[\]{})\"'\\]")  # the characters `_bracket_scan` looks at; others are skipped


def _bracket_scan(text: str, start: int, closes: dict[int, int]) -> tuple[int | None, list[int]]:
    """(`_matching_bracket`, and when that is None the brackets still open where the scan gave up: each
    fails as this one does; for a scan cut at 32 levels, they are nested too deep to be a tag list.) Where
    each bracket it saw close closes is added to `closes`: scanned on its own, it closes there too."""
    closer = {"[": "]", "{": "}"}
    stack: list[int] = []
    quote, escaped_at = None, -1
    last = len(text) - 1
    for m in _BRACKET_SCAN.finditer(text, start):
        i = m.start()
        ch = text[i]
        if quote:
            if i == escaped_at:  # 'it\'s': the escaped quote does not close the string
                continue
            if ch == "\\":
                escaped_at = i + 1
            # An apostrophe inside a word ("people's", 'children's toy') neither opens nor closes a quote.
            elif ch == quote and (ch == '"' or not (i < last and text[i - 1].isalnum() and text[i + 1].isalnum())):
                quote = None
        elif ch in "\"'":
            if ch == "'" and 0 < i < last and text[i - 1].isalnum() and text[i + 1].isalnum():
                continue
            quote = ch
        elif ch in closer:
            stack.append(i)
            if len(stack) > 32:  # no tag list nests this deep
                return None, stack
        elif ch != "\\":
            if not stack:
                return None, stack
            opened = stack.pop()
            if closer[text[opened]] != ch:
                return None, stack + [opened]
            closes[opened] = i
            if not stack:
                return i, []
    return None, stack


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
    """The complete quoted items of a list that was cut off before its ']' (max_new_tokens reached): the
    first '[' left open, past any closed "[aside]" before it."""
    start = text.find("[")
    while start >= 0:
        end = _matching_bracket(text, start)
        if end is None:
            return re.findall(r'"([^"\\\n]{1,80})"\s*,', text[start:])
        start = text.find("[", end + 1)
    return []


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


def _lead_kind(lead: str) -> str:
    """How a list's lead-in introduces it: "final" (the answer), "excluded" (removed or not visible items),
    "earlier" (an earlier answer, an example, the prompt's format echoed back) or "" (plainly)."""
    # "e.g." right before the list makes it an example, whatever came first ("I can give an updated list
    # later, e.g. [...]").
    if _EXAMPLE_END.search(lead):
        return "earlier"
    # A final word names the answer unless its own clause says the list is of removed items, an example or a
    # format ("Final list of removed objects", "Example of a final answer", "Format of the final list");
    # other clauses do not count ("The final list, with the wolf removed", "The revised list, for example
    # removing the wolf"), nor does a format the answer is written in ("Corrected list in JSON format").
    vetoes = set()
    for final in _FINAL_LEAD.finditer(lead):
        start = max((m.end() for m in _CLAUSE_BREAK.finditer(lead, 0, final.start())), default=0)
        stop = _CLAUSE_BREAK.search(lead, final.end())
        clause = lead[start:stop.start() if stop else len(lead)]
        if _EXCLUDED_LEAD.search(_REMOVAL_ASIDE.sub(" ", clause)):
            vetoes.add("excluded")
        elif _EXAMPLE_WORD.search(_IN_FORMAT.sub(" ", clause)):
            vetoes.add("earlier")
        else:
            return "final"
    excluded = _EXCLUDED_LEAD.search(lead)
    if excluded or "excluded" in vetoes:
        return "excluded"
    if vetoes:
        return "earlier"
    if _EARLIER_LEAD.search(lead) or _FORMAT_LABEL.fullmatch(lead.strip(" \t:*_#>-")):
        return "earlier"
    return ""


def _labelled_lists(text: str, values: list[tuple[int, int, Any]]) -> tuple[list | None, str | None]:
    """Rule 3's exceptions, for replies with several name lists (see the module docstring):
    lists introduced as an earlier answer, an example, a bare "Format:" or removed items are skipped; a list
    introduced as the final / revised / corrected one wins (see `_lead_kind`); otherwise two or
    more lists, each behind a label and either all or none in code fences, are joined. When every list is
    skipped, the last one not of removed items is taken. Returns (items, note), or (None, None) when rule 3
    applies as it is. `values`: `_json_values_at(text)`, parsed once by the caller."""
    fences = [m.span() for m in _FENCE.finditer(text)]  # in order, not overlapping
    fence_starts = [a for a, _ in fences]
    found, floor = [], 0
    for start, end, value in values:
        items = _names_in(value)
        if items is not None and _has_name(items):
            lead, label = _lead_in(text, start, floor)
            k = bisect.bisect_right(fence_starts, start) - 1
            fenced = k >= 0 and start < fences[k][1]
            found.append((lead, label, fenced, items, _lead_kind(lead)))
            floor = end
    if len(found) < 2:
        return None, None
    kept = [f for f in found if not f[4]]
    skipped = [f[0] for f in found if f[4] in ("earlier", "excluded")]
    final = [f for f in found if f[4] == "final"]
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
    # Every list introduced as something else: an earlier answer or an example comes before the answer,
    # so the last of them is the likeliest answer; removed items never are.
    earlier = [f for f in found if f[4] == "earlier"]
    if earlier:
        return earlier[-1][3], (f"every list was introduced as an earlier answer, example or removed items; "
                                f"took the last, introduced as {earlier[-1][0]!r}")
    return None, None


def find_list(reply: str) -> tuple[list | None, list[str]]:
    """The raw items of the first list in a reply that holds at least one name (None when there is none)
    and notes on how it was found."""
    text, note = strip_reasoning(_INVISIBLE.sub("", str(reply)[:_MAX_REPLY].translate(_QUOTES)))
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
    for value in (v for _, _, v in whole):
        keyed = _object_names(value)
        if keyed is not None:
            return keyed[0], notes + [keyed[1]]
    cut = _truncated_items(text)
    if cut:
        return cut, notes + [f"the reply was cut off inside its list; kept its {len(cut)} complete item(s) "
                             f"(raise vlm.max_new_tokens)"]
    bullets = _bulleted(text)
    if bullets:
        return bullets, notes + ["no JSON list in the reply; read its bulleted lines instead"]
    plain = _plain_list(text) if empty is None else []
    if plain:
        return plain, notes + ["no JSON list in the reply; read it as a plain list of names"]
    return empty, notes


def _object_names(value: Any, depth: int = 0) -> tuple[list, str] | None:
    """(names, note) from a JSON object that holds no list: the string under a list key ({"objects": "dog,
    cat"}) or a list of names under an answer key ({"answer": "dog, cat"}), or else the keys of an object
    mapping names to counts or descriptions ({"dog": 2, "cat": 1}, {"dog": "a brown dog"}), a count of 0,
    false or "no" meaning absent. None for any other value: a record about the image or the reply
    ({"answer": "yes"}, {"description": "a dog on grass"}, {"image": "photo.jpg", "width": 640})."""
    if not isinstance(value, dict) or not value or depth > 1:
        return None
    for key, v in value.items():
        if isinstance(key, str) and key.lower() in _ANSWER_KEYS:
            if isinstance(v, dict):
                return _object_names(v, depth + 1)
            if isinstance(v, str) and key.lower() in _LIST_KEYS:
                return [v], f"read the string under {key!r} of a JSON object as the list"
            # "answer" / "result" may hold anything ("yes", "success"): only a list of names is the answer.
            names = _plain_list(v) if isinstance(v, str) else []
            if names:
                return names, f"read the string under {key!r} of a JSON object as the list"
    keys, values = list(value), list(value.values())
    # A name -> count (or presence) map, or a name -> description one: every key a short name none of which
    # says what a record field would, every value of one kind. A record mixes kinds ("photo.jpg", 640).
    counts = all(isinstance(v, (int, float)) for v in values)  # bool is an int
    if not (counts or all(isinstance(v, str) for v in values)) or not all(_name_key(k) for k in keys):
        return None
    names = [k for k, v in value.items() if v not in (0, False) and not (isinstance(v, str) and _absent(v))]
    absent = len(value) - len(names)
    note = "read the keys of a JSON object as names"
    how = "with a count of 0" if counts else "marked absent"
    return names, note + (f" ({absent} {how} dropped)" if absent else "")


def _name_key(key: Any) -> bool:
    """Whether a JSON object's key reads as an object's name, not as a field of a record about the image or
    the reply ("description", "image_id", "width")."""
    if not isinstance(key, str):
        return False
    words = re.sub(r"(?<=[a-z])(?=[A-Z])|[_-]", " ", key).lower().split()
    return (_short_phrase(" ".join(words)) is not None and " ".join(words) not in _RECORD_KEYS
            and not any(w in _RECORD_KEY_PARTS for w in words))


def _absent(value: str) -> bool:
    """Whether a name -> presence map's value says the object is not there ({"cat": "no"})."""
    return value.strip(" .!").lower() in ("no", "false", "absent", "none", "0", "not visible", "not present",
                                          "not in the image", "not seen", "missing")


def _bulleted(text: str) -> list[str]:
    """The names of a markdown bulleted or numbered list, one item per line (or "1. dog 2. cat" on one
    line), each without its emphasis and description ("1. **Sky**: blue and clear" -> "Sky"). A bullet that
    only heads nested ones ("- **Background:**") gives no name."""
    out = []
    for line in text.splitlines():
        m = _BULLET.match(line)
        if not m:
            continue
        parts = [m.group(2)]
        if m.group(1):
            numbers = [int(n) for n in _INLINE_NUMBER.findall(m.group(2))]
            first = int(m.group(1)) + 1
            if numbers and numbers == list(range(first, first + len(numbers))):
                parts = _INLINE_NUMBER.split(m.group(2))[::2]
        for part in parts:
            name = _bullet_name(_EMPHASIS.sub("", part).strip())
            if name:
                out.append(name)
    return out


def _bullet_name(item: str, depth: int = 0) -> str:
    """The name in one bullet's text: "Sky" of "Sky: blue and clear" and of "Sky - blue"; what follows a
    label of the items ("Objects: dog, cat"), a place ("Left: dog", "In the foreground: dog") or a number
    ("2001: A Space Odyssey poster"); nothing for a heading ("Background:") or a note about the image
    ("Note: the dog is brown", "Time: 10:30")."""
    cut = _DESCRIPTION_CUT.search(item)
    if not cut:
        return item
    head, rest = item[:cut.start()].strip(), item[cut.end():].strip()
    if cut.group(0) != ":" and len(head) < 2:  # "t - shirt": a hyphen inside a name, spaced
        return item
    if not rest:
        return ""
    low = " ".join(re.split(r"[\s-]+", head.lower()))
    if low in _BULLET_NOTE_HEADS or _NOTE_HEAD.match(low):
        return ""
    place = set(low.split()) <= _PLACE_WORDS | _PLACE_FILLERS and bool(set(low.split()) & _PLACE_WORDS)
    if place or low in _BULLET_ANSWER_HEADS or not any(c.isalpha() for c in head):
        # "Left: dog - brown": the item after the place, and its own description cut
        return _bullet_name(rest, depth + 1) if depth < 2 else rest
    if cut.group(0) == ":" and _group_label(head):  # "Objects: dog, cat": the items, as they are
        return rest
    return head


def _plain_list(text: str) -> list[str]:
    """A short reply that is nothing but two or more names separated by commas, semicolons or line breaks
    ("dog, cat, grass"), maybe after an intro line ending in ':' or an "Objects:" label. [] for anything
    else: a sentence ("I see a dog, a cat and grass.") is prose, not a list."""
    text = re.sub(r"```[\w-]*", "\n", _EMPHASIS.sub("", text)).strip()
    if len(text) > _PLAIN_MAX:
        return []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].endswith(":"):
        lines = lines[1:]
    out = []
    for line in lines:
        label, colon, rest = line.partition(":")
        if colon and _group_label(label):
            line = rest
        for part in _NAME_SEPARATORS.split(line.strip(" .")):
            if not part.strip():
                continue
            phrase = _short_phrase(part)
            if phrase is None:
                return []
            out.append(phrase)
    return out if len(out) >= 2 else []


def _group_label(label: str) -> bool:
    """Whether a label names a group of tags ("Objects", "Background items") rather than one tag."""
    words = label.lower().split()
    return bool(words) and words[-1] in _GROUP_WORDS


def _short_phrase(part: str) -> str | None:
    """`part` when it reads as one short name: up to five words, none a pronoun, verb or preposition, an
    article only first ("a red car", "salt and pepper shaker", "dog (2)"); a leading "and" / "or" dropped.
    None when it reads as prose ("I see a dog", "cat and a tree")."""
    part = re.sub(r"(?<!\s)\s*\([^()]{0,40}\)$", "", part.strip().strip(" \t.!?`\"'"))
    words = part.split()
    if words and words[0].lower() in ("and", "or", "&"):
        words = words[1:]
    if not 1 <= len(words) <= 5 or not any(c.isalpha() for c in part):
        return None
    for i, word in enumerate(words):
        low = word.lower()
        if not _PHRASE_WORD.fullmatch(word) or low in _PROSE_WORDS or (i and low + " " in _ARTICLES):
            return None
    return " ".join(words)


def _several_names(name: str) -> list[str]:
    """The names of one string that lists several ("dog, cat, grass"); [name] when it holds one name, or
    commas in prose or a description ("dog, sitting on the grass", "person (partly hidden, left)")."""
    if not _NAME_SEPARATORS.search(name):
        return [name]
    phrases = [_short_phrase(p) for p in _NAME_SEPARATORS.split(name.strip(" .")) if p.strip()]
    return phrases if len(phrases) > 1 and all(phrases) else [name]


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
        if len(words) > 1:  # a compound WordNet knows: "traffic lights" -> "traffic light", "jack-in-the-box"
            for joint in ("_", "-"):
                whole = self._wn.morphy(joint.join(words), self._wn.NOUN)
                if whole:
                    return whole.split(joint)
        # The head of "pairs of shoes" or "dogs on leashes" is the word before the first preposition, unless
        # the two make a compound WordNet knows ("walk-in closets": the particle is no preposition).
        head = next((i - 1 for i, w in enumerate(words) if i > 0 and w in _HEAD_ENDS
                     and not self._wn.synsets(f"{words[i - 1]}-{w}")), len(words) - 1)
        if words[head] == "glasses" and words[head + 1:head + 2] == ["of"]:  # "glasses of wine": drinking glasses
            return words[:head] + ["glass"] + words[head + 1:]
        return words[:head] + [self._singular_word(words[head])] + words[head + 1:]

    def _singular_word(self, word: str) -> str:
        if word in _PLURALIA_TANTUM or word.endswith("ss"):  # "plexiglass" is no plural of "plexiglas"
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
        # Both are nouns ("shoes" / "shoe", "species" / "specie"): keep the plural when the corpus saw it more
        # often ("shakers" / "shaker": neither seen, the singular).
        if word in forms and count(word) > count(best):
            return word
        return best

    def __call__(self, raw: str) -> str | None:
        text = " ".join(_INVISIBLE.sub("", str(raw)).lower().split())
        # "dog (2)", "cup (partly hidden"; "(dog)" is all name. No "(" inside: from every "(" of "a(a(a(...",
        # "[^)]*" would scan to the end.
        text = re.sub(r"(?<=[^\s(])\s*\([^()]*\)?\s*$", "", text)
        text = re.sub(r"^(\d+|x\d+)\s+", "", text)          # "2 dogs"
        text = re.sub(r"\s+(x\s*\d+|\d+)$", "", text)       # "dog x2", "dog 2"
        text = text.strip(" \t\"'`.,;:!?*()[]{}<>")
        for art in _ARTICLES:
            if text.startswith(art):
                text = text[len(art):]
        text = text.strip(" \t\"'`.,;:!?*")
        # One letter is no name ("a", "x"), but one ideograph or syllable is ("狗" dog, "개" dog).
        if (len(text) < 2 and not (text.isalpha() and ord(text) >= 0x2E80)) or len(text) > 60 \
                or not any(c.isalpha() for c in text):
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
    wrong = split = 0
    for item in found:
        name = _item_name(item)
        if name is None:
            wrong += 1
            continue
        names = _several_names(name)
        split += len(names) > 1
        for one in names:
            tag = normalise(one)
            if tag and tag not in tags:
                tags.append(tag)
    if wrong:
        notes.append(f"{wrong} list item(s) that were not names dropped")
    if split:
        notes.append(f"{split} item(s) listing several names split at their commas / semicolons")
    if not tags:  # "[]", or only placeholders / stop words: no answer to build on
        return ParsedTags([], notes + ["the reply's list holds no names"], ok=False)
    if max_tags and len(tags) > max_tags:
        notes.append(f"{len(tags) - max_tags} tag(s) beyond max_tags={max_tags} dropped")
        tags = tags[:max_tags]
    return ParsedTags(tags, notes)
