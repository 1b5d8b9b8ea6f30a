"""Reading tag lists out of chat-model replies: scripted replies of the shapes real models produce."""
from __future__ import annotations

import contextlib
import gc
import time

import pytest

from selfseg.tag.parse import TagNormaliser, find_object, parse_tags


@pytest.mark.parametrize("reply, tags", [
    ('["dog", "grass", "fence"]', ["dog", "grass", "fence"]),
    # code fence with prose around it (Qwen, LLaVA)
    ('Sure! Here is the list:\n```json\n["cat", "sofa"]\n```\nLet me know if you need more.', ["cat", "sofa"]),
    # trailing text after the list, and a leading sentence with brackets that are not JSON
    ('The image [a kitchen] shows: ["sink", "oven"] and nothing else.', ["sink", "oven"]),
    # reasoning models think first (DeepSeek-R1); a list inside the reasoning is not the answer
    ('<think>maybe ["wolf"]? no, a dog.</think>\n["dog", "tree"]', ["dog", "tree"]),
    ('["dog"]</think>', []),  # template opened <think>; only the answer after </think> counts
    ('reasoning...</think>["bus", "road"]', ["bus", "road"]),
    # Python quotes, curly quotes
    ("['bus', 'road']", ["bus", "road"]),
    ("[\u201cboat\u201d, \u201cwater\u201d]", ["boat", "water"]),
    # an object holding the list, objects as items
    ('{"objects": ["boat", "water"]}', ["boat", "water"]),
    ('[{"name": "Person", "count": 2}, {"label": "bicycle"}]', ["person", "bicycle"]),
    # normalisation: case, articles, plurals, compounds, pluralia tantum, duplicates, stop words
    ('["A Dog", "the dogs", "traffic lights", "shoes", "jeans", "mice", "background", "  sky  "]',
     ["dog", "traffic light", "shoe", "jeans", "mouse", "sky"]),
    # no JSON: a bulleted / numbered list is read
    ("Objects:\n- dog\n* cat\n1. red apples\n2) tree", ["dog", "cat", "red apple", "tree"]),
    # an empty list or a citation before the answer is skipped; nested lists flattened; every list of an object
    ('[]\n["dog"]', ["dog"]),
    ("The answer (see [1]) is ['dog']", ["dog"]),
    ('[["dog", "cat"], ["tree"]]', ["dog", "cat", "tree"]),
    ('{"objects": ["dog"], "background": ["grass", "sky"]}', ["dog", "grass", "sky"]),
    # placeholders and counts
    ('["dog", "None", "null", "N/A", "2 cats", "cup (2)", "bird x3"]', ["dog", "cat", "cup", "bird"]),
    # plural choice: the commonest base form; plural-only nouns kept
    ('["lenses", "spectacles", "falls", "braces"]', ["lens", "spectacles", "falls", "braces"]),
    # neither form seen in WordNet's corpus: the singular; plural-only clothes and food; "ss" is no plural
    ('["shakers", "dumplings", "fries", "scrubs", "plexiglass", "ingress"]',
     ["shaker", "dumpling", "fries", "scrubs", "plexiglass", "ingress"]),
    # the head before a preposition is singularised, not the last word; drinking glasses before "of"
    ('["pairs of shoes", "bunches of bananas", "dogs on leashes", "glasses of wine", "pair of scissors"]',
     ["pair of shoes", "bunch of bananas", "dog on leashes", "glass of wine", "pair of scissors"]),
    # a forgotten comma between two names (Python would join them into one string)
    ('["dog" "cat", "tree"]', ["dog", "cat", "tree"]),
    ("['boat'\n 'water']", ["boat", "water"]),
    # ... also after a line break Python's tokenizer does not count as one
    ("['table\x85 chair',\n'dog' 'cat']", ["table chair", "dog", "cat"]),
    # a particle of a compound WordNet knows is no preposition: its last word is the head; a singular head
    # before a preposition stays as it is, with what follows it
    ('["walk in closets", "jack in the boxes", "men in suits", "man in suits", "tree with leaves"]',
     ["walk in closet", "jack in the box", "man in suits", "tree with leaves"]),
    # "glasses" alone, last, or before a preposition other than "of" is the plural-only name
    ('["glasses", "reading glasses", "man in glasses", "glasses on a table"]',
     ["glasses", "reading glasses", "man in glasses", "glasses on a table"]),
    # outside a list, strings that only whitespace parts are one, as Python reads them: a wrapped dict value
    ("{'objects': 'dog, cat', 'scene': 'park ' 'at noon'}", ["dog", "cat"]),
    ("[{'name': 'dog', 'where': 'left ' 'side'}, {'name': 'cat'}]", ["dog", "cat"]),
    ('["eyeglasses", "sprinkles", "leftovers"]', ["eyeglasses", "sprinkles", "leftovers"]),
    # several lists, each behind a label: joined (plain, markdown bold, numbered, each in its own fence)
    ('Objects: ["dog", "ball"]\nBackground: ["grass", "sky"]', ["dog", "ball", "grass", "sky"]),
    ('**Objects:** ["dog"]\n**Background:** ["grass"]', ["dog", "grass"]),
    ('1. Things: ["car"]\n2. Stuff: ["road", "sky"]', ["car", "road", "sky"]),
    ('Objects:\n```json\n["dog", "ball"]\n```\nBackground:\n```json\n["grass"]\n```', ["dog", "ball", "grass"]),
    # a reflection reply quoting its earlier answer first: the revised list, not the old one, on one line,
    # on the next line, or each in a fence; "removed" items are not tags
    ('Previous list: ["dog", "cat"]. Revised list: ["dog", "cat", "sofa"]', ["dog", "cat", "sofa"]),
    ('Previous list: ["dog", "lamp"]\nRevised list: ["dog"]', ["dog"]),
    ('Original list:\n```json\n["dog", "lamp"]\n```\nRevised list:\n```json\n["dog"]\n```', ["dog"]),
    ('My original answer was ["dog"].\nUpdated: ["dog", "leash"]', ["dog", "leash"]),
    ('Removed: ["lamp"]\nCorrected list: ["dog", "sofa"]', ["dog", "sofa"]),
    ('Here is the list: ["dog", "lamp"]\nCorrected list: ["dog"]', ["dog"]),
    ('Draft: ["dog", "lamp"]\nFinal: ["dog"]', ["dog"]),
    # the prompt's example or format echoed back is not the answer; nor is what is "not visible"
    ('Format: ["object1", "object2"]\n\nAnswer:\n```json\n["dog", "cat"]\n```', ["dog", "cat"]),
    ('For example: ["dog", "grass", "fence"]\nMy list:\n```\n["cat", "sofa"]\n```', ["cat", "sofa"]),
    ('Visible: ["dog"]\nNot visible: ["cat"]', ["dog"]),
    # a label's lead-in never reaches back past the previous list
    ('Objects: ["dog"]\nprevious: ignore\nBackground: ["sky"]', ["dog", "sky"]),
    # unlabelled second list: the first wins (rule 3); one labelled list: as it is
    ('["dog"] and also ["cat"]', ["dog"]),
    ('Here are the objects: ["dog", "ball"]', ["dog", "ball"]),
    # the corrected list wins even when its lead-in echoes the prompt's "JSON format" or says "for example";
    # "format" inside a sentence is no echo of the prompt, only a bare "Format:" label is
    ('Previous list: ["dog", "wolf"]\nCorrected list in JSON format: ["dog", "bench"]', ["dog", "bench"]),
    ('My original answer was ["dog", "wolf"]. The revised list, for example removing the wolf: ["dog", "bench"]',
     ["dog", "bench"]),
    ('Here is the list in the requested format: ["dog", "cat"]\nBackground: ["sky"]', ["dog", "cat", "sky"]),
    ('JSON format: ["object1"]\n```json\n["dog"]\n```', ["dog"]),
    # ... or when another clause of it tells what was removed
    ('Previous list: ["dog", "wolf"]\nThe final list, with the wolf removed: ["dog"]', ["dog"]),
    ('Previous list: ["dog", "wolf"]\nThe final list with the wolf removed: ["dog"]', ["dog"]),
    ('Previous list: ["dog", "wolf"]\nThe updated list (the wolf was removed): ["dog"]', ["dog"]),
    ('Previous list: ["dog", "wolf"]\nHere is my refined answer - I removed the wolf: ["dog"]', ["dog"]),
    # but a final word does not make removed items, an example or a format the answer: not when its own
    # clause says so, nor when an example word comes right before the list
    ('Final list: ["dog"]\nItems removed from the final list: ["wolf"]', ["dog"]),
    ('Items removed from the final list: ["wolf"]\nHere you go: ["dog"]', ["dog"]),
    ('Final list of removed objects: ["wolf"]\nKept objects: ["dog", "grass"]', ["dog", "grass"]),
    ('Objects: ["dog", "grass"]\nUpdated list of objects that are not visible: ["wolf"]', ["dog", "grass"]),
    ('Example of a final answer: ["apple", "banana"]\nMy answer: ["dog", "cat"]', ["dog", "cat"]),
    ('Format of the final list: ["name1", "name2"]\n["dog", "cat"]', ["dog", "cat"]),
    ('Objects: ["dog", "cat"]\nFinal answer format: ["name"]', ["dog", "cat"]),
    ('["dog", "cat"]\nIf you want, I can give an updated list later, e.g. ["dog"]', ["dog", "cat"]),
    # markdown lists: emphasis and descriptions cut off, group labels and heading bullets are not names,
    # a numbered list on one line
    ("1. **Sky**: blue and clear\n2. **Dog** - a brown dog\n3. Grass", ["sky", "dog", "grass"]),
    ("- Sky: blue\n- Trees: green\n- e-bike \u2013 electric", ["sky", "tree", "e-bike"]),
    ("- **Foreground:**\n  - dog\n- **Background:**\n  - sky", ["dog", "sky"]),
    ("- Objects: dog, cat\n- Background: sky", ["dog", "cat", "sky"]),
    ("1. dog 2. cat 3. grass", ["dog", "cat", "grass"]),
    # a bullet's head that is a place, a number or a label of the item gives what follows; one that notes
    # something about the image gives nothing; a spaced hyphen after one letter is inside the name
    ("- Left: dog\n- Top right: cat\n- In the foreground: bench - wooden", ["dog", "cat", "bench"]),
    ("- 2001: A Space Odyssey poster\n- Answer: lamp", ["space odyssey poster", "lamp"]),
    ("- Note: the dog is brown\n- Time: 10:30\n- Number of people: 3\n- dog", ["dog"]),
    ("- Sticky note: yellow\n- t - shirt", ["sticky note", "t - shirt"]),
    # one string listing several names is split; one name with "and", or a description, is not
    ("- dog, cat, grass", ["dog", "cat", "grass"]),
    ('["dog, cat; grass", "salt and pepper shaker"]', ["dog", "cat", "grass", "salt and pepper shaker"]),
    ('["dog, sitting on the grass"]', ["dog, sitting on the grass"]),
    ('["person (partly hidden, left)"]', ["person"]),
    # a short reply that is only names: commas, semicolons, lines, an intro line or a group label, a fence
    ("dog, cat, grass, sky", ["dog", "cat", "grass", "sky"]),
    ("dog\ncat\ngrass", ["dog", "cat", "grass"]),
    ("dog; cat; grass", ["dog", "cat", "grass"]),
    ("Dog, cat, and grass.", ["dog", "cat", "grass"]),
    ("Here are the objects:\n**dog**\ncat", ["dog", "cat"]),
    ("Objects: dog, cat, grass", ["dog", "cat", "grass"]),
    ("```\ndog, cat\n```", ["dog", "cat"]),
    ("\u72d7\u3001\u732b\u3001\u8349\u5730", ["\u72d7", "\u732b", "\u8349\u5730"]),
    # an object mapping names to counts or descriptions gives its keys (a count of 0 is absent); the string
    # under a list key is the list
    ('{"dog": 2, "cat": 1, "wolf": 0}', ["dog", "cat"]),
    ('{"dog": "a brown dog", "grass": "green lawn"}', ["dog", "grass"]),
    ('{"objects": "dog, cat"}', ["dog", "cat"]),
    ('{"answer": {"dog": 1}}', ["dog"]),
    ('{"answer": "dog, cat"}', ["dog", "cat"]),
    ('{"dog": "yes", "cat": "no", "bird": "absent"}', ["dog"]),
    # single-character names in scripts where one character is a word; a name in parentheses; invisible
    # characters
    ('["\u72d7", "\u732b", "\uac1c", "a"]', ["\u72d7", "\u732b", "\uac1c"]),
    ('["(dog)", "cat (2)"]', ["dog", "cat"]),
    ('["zebra\u200b", "\ufeffdog"]', ["zebra", "dog"]),
    ("dog\u200b, cat", ["dog", "cat"]),
    # a Python-style list with an apostrophe inside a word: curly quotes, straight, escaped
    ("[\u2018dog\u2019, \u2018children\u2019s toy\u2019]", ["dog", "children's toy"]),
    ("['dog', 'children's toy']", ["dog", "children's toy"]),
    ("['it\\'s', 'dog']", ["it's", "dog"]),
])
def test_lists_are_recovered(reply, tags):
    got = parse_tags(reply, TagNormaliser(["background"]))
    assert got.tags == tags


