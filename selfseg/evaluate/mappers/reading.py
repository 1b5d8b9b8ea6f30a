"""Reading a region description: which noun phrase it is about, and what that phrase is attached to.

"the side mirror of a white car" is about a mirror attached (of) to a car; "a man riding a bicycle" is about a
man whose verb is riding with a bicycle as its object; "there is a row of trees along the road" is about a row
of trees. The lexical mapper decides the class from this structure; this module only reads.

A `Phrase` is one noun with its compounds (head last), the phrases attached to it by a preposition or a
possessive, and the verbs that modify it with their own attachments. spaCy's dependency parse gives the
structure; WordNet's morphology gives singular nouns and verb bases (spaCy's lemmatiser turns "riding" into
"rid"). A text that WordNet knows as one noun as a whole ("traffic light", "cars") skips the parse.
"""
from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import normalize

_NOUN_TAGS = ("NN", "NNS", "NNP", "NNPS")
# "a close up of a car" parses "close" as an adjective-like head; one word reads as the view noun it is.
_CLOSEUP = re.compile(r"\bclose[ -]up\b")
# The preposition a possessive becomes: "a man's shirt" reads as "the shirt of a man".
POSSESSIVE = "of"
# Words that mean a description has more structure than "[determiner] [modifiers] noun": anything else
# is read without the parser (most tags and many short captions), which is where the time goes.
_STRUCTURE = frozenset("""of on in at with by for from to into onto over under above below behind near next
beside between among across along around through against upon atop astride inside outside beneath and or but
is are was were be been being has have had there that which who whose while where when as than 's ' ,
""".split())
_DETERMINERS = frozenset("""a an the this that these those some many several few two three four five six
seven eight nine ten its his her their our my your one""".split())

# Fewer sightings than this in WordNet's tagged corpus make an -ing word a participle before a noun's
# ("playing" 12, "standing" 3), more a noun of its own ("painting" 27, "building" 52).
_RARE_NOUN = 20
# Nouns about the picture, not what is in it: "the region shows a car" is about the car.
META = frozenset({"region", "image", "picture", "photo", "photograph", "mask", "area", "segment", "crop", "scene",
                  "view", "frame", "part", "portion", "section", "object"})
_NOT_NOUN_TAGS = frozenset({"PRP", "PRP$", "DT", "PDT", "WDT", "WP", "WP$", "EX", "CC", "IN", "MD", "TO", "CD", "UH"})
_PRONOUNS = frozenset({"it", "he", "she", "they", "this", "that", "these", "those"})

# Descriptions longer than this are not read (one row with a reason instead): region descriptions are a
# sentence, and a parser's cost grows with the text.
MAX_CHARS = 500


@dataclass(frozen=True)
class Verb:
    """A verb that modifies a phrase ("riding" in "a man riding a bike"), its base form, and its objects:
    (preposition or "obj", phrase)."""

    lemma: str
    objects: tuple[tuple[str, Phrase], ...] = ()


@dataclass(frozen=True)
class Phrase:
    """words: the noun's compounds and the noun, singular head last (("side", "mirror")). plural: the head was
    written in the plural. attached: (preposition, phrase) pairs, a possessor as "of". verbs: verbs that
    modify it, or the verb it is the subject of."""

    words: tuple[str, ...]
    plural: bool = False
    # Nouns behind its adjectives ("grassy" -> "grass"), for heads that only measure ("a grassy area").
    modifiers: tuple[str, ...] = ()
    # The words before the noun that describe it without being part of its name ("stuffed" in "a stuffed dog").
    qualifiers: tuple[str, ...] = ()
    # How many of the first words are adjectives read with the noun because together they make one of the
    # dataset's names ("potted" in "potted plant"): not nouns of their own.
    adjectives: int = 0
    attached: tuple[tuple[str, Phrase], ...] = ()
    verbs: tuple[Verb, ...] = ()

    @property
    def head(self) -> str:
        return self.words[-1] if self.words else ""

    def tails(self) -> list[str]:
        """The phrase's word runs ending at the head, longest first: "white side mirror" -> "white side
        mirror", "side mirror", "mirror"."""
        return [" ".join(self.words[k:]) for k in range(len(self.words))]

    def attached_by(self, *preps: str) -> list[Phrase]:
        return [p for prep, p in self.attached if prep in preps]


