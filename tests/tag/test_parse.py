"""Reading tag lists out of chat-model replies: scripted replies of the shapes real models produce."""
from __future__ import annotations

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
])
def test_lists_are_recovered(reply, tags):
    got = parse_tags(reply, TagNormaliser(["background"]))
    assert got.tags == tags


def test_wrong_item_types_are_dropped_with_a_note():
    got = parse_tags('["dog", 3, null, ["tree"], true, {"size": 2}, "cat"]')
    assert got.ok and got.tags == ["dog", "tree", "cat"]  # nested lists are flattened
    assert any("4 list item(s) that were not names dropped" in n for n in got.notes)


@pytest.mark.parametrize("reply", ["", "I cannot help with that.", "dog, cat and a tree", "[unclosed", "{}",
                                   "[" * 5000, "{" * 5000, '"word {x ' * 3000])
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