def test_wrong_item_types_are_dropped_with_a_note():
    got = parse_tags('["dog", 3, null, ["tree"], true, {"size": 2}, "cat"]')
    assert got.ok and got.tags == ["dog", "tree", "cat"]  # nested lists are flattened
    assert any("4 list item(s) that were not names dropped" in n for n in got.notes)


@pytest.mark.parametrize("reply", ["", "I cannot help with that.", "dog, cat and a tree", "[unclosed", "{}",
                                   "[" * 5000, "{" * 5000, '"word {x ' * 3000,
                                   # prose with commas is no list; nor is one word
                                   "I see a dog, a cat and grass.", "The image shows a dog, a cat and some grass.",
                                   "Sorry, no.", "Dog.", "dog, cat, " * 400,
                                   # a JSON record about the image or the reply, not a list of names
                                   '{"answer": "yes"}', '{"result": "success"}',
                                   '{"description": "a dog on grass"}', '{"image": "photo.jpg", "width": 640}',
                                   '{"image_id": 7, "dog": 1}'])
def test_no_list_gives_no_tags_and_a_note(reply):
    got = parse_tags(reply)  # never raises, even on pathological nesting
    assert got.tags == [] and not got.ok
    assert any("no parsable list" in n for n in got.notes)


@pytest.mark.parametrize("reply", ["[]", '["None", "N/A"]', '["background"]'])
def test_a_list_without_names_is_not_an_answer(reply):
    got = parse_tags(reply, TagNormaliser(["background"]))
    assert got.tags == [] and not got.ok and any("holds no names" in n for n in got.notes)