@dataclass
class Reader:
    """Reads descriptions into phrases, many at a time (spaCy's `pipe`); the same text is read once."""

    spacy_pipeline: str = "auto"
    wordnet: Any = None
    # Nouns beyond WordNet's: the dataset's class and lexicon names ("streetlamp", "cycleway")
    vocabulary: frozenset[str] = frozenset()
    _nlp: Any = field(default=None, repr=False)
    _cache: dict[str, Phrase | None] = field(default_factory=dict, repr=False)
    # WordNet's answers per word, asked for again and again across descriptions
    _nouns: dict[str, str | None] = field(default_factory=dict, repr=False)
    _verbs: dict[str, bool] = field(default_factory=dict, repr=False)
    _adjectives: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _frequencies: dict[str, int] = field(default_factory=dict, repr=False)
    _colours: dict[str, bool] = field(default_factory=dict, repr=False)
    _verb_frequencies: dict[str, int] = field(default_factory=dict, repr=False)
    _doings: dict[str, bool] = field(default_factory=dict, repr=False)

    @property
    def wn(self) -> Any:
        if self.wordnet is None:
            from ...resources import load_wordnet

            self.wordnet = load_wordnet()
        return self.wordnet

    def noun(self, word: str) -> str | None:
        """The singular WordNet noun of a word or phrase ("leaves" -> "leaf", "traffic lights" -> "traffic
        light"), None when WordNet has no such noun."""
        if word not in self._nouns:
            base = self.wn.morphy(word.replace(" ", "_"), self.wn.NOUN) if word else None
            if base is None and word in self.vocabulary:
                base = word
            elif base is None and word.endswith("s") and word[:-1] in self.vocabulary:
                base = word[:-1]
            self._nouns[word] = base.replace("_", " ") if base else None
        return self._nouns[word]

    def frequency(self, word: str) -> int:
        """How often WordNet's tagged corpus saw the word as a noun."""
        if word not in self._frequencies:
            base = self.noun(word)
            self._frequencies[word] = self._seen(base.replace(" ", "_"), self.wn.NOUN) if base else 0
        return self._frequencies[word]

    def _seen(self, lemma: str, pos: str) -> int:
        """The tagged-corpus count of a WordNet lemma over its senses of one part of speech."""
        return sum(lem.count() for s in self.wn.synsets(lemma, pos=pos) for lem in s.lemmas()
                   if lem.name().lower() == lemma)

    def _noun_not_adjective(self, word: str) -> bool:
        """A word WordNet knows as a noun and not as an adjective ("pony", "lemur"; not "white", "wooden")."""
        return self.noun(word) is not None and not self.wn.synsets(word, pos=self.wn.ADJ)

    def _names_a_doing(self, word: str) -> bool:
        """Whether a word is no noun at all to WordNet ("trotting", "clinging") or its first noun sense is an
        act, an event, a process or a state ("standing", "eating", "swimming"), not a thing ("landing",
        "opening") or a work ("drawing")."""
        if word not in self._doings:
            senses = self.wn.synsets(word, pos=self.wn.NOUN)
            doing = {self.wn.synset(n) for n in ("act.n.02", "event.n.01", "process.n.06", "state.n.02")}
            self._doings[word] = not senses or not doing.isdisjoint(senses[0].closure(lambda x: x.hypernyms()))
        return self._doings[word]

    def adjective_nouns(self, word: str) -> tuple[str, ...]:
        """The nouns WordNet derives an adjective from ("grassy" -> "grass", "sandy" -> "sand")."""
        if word in self._adjectives:
            return self._adjectives[word]
        out: dict[str, None] = {}
        for s in self.wn.synsets(word, pos=self.wn.ADJ)[:2]:
            for lem in s.lemmas():
                if lem.name().lower() != word:
                    continue
                for d in lem.derivationally_related_forms() + lem.pertainyms():
                    if d.synset().pos() == "n":
                        out[d.name().lower().replace("_", " ")] = None
        self._adjectives[word] = tuple(out)
        return self._adjectives[word]

    def singular(self, word: str) -> str | None:
        """The singular of a word tagged plural: WordNet's base form that differs from the word, since WordNet
        lists some plurals as nouns of their own ("marks", a currency; "glasses"; "men", a work force)."""
        try:
            forms = self.wn._morphy(word, self.wn.NOUN)  # every base form, not just the first
        except AttributeError:  # an NLTK without it: the first base form
            forms = [self.noun(word) or word]
        return next((f.replace("_", " ") for f in forms if f != word), None) or self.noun(word)

    def verb(self, word: str) -> str:
        return self.wn.morphy(word, self.wn.VERB) or word

    def __call__(self, descriptions: Sequence[str]) -> list[Phrase | None]:
        # the length limit is the text's as given, before normalising shortens it
        texts = [_CLOSEUP.sub("closeup", _fold(normalize(d))) if len(d) <= MAX_CHARS else d for d in descriptions]
        todo = []
        for t in dict.fromkeys(texts):
            if t in self._cache:
                continue
            whole = self.noun(t) if t and len(t) <= MAX_CHARS else None
            if not t or len(t) > MAX_CHARS or not any(ch.isalpha() for ch in t):
                self._cache[t] = None
            elif whole is not None:  # a noun as a whole ("traffic light", "road surface"): no parse needed
                self._cache[t] = Phrase(words=tuple(whole.split()), plural=whole != t)
            else:
                simple = self._simple(t)
                if simple is None:
                    todo.append(t)
                else:
                    self._cache[t] = simple
        if todo:
            if self._nlp is None:
                from ...resources import load_spacy

                # tags and the parse only: WordNet gives singulars and verb bases (and spaCy's rule
                # lemmatiser turns "riding" into "rid")
                self._nlp = load_spacy(self.spacy_pipeline, parse=True, lemmas=False)
            for t, doc in zip(todo, self._nlp.pipe(todo, batch_size=256)):
                self._cache[t] = self._read(doc)
        return [self._cache[t] for t in texts]

    def _simple(self, text: str) -> Phrase | None:
        """A description with no structure ("two red cars", "a large white building") read without the
        parser: the trailing run of nouns is the phrase, the other words its modifiers. None for anything
        else (a preposition, a verb form, a possessive, or a last word that is no noun)."""
        words = [w for w in text.replace("'s", " 's").split() if w not in _DETERMINERS]
        if not words or len(words) > 6 or any(w in _STRUCTURE or not w.isalpha() for w in words):
            return None
        # "parked cars", "a person walking": the parser reads participles
        if any(self._inflected_verb(w) for w in words[:-1]) or len(words) > 1 and self._inflected_verb(words[-1]):
            return None
        kinds = [(self.noun(w) is not None, bool(self.wn.synsets(w, pos=self.wn.ADJ))) for w in words[:-1]]
        # a word neither noun nor adjective ("without", "very"), or both ("white", "small", "dark": a colour or a
        # size, or WordNet's person and body senses), needs the parser to say which it is here
        if any(noun == adjective for noun, adjective in kinds):
            return None
        head = self.noun(words[-1])
        if head is None:
            return None
        run: list[str] = []
        k = len(words) - 2
        while k >= 0 and kinds[k][0]:
            run.insert(0, words[k])
            k -= 1
        grown = self._named_run(words[:k + 1], run, head)
        modifiers = tuple(n for w in words[:-1] for n in self.adjective_nouns(w))
        return Phrase(words=(*grown, head), plural=head != words[-1], modifiers=modifiers,
                      qualifiers=tuple(words[:len(words) - 1 - len(grown)]), adjectives=len(grown) - len(run))

    def _named_run(self, before: Sequence[str], run: list[str], head: str) -> list[str]:
        """`run` grown left over up to two adjectives that make one of the dataset's class or lexicon names
        with it and the head ("potted plant", "wooden floor"), where the adjective would otherwise be read as
        a mere modifier of "plant" or "floor". Only the dataset's names: WordNet's collocations of an
        adjective and a noun mostly mean something else ("black sheep" and "hard hat" are persons, "big
        tree" a sequoia). Not over a colour: "red light" is a name of the traffic light, but "the red light on
        the camera" is a light that is red. A compound is also written hyphenated ("double decker" for the name
        "double-decker"). WordNet's compounds do count after a word that classifies rather than describes: an -ing
        word ("rocking horse", "dining car") or an adjective that only relates to a noun ("german shepherd":
        German, of Germany); they name a kind, not a horse that rocks."""
        best = run
        for n in (1, 2):
            if len(before) < n or any(self.colour(w) for w in before[-n:]):
                continue
            joined = " ".join([*before[-n:], *run, head])
            if joined in self.vocabulary or joined.replace(" ", "-", n) in self.vocabulary or \
                    n == 1 and self._classifies(before[-1]) and self._wordnet_noun(joined):
                best = [*before[-n:], *run]
        return best

    def _classifies(self, word: str) -> bool:
        """An -ing word, or an adjective whose only WordNet senses relate it to a noun ("german", "solar")."""
        if word.endswith("ing"):
            return True
        senses = self.wn.synsets(word, pos=self.wn.ADJ)
        return bool(senses) and all(lem.pertainyms() for s in senses for lem in s.lemmas()
                                    if lem.name().lower() == word)

    def _wordnet_noun(self, text: str) -> bool:
        return self.wn.morphy(text.replace(" ", "_"), self.wn.NOUN) is not None

    def colour(self, word: str) -> bool:
        """Whether a word names a colour, or is one of its kinds ("red", "white"; WordNet also makes "white"
        a person)."""
        if word not in self._colours:
            colour = self.wn.synset("color.n.01")
            self._colours[word] = any(s == colour or colour in s.closure(lambda x: x.hypernyms() +
                                                                         x.instance_hypernyms())
                                      for s in self.wn.synsets(word.replace(" ", "_"), pos=self.wn.NOUN))
        return self._colours[word]

    def _inflected_verb(self, word: str) -> bool:
        if word not in self._verbs:
            base = self.wn.morphy(word, self.wn.VERB)
            self._verbs[word] = base is not None and base != word
        return self._verbs[word]

    # ------------------------------------------------------------------------------------------ parsing
    def _is_noun(self, t: Any) -> bool:
        """A noun token, or one the tagger missed that WordNet knows only as a noun ("lamppost" as an adverb,
        "moped" as an adjective)."""
        if t.tag_ in _NOUN_TAGS:
            return True
        if t.tag_ in _NOT_NOUN_TAGS:  # "it" is also a WordNet noun (information technology)
            return False
        return t.is_alpha and self.noun(t.lower_) is not None and not self.wn.synsets(t.lower_, pos=self.wn.VERB) \
            and t.lower_ not in _DETERMINERS and t.lower_ not in _STRUCTURE

    def _mistagged_noun(self, t: Any) -> bool:
        """A verb the tagger made of a noun: one WordNet knows only as a noun ("a stainless steel oven", "the
        school desks in the classroom"), or a plural with no object right after its compound word that
        WordNet's corpus saw far more often as a noun than as a verb: twice as often after a thing ("the
        office chairs around the table"; "the boat rests" is a verb), ten times after a doer, a person, an
        animal or a group, who would be doing it ("the cat toys", "the man bags"; "a man fishes", "the group
        cheers", "a dog barks" are verbs), or a compound WordNet knows ("the dog collars")."""
        if not t.tag_.startswith("VB"):
            return False
        if self._is_noun(t):
            return True
        before = t.doc[t.i - 1] if t.i else None
        if not (t.tag_ == "VBZ" and before is not None and before.head.i == t.i and before.dep_ == "nsubj" and
                before.tag_ in _NOUN_TAGS) or \
                any(c.dep_ in ("dobj", "attr", "prt", "ccomp", "xcomp") for c in t.children):
            return False
        if self._compound_noun(before.lower_, t.lower_):
            return True
        return self.frequency(t.lower_) > (10 if self._doer(before.lower_) else 2) * self.verb_frequency(t.lower_)

    def _compound_noun(self, first: str, plural: str) -> bool:
        """Whether WordNet knows a word and a plural's singular as one noun, apart or joined ("dog collar",
        "ski lift", "crosswalk")."""
        one = self.noun(plural) or plural
        return self.noun(f"{first} {one}") is not None or self.noun(f"{first}{one}") is not None

    def _doer(self, word: str) -> bool:
        """Whether a noun's first WordNet sense is a person, an animal or a group of them."""
        base = self.noun(word)
        senses = self.wn.synsets(base.replace(" ", "_"), pos=self.wn.NOUN) if base else []
        return bool(senses) and (senses[0].lexname() in ("noun.person", "noun.animal", "noun.group")
                                 or senses[0].name() == "group.n.01")

    def verb_frequency(self, word: str) -> int:
        """How often WordNet's tagged corpus saw the word's base as a verb."""
        if word not in self._verb_frequencies:
            self._verb_frequencies[word] = self._seen(self.verb(word), self.wn.VERB)
        return self._verb_frequencies[word]

    def _main(self, doc: Any) -> Any:
        """The token the description is about (its first sentence's): a noun root; for a verb root ("there is a
        car", "cars parked on the street", "the region shows a car"), its attribute or subject, a noun left
        of it ("cyclist crossing the road"), or its object; else the first noun that is not a compound
        modifier; else the last word WordNet knows as a noun. A meta noun ("the region", "the image")
        gives way to what its verb shows."""
        root = next((t for t in doc if t.dep_ == "ROOT"), None)
        if root is None:
            return None
        if root.tag_ in _NOUN_TAGS or self._mistagged_noun(root):
            # "a kid playing on the beach" parses the participle as the head noun and the kid as its modifier:
            # an -ing word WordNet's corpus rarely saw as a noun, after a commoner noun or naming a doing
            # first (an act, a process, a state: "a zebra standing", "a turtle swimming", rarer nouns than
            # the -ing word, or with no noun sense at all: "a pony trotting"), is a participle ("an office
            # building", "a pencil drawing" are nouns). The noun before may be tagged an adjective ("pony"),
            # where WordNet knows it as no adjective and as a doer ("teak decking" is no teak).
            before = [c for c in root.lefts if c.dep_ in ("amod", "compound", "nsubj") and
                      (c.tag_ in _NOUN_TAGS or c.tag_ == "JJ" and self._noun_not_adjective(c.lower_)
                       and self._doer(c.lower_))]
            seen = self.frequency(root.lower_)
            if root.lower_.endswith("ing") and before and seen < _RARE_NOUN and \
                    (self.frequency(before[-1].lower_) > seen or self._names_a_doing(root.lower_)
                     and not self._compound_noun(before[-1].lower_, root.lower_)):  # "a zebra crossing"
                return before[-1]
            # "a bus drives past the station" tags the verb a plural noun with the bus its compound: a plural
            # WordNet's corpus saw five times as often as a verb is one ("drives", "walks"; "tire marks",
            # "paw prints" and "coffee stains" are seen about three times as often, and stay nouns)
            if root.tag_ == "NNS" and before and before[-1].i == root.i - 1 and \
                    self.verb(root.lower_) != root.lower_ and \
                    not self._compound_noun(before[-1].lower_, root.lower_) and \
                    self.verb_frequency(root.lower_) > 5 * max(self.frequency(root.lower_),  # "shelves": shelf
                                                               self.frequency(self.verb(root.lower_))):
                return before[-1]
            # "the yellow fire hydrant", "a cast iron oven" tag the last noun an adjective or a participle, and
            # hang it on the word before: a word right after the root that WordNet knows only as a noun heads it
            after = root.doc[root.i + 1] if root.i + 1 < len(root.doc) else None
            if after is not None and after.head.i == root.i and after.dep_ in ("amod", "acl", "appos") and \
                    after.tag_ not in _NOUN_TAGS and self._is_noun(after) and \
                    not (after.tag_ == "VBG" and self._names_a_doing(after.lower_)):  # "a man paragliding"
                return after
            # "a garbage truck collecting bins": the truck hangs off a participle that modifies the root
            for c in root.lefts:
                if c.tag_ == "VBG":
                    subj = [g for g in c.lefts if g.dep_ in ("npadvmod", "nsubj") and g.tag_ in _NOUN_TAGS]
                    if subj:
                        return subj[-1]
            return root
        found = None
        for dep in ("attr", "nsubj", "nsubjpass"):
            found = found or next((c for c in root.children if c.dep_ == dep and self._is_noun(c)), None)
        if found is not None and found.lower_ in META:
            shown = next((c for c in root.children if c.dep_ in ("dobj", "attr") and self._is_noun(c)), None)
            if shown is None:  # "the region shows a person walking": the person heads a clause of its own
                shown = next((g for c in root.children if c.dep_ in ("ccomp", "xcomp") for g in c.children
                              if g.dep_ in ("nsubj", "nsubjpass") and self._is_noun(g)), None)
            found = shown if shown is not None else found
        if found is None:
            left = [c for c in root.lefts if self._is_noun(c)]
            found = left[-1] if left else None
        if found is None:
            for dep in ("dobj", "appos"):
                found = found or next((c for c in root.children if c.dep_ == dep and self._is_noun(c)), None)
        if found is None:
            ccomp = [c for c in root.children if c.dep_ in ("ccomp", "xcomp")]
            subj = [g for c in ccomp for g in c.children if g.dep_ in ("nsubj", "nsubjpass") and self._is_noun(g)]
            found = subj[0] if subj else None
        if found is not None:
            return found
        sent = root.sent
        nouns = [t for t in sent if self._is_noun(t) and t.dep_ != "compound"] or [t for t in sent if self._is_noun(t)]
        if nouns:
            return nouns[0]
        known = [t for t in doc if t.is_alpha and self.noun(t.lower_)]
        return known[-1] if known else None

    def _read(self, doc: Any) -> Phrase | None:
        token = self._main(doc)
        if token is None:
            return None
        phrase = self._phrase(token, depth=0)
        # "It is a person. He is riding a bicycle.": a later sentence about a pronoun goes on describing it
        later = [s.root for s in doc.sents if s.start > token.sent.start and s.root.tag_.startswith("VB")
                 and any(c.dep_ in ("nsubj", "nsubjpass") and c.lower_ in _PRONOUNS for c in s.root.children)]
        if later:
            extra = tuple(self._verb(v, 0, skip=next(c for c in v.children if c.lower_ in _PRONOUNS)) for v in later)
            phrase = dataclasses.replace(phrase, verbs=phrase.verbs + extra)
        return phrase

    def _phrase(self, t: Any, depth: int) -> Phrase:
        run = _compound_run(t)
        plural = t.tag_ in ("NNS", "NNPS") or t.tag_ == "VBZ" and self.noun(t.lower_) not in (None, t.lower_)
        head = (self.singular(t.lower_) if plural else None) or self.noun(t.lower_) or t.lower_
        # the modifiers right before the run that hang on it or on the head ("potted" in "potted plant")
        start = t.i - len(run)
        before: list[str] = []
        k = start - 1
        while k >= 0 and len(before) < 2 and t.doc[k].dep_ in ("amod", "compound", "nmod") and \
                start <= t.doc[k].head.i <= t.i:
            before.insert(0, t.doc[k].lower_)
            k -= 1
        grown = self._named_run(before, run, head)
        words = tuple([*grown, head])
        adjectives = len(grown) - len(run)
        modifiers = tuple(n for c in t.children if c.dep_ == "amod" for n in self.adjective_nouns(c.lower_))
        qualifiers = tuple(c.lower_ for c in t.children if c.dep_ == "amod" and c.i < t.i and
                           c.lower_ not in grown[:adjectives])
        if depth >= 4:  # descriptions nest a few phrases deep; deeper ones add nothing a class hangs on
            return Phrase(words=words, plural=plural, modifiers=modifiers, qualifiers=qualifiers,
                          adjectives=adjectives)
        attached: list[tuple[str, Phrase]] = []
        verbs: list[Verb] = []
        for c in t.children:
            if c.dep_ == "poss" and c.tag_ in _NOUN_TAGS:
                attached.append((POSSESSIVE, self._phrase(c, depth + 1)))
            elif c.dep_ in ("prep", "agent"):  # "agent": the by-phrase of a passive ("cast by a tree")
                attached += [(c.lower_, self._phrase(o, depth + 1)) for o in _objects(c)]
            elif c.dep_ in ("acl", "relcl") and c.tag_.startswith("VB"):
                verbs.append(self._verb(c, depth))
            elif c.dep_ == "conj" and c.tag_ in _NOUN_TAGS:
                attached.append(("and", self._phrase(c, depth + 1)))
        if t.dep_ in ("nsubj", "nsubjpass", "compound", "npadvmod", "advmod") and t.head.tag_.startswith("VB") \
                and t.head.i > t.i:  # the subject of a verb, or a noun the parser hung before it as a modifier
            verbs.append(self._verb(t.head, depth, skip=t))
        return Phrase(words=words, plural=plural, modifiers=modifiers, qualifiers=qualifiers,
                      attached=tuple(attached), verbs=tuple(verbs), adjectives=adjectives)

    def _verb(self, v: Any, depth: int, skip: Any = None) -> Verb:
        objects: list[tuple[str, Phrase]] = []
        for c in v.children:
            if c is skip:
                continue
            if c.dep_ in ("dobj", "attr", "oprd") and c.tag_ in _NOUN_TAGS:
                objects.append(("obj", self._phrase(c, depth + 1)))
            elif c.dep_ in ("prep", "agent"):  # "agent": the by-phrase of a passive ("cast by a tree")
                objects += [(c.lower_, self._phrase(o, depth + 1)) for o in _objects(c)]
        return Verb(lemma=self.verb(v.lower_), objects=tuple(objects))