def test_a_list_cut_off_by_max_new_tokens_keeps_its_complete_items():
    got = parse_tags('```json\n["dog", "cat", "buil')
    assert got.ok and got.tags == ["dog", "cat"] and any("cut off" in n for n in got.notes)


def test_a_list_cut_off_after_a_bracketed_aside_keeps_its_complete_items():
    got = parse_tags('Objects in [the image]: ["dog", "cat", "tr')
    assert got.ok and got.tags == ["dog", "cat"] and any("cut off" in n for n in got.notes)


def test_reply_cut_off_while_thinking_says_so():
    got = parse_tags('<think>Let me look. There is ["dog"')
    assert got.tags == [] and any("raise max_new_tokens" in n for n in got.notes)


def test_bullets_are_noted_and_max_tags_cuts():
    got = parse_tags("- dog\n- cat\n- tree", max_tags=2)
    assert got.tags == ["dog", "cat"]
    assert any("bulleted" in n for n in got.notes) and any("max_tags=2" in n for n in got.notes)


def test_find_object_for_descriptions():
    obj, _ = find_object('Here you go:\n```json\n{"dog": "small brown dog", "grass": "green lawn"}\n```')
    assert obj == {"dog": "small brown dog", "grass": "green lawn"}
    assert find_object("no object here")[0] is None