def _compound_run(t: Any) -> list[str]:
    """The nouns and noun-like modifiers directly before the head ("side" in "side mirror", "traffic" in
    "traffic sign"), nearest last; adjectives end the run unless spaCy parsed them as compounds."""
    run: list[str] = []
    k = t.i - 1
    doc = t.doc
    # each word hangs on the head or on a word of the run after it ("traffic light pole")
    while k >= 0 and k < doc[k].head.i <= t.i and \
            (doc[k].dep_ == "compound" or doc[k].dep_ == "nmod" and doc[k].tag_ in _NOUN_TAGS):
        run.insert(0, doc[k].lower_)
        k -= 1
    return run


def _fold(text: str) -> str:
    """Accents off Latin letters ("café" -> "cafe", as WordNet spells it); other scripts stay as they are."""
    if text.isascii():
        return text
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _objects(prep: Any) -> list[Any]:
    """The objects of a preposition ("on the road"), conjuncts included ("of cars and buses"): nouns, and
    words the tagger read as something else ("a moped" as an adjective)."""
    out = []
    for o in prep.children:
        if o.dep_ == "pobj" and (o.tag_ in _NOUN_TAGS or o.tag_ in ("JJ", "RB", "VBG", "VBN")):
            out.append(o)
            out += [c for c in o.children if c.dep_ == "conj" and c.tag_ in _NOUN_TAGS]
    return out