def test_joined_and_skipped_lists_are_noted():
    joined = parse_tags('Objects: ["dog"]\nBackground: ["grass"]')
    assert any("joined 2 labelled lists (Objects, Background)" in n for n in joined.notes)
    final = parse_tags('Previous list: ["dog"]. Revised list: ["cat"]')
    assert final.tags == ["cat"] and any("introduced as 'Revised list'" in n for n in final.notes)
    skipped = parse_tags('For example: ["dog"]\nAnswer: ```["cat"]```')
    assert skipped.tags == ["cat"] and any("('For example')" in n for n in skipped.notes)
    many = parse_tags("\n".join(f"Group{i}: [\"thing{i}\"]" for i in range(40)))
    assert len(many.tags) == 40 and len(many.notes[0]) < 200  # the note names a few labels, not all


def test_every_list_skipped_takes_the_last_with_a_note():
    got = parse_tags('Previous list: ["dog", "wolf"]\nOriginal answer, trimmed: ["dog", "bench"]')
    assert got.tags == ["dog", "bench"]
    assert any("every list was introduced as an earlier answer" in n and "'Original answer, trimmed:'" in n
               for n in got.notes)


@pytest.mark.parametrize("reply, note", [
    ("1. **Sky**: blue\n2. **Dog** - brown", "bulleted"),
    ("dog, cat, grass", "plain list of names"),
    ('["dog, cat, grass"]', "1 item(s) listing several names split"),
    ('{"dog": 2, "wolf": 0}', "read the keys of a JSON object as names (1 with a count of 0 dropped)"),
    ('{"objects": "dog, cat"}', "read the string under 'objects'"),
])
def test_lists_read_without_a_json_list_are_noted(reply, note):
    got = parse_tags(reply)
    assert got.ok and any(note in n for n in got.notes)


def test_normaliser_edges():
    norm = TagNormaliser()
    assert [norm(x) for x in ["\u72d7", "\uac1c", "a", "7", "(dog)", "(2)", "zebra\u200b", "dog\u00ad"]] == \
        ["\u72d7", "\uac1c", None, None, "dog", None, "zebra", "dog"]


class _NoWordNet(TagNormaliser):
    """Normalising without WordNet's singulars: the tests below measure parsing, not WordNet's loading."""

    def singular(self, words: list[str]) -> list[str]:
        return words


# Reply shapes n characters long that make parsing quadratic where a pattern can retry a repeat from every
# position of a long run (of spaces, underscores, "<think>" tags), or every list is checked against every
# code fence.
_ADVERSARIAL = {
    "bullet with a run of spaces": lambda n: "- a" + " " * n + "x",
    "numbered item with a run of spaces": lambda n: "1. a" + " " * n + "x",
    "list item with a run of spaces": lambda n: '["a' + " " * n + 'b"]',
    "one of several names with a run of spaces": lambda n: '["a, b' + " " * n + 'c"]',
    "unclosed code fence": lambda n: "```" + " \n" * (n // 2),
    "underscores inside a word": lambda n: "- a" + "_" * n + "a",
    "unclosed think tags": lambda n: "<think>" * (n // 7),
    "parentheses in a name": lambda n: '["' + "a(" * (n // 2) + 'a)x"]',
    "many lists each in a code fence": lambda n: '```["dog"]```' * (n // 13),
}


@contextlib.contextmanager
def _no_collector():
    """The garbage collector off: its pauses would land on whichever parse they happen to."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _repeats_for(text: str) -> int:
    """Parses of `text` per measure: enough for at least 5 ms of CPU time."""
    repeats = 1
    while _cpu_cost(text, repeats) < 0.005:
        repeats *= 2
    return repeats


def _cpu_cost(text: str, repeats: int) -> float:
    norm = _NoWordNet()
    start = time.process_time()
    for _ in range(repeats):
        parse_tags(text, norm)
    return time.process_time() - start


@pytest.mark.parametrize("shape", list(_ADVERSARIAL))
def test_adversarial_replies_parse_in_linear_time(shape):
    # No time limit, which would depend on the machine: the cost of a 31k-character reply (32k are read; a
    # longer one would be cut and parsed another way) against one 16 times shorter, of the same shape.
    # Linear parsing makes it about 16 times, a quadratic pattern about 256 times (seconds per reply); 64
    # leaves room for noise either way. Each measure is CPU time (on a loaded machine the wall clock counts
    # waits for a core, more of them in longer runs), repeats the parse for at least 5 ms, takes the best of
    # a few, and runs without the garbage collector, whose pauses would land on whichever parse they happen
    # to.
    small, large = _ADVERSARIAL[shape](1_950), _ADVERSARIAL[shape](31_200)
    with _no_collector():
        repeats = _repeats_for(small)
        base = min(_cpu_cost(small, repeats) for _ in range(3))
        for _ in range(3):
            ratio = _cpu_cost(large, repeats) / base
            if ratio < 64 or ratio > 256:  # clearly linear, or clearly not: no need to measure again
                break
    assert ratio < 64, f"a reply 16 times longer costs {ratio:.0f} times as much"


@pytest.mark.parametrize("reply", ["[" * 31_200, '["' + "[" * 31_200, "[" * 30 + "'dog' 'cat' x, " * 1_266 + "]" * 30],
                         ids=["brackets", "string then brackets", "nested strings missing commas"])
def test_unclosed_brackets_cost_about_what_as_many_letters_do(reply):
    # A JSON decoder run from each bracket of "[[[[..." recurses as deep as Python allows from each: linear
    # in the reply's length, so the test above cannot see it, but hundreds of times the cost of a reply of
    # letters as long (about 16 times when brackets are matched first). CPU time, best of a few, without
    # the garbage collector, as above.
    letters = "x" * len(reply)
    with _no_collector():
        repeats = _repeats_for(letters)
        base = min(_cpu_cost(letters, repeats) for _ in range(3))
        ratio = min(_cpu_cost(reply, repeats) for _ in range(2)) / base
    assert ratio < 100, f"a reply of brackets costs {ratio:.0f} times one of letters"
