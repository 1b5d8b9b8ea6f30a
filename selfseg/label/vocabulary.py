"""One vocabulary for a whole dataset: the raw nouns of every image's instances -> a fixed list of classes.

Feed a `VocabularyBuilder` one image at a time (`add(image_id, labels)`: only the nouns, never masks), then
`build()` a `DatasetVocabulary`, which `save` writes as `vocabulary.json`. Every class lists the raw nouns it
absorbed with their instance counts; every noun that became no class is in `dropped` with the reason, so the
counts of both add up to the instances seen.

Without an ontology the classes come from the nouns, in this order:

1. Normal form: lower case, whitespace, '_' and '-' collapsed to one space, articles and counts stripped, the
   head word singular (the last, or the one before a first preposition: "pairs of shoes" -> "pair of shoes";
   `selfseg.tag.parse.TagNormaliser`, the tag stage's rule: WordNet's morphology,
   a plural WordNet lists as a noun of its own kept only when its tagged corpus saw it more often than the
   singular, and plural-only nouns such as "glasses", "jeans", "people" kept), British spellings in
   `SPELLING` made American, and the hyphen put back where WordNet spells the compound with one ("t-shirt").
   Placeholders ("none", "other") and text that is no noun are dropped.
2. Synonyms: normal forms that share their first WordNet noun sense merge ("automobile" and "car", "couch"
   and "sofa"; `selfseg.tag.cleanup.clean_tags`), and so do the names one line of a class-names file lists
   (`synonym_lists`; a name on several lines counts for its first). The class's name is its most frequent
   normal form (ties: the shortest, then the alphabetically first): the dataset's own word, never a
   list's or WordNet's.
3. Rare nouns: a class seen in fewer than `min_images` images (or than the run has) folds into its nearest
   WordNet hypernym that is a frequent class (any of the noun's common senses, the fewest hops first:
   "dalmatian" is a dog, not a person from Dalmatia, when "dog" is a class), or is dropped when none is (or
   with rare "drop"). Only frequent classes take rare ones, so the result does not depend on the order rare
   nouns are looked at.
4. The coarser level (`coarse`): a class whose first WordNet sense lies below another class's folds into the
   most general such class ("sedan" into "car"; both into "vehicle" when that is a class too).

Vague nouns ("object", "thing"; the lexical mapper's `VAGUE`) never take other classes. Classes are ordered
by instances (most first), then name; a class's id is its position, so the same nouns give the same ids
whatever order the images came in.

With an ontology (`load_ontology`: a YAML mapping class -> phrases, or a list of classes) the classes are the
user's, in the file's order: each normal form is mapped onto them by a label mapper (`lexical` by default,
offline), the phrases counting as names of their class; a noun that maps to none is dropped or goes to the
class "other" (appended last unless the ontology has one), as `unmapped` says. `min_images` and `coarse` do
not apply: the user's list decides.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DatasetError, check, choices, text_error

if TYPE_CHECKING:
    from ..evaluate.datasets import ClassInfo

#: Layout version of vocabulary.json.
SCHEMA_VERSION = 1
#: The file a labelled dataset's vocabulary is written to.
VOCABULARY_FILE = "vocabulary.json"
#: What happens to a rare noun (vocabulary.rare).
RARE_RULES = ("fold", "drop")
#: What a noun no ontology class takes becomes (vocabulary.unmapped).
UNMAPPED_RULES = ("drop", "other")
#: The class unmapped nouns go to with unmapped "other".
OTHER = "other"
#: British spellings of common object words -> American, per word. Kept small on purpose: WordNet lists both
#: spellings in one synset for most words (so they merge as synonyms anyway); these are the ones whose first
#: senses differ ("tyre", "colour") or that decide which spelling names the class.
SPELLING = {"aeroplane": "airplane", "armour": "armor", "centre": "center", "colour": "color", "grey": "gray",
            "harbour": "harbor", "jewellery": "jewelry", "kerb": "curb", "moustache": "mustache",
            "plough": "plow", "pyjamas": "pajamas", "theatre": "theater", "tyre": "tire"}
_FORMAT = "a YAML mapping of class -> list of phrases, or a YAML list of classes"


@dataclass
class VocabularyConfig:
    """How the nouns of a whole dataset become one class list (the `selfseg label` command's settings)."""

    # A class seen in fewer images than this (or than the run has, if fewer) is rare (1: no class is).
    min_images: int = 2
    # What happens to a rare class: "fold" (into its nearest WordNet hypernym that is a frequent class; dropped
    # when none is) or "drop".
    rare: str = "fold"
    # Merge nouns that share their first WordNet noun sense ("automobile" into "car").
    wordnet_synonyms: bool = True
    # Class-names files (one class per line, ';' between names) or shipped dataset names ("voc", "ade20k", ...)
    # whose lines list synonyms: the names on one line share a class. None by default, since the shipped lists
    # are tuned to their benchmarks (ADE20K's "bicycle;bike;wheel;cycle", VOC's "potted plant;...;plant").
    synonym_lists: list[str] = field(default_factory=list)
    # The coarser level: a class whose WordNet sense lies below another class's folds into the most general
    # such class ("sedan" into "car", both into "vehicle" when that is a class).
    coarse: bool = False
    # With an ontology: a noun none of its classes takes is dropped ("drop") or labelled "other" ("other").
    unmapped: str = "drop"
    # With an ontology: the label mapper that maps nouns onto its classes ("lexical" runs offline; the others take
    # their models and settings from the evaluation section: llm_model, embedding_model, thresholds).
    mapper: str = "lexical"
    # With an ontology: the lexical mapper's highest level (exact, synonym, hyponym, meronym). Not meronym by
    # default: a part ("wheel") labelled as its whole would give the whole's class to the part's mask.
    mapper_level: str = "hyponym"

    def __post_init__(self) -> None:
        from ..evaluate.mappers import METHODS
        from ..evaluate.mappers.lexical import LEVELS

        check(isinstance(self.min_images, int) and self.min_images >= 1, "min_images", "an integer >= 1",
              self.min_images)
        check(self.rare in RARE_RULES, "rare", choices(RARE_RULES), self.rare)
        check(isinstance(self.synonym_lists, list) and all(isinstance(s, str) and s.strip()
                                                           for s in self.synonym_lists),
              "synonym_lists", "a list of class-names files or dataset names", self.synonym_lists)
        check(self.unmapped in UNMAPPED_RULES, "unmapped", choices(UNMAPPED_RULES), self.unmapped)
        check(self.mapper in METHODS, "mapper", choices(METHODS), self.mapper)
        check(self.mapper_level in LEVELS, "mapper_level", choices(LEVELS), self.mapper_level)


@dataclass
class VocabularyClass:
    """One class of the dataset. absorbed: raw noun (as given, whitespace collapsed) -> its instances;
    images: how many images hold one of them; instances: the absorbed counts' sum."""

    id: int
    name: str
    absorbed: dict[str, int]
    images: int
    instances: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "instances": self.instances, "images": self.images,
                "absorbed": dict(self.absorbed)}


@dataclass
class DroppedNoun:
    """A raw noun that became no class, why, and what it held."""

    reason: str
    instances: int
    images: int

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "instances": self.instances, "images": self.images}


@dataclass
class DatasetVocabulary:
    """The dataset's classes (ids = positions), the nouns dropped, the totals seen, and the settings and
    ontology that made it."""

    classes: list[VocabularyClass]
    dropped: dict[str, DroppedNoun]
    images: int
    instances: int
    config: dict[str, Any]
    ontology: str | None = None
    schema: int = SCHEMA_VERSION
    _by_raw: dict[str, str] = field(init=False, repr=False, compare=False)
    _by_form: dict[str, str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        self._by_raw = {raw: c.name for c in self.classes for raw in c.absorbed}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def class_of(self, noun: str) -> str | None:
        """The class a noun went to: a raw noun seen while building, or any spelling of one whose normal form
        was seen ("Cars" when "car" was); None for a dropped or unseen noun."""
        raw = _raw_key(noun)
        if raw in self._by_raw:
            return self._by_raw[raw]
        if raw in self.dropped:
            return None
        if self._by_form is None:
            normal = NounNormaliser()
            self._by_form = {}
            for c in self.classes:
                for seen in c.absorbed:
                    form = normal(seen)
                    if form is not None:
                        self._by_form.setdefault(form, c.name)
        form = NounNormaliser()(raw)
        return None if form is None else self._by_form.get(form)

    def id_of(self, noun: str) -> int | None:
        """The id of the class a noun went to (see `class_of`)."""
        name = self.class_of(noun)
        return None if name is None else self.names.index(name)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "images": self.images, "instances": self.instances,
                "ontology": self.ontology, "config": dict(self.config),
                "classes": [c.to_dict() for c in self.classes],
                "dropped": {k: v.to_dict() for k, v in self.dropped.items()}}

    @classmethod
    def from_dict(cls, d: Any, source: str = "vocabulary") -> DatasetVocabulary:
        """The inverse of `to_dict`; a one-line DatasetError naming `source` for anything else."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA_VERSION:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise DatasetError(f"{source}: expected a selfseg vocabulary with schema {SCHEMA_VERSION}, got {got!r}")
        try:
            classes = [VocabularyClass(id=int(c["id"]), name=str(c["name"]),
                                       absorbed={str(k): int(v) for k, v in c["absorbed"].items()},
                                       images=int(c["images"]), instances=int(c["instances"]))
                       for c in d["classes"]]
            dropped = {str(k): DroppedNoun(reason=str(v["reason"]), instances=int(v["instances"]),
                                           images=int(v["images"])) for k, v in d["dropped"].items()}
            out = cls(classes=classes, dropped=dropped, images=int(d["images"]), instances=int(d["instances"]),
                      config=dict(d.get("config") or {}), ontology=d.get("ontology"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{source}: a vocabulary field is missing or of the wrong type ({exc!r})") from None
        if [c.id for c in classes] != list(range(len(classes))):
            raise DatasetError(f"{source}: expected class ids 0..{len(classes) - 1} in order, "
                               f"got {[c.id for c in classes]}")
        return out

    def save(self, path: str | Path) -> Path:
        """Write vocabulary.json whole or not at all: to `path`, or into it when it is a directory."""
        from ..io import atomic_write

        path = Path(path)
        if path.is_dir():
            path = path / VOCABULARY_FILE
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False)
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        return path

    @classmethod
    def load(cls, path: str | Path) -> DatasetVocabulary:
        path = Path(path)
        if path.is_dir():
            path = path / VOCABULARY_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"vocabulary {path}: cannot read it ({exc})") from None
        return cls.from_dict(data, source=f"vocabulary {path}")


def _raw_key(noun: str) -> str:
    return " ".join(str(noun).split())


class NounNormaliser:
    """A raw noun -> its normal form (step 1 of the module docstring), or None for no noun."""

    def __init__(self, wordnet: Any = None) -> None:
        from ..tag.parse import TagNormaliser

        self._tags = TagNormaliser()
        self._wn = wordnet
        self._cache: dict[str, str | None] = {}

    @property
    def wn(self) -> Any:
        if self._wn is None:
            from ..resources import load_wordnet

            self._wn = load_wordnet()
        return self._wn

    def _known(self, form: str) -> bool:
        return bool(self.wn.synsets(form.replace(" ", "_"), pos=self.wn.NOUN))

    def __call__(self, raw: str) -> str | None:
        key = _raw_key(raw)
        if key not in self._cache:
            self._cache[key] = self._normal(key)
        return self._cache[key]

    def _normal(self, raw: str) -> str | None:
        text = " ".join(raw.replace("_", " ").replace("-", " ").split())
        form = self._tags(text) if text else None
        if not form:
            return None
        form = " ".join(SPELLING.get(w, w) for w in form.split())
        if " " in form and not self._known(form) and self._known(form.replace(" ", "-")):
            form = form.replace(" ", "-")  # WordNet's own spelling of the compound: "t shirt" -> "t-shirt"
        return form


# ------------------------------------------------------------------------------------------------ ontology


def load_ontology(path: str | Path) -> list[ClassInfo]:
    """The user's classes from a YAML file: a mapping class -> list of phrases (null: none), or a list of
    classes. Each becomes a class-names line (the class first, then its phrases), as the label mappers read
    them. Anything else is a one-line ConfigError naming the file: not YAML, empty, entries that are not
    non-empty strings, a class named twice, a phrase given to two classes (or naming another class)."""
    import yaml

    from ..evaluate.datasets import ClassInfo
    from ..evaluate.mappers.base import normalize

    path = Path(path)
    where = f"ontology {path}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file (expected {_FORMAT})")

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice (PyYAML keeps the last one silently)."""

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        keys = [loader.construct_object(k, deep=True) for k, _ in node.value]
        twice = next((k for i, k in enumerate(keys) if isinstance(k, str) and k in keys[:i]), None)
        if twice is not None:
            raise ConfigError(f"{where}: class {twice!r} is given twice (expected each class once)")
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{where}: not valid YAML ({text_error(exc)}); expected {_FORMAT}") from None
    if not data:
        raise ConfigError(f"{where}: expected {_FORMAT}, got {'an empty file' if data is None else repr(data)}")
    if isinstance(data, list):
        entries = [(cls, None) for cls in data]
    elif isinstance(data, dict):
        entries = list(data.items())
    else:
        raise ConfigError(f"{where}: expected {_FORMAT}, got a {type(data).__name__} ({data!r})")
    owner: dict[str, tuple[str, bool]] = {}  # normal form of a name -> (its class, whether it is the class's name)
    lines: list[tuple[str, ...]] = []

    def writable(name: str, what: str) -> None:
        # Each class is one line of classes.txt, its names ';'-separated, '#' opening a comment line.
        if ";" in name or len(name.splitlines()) > 1 or name.startswith("#"):
            raise ConfigError(f"{where}: {what} {name!r}: expected no ';', line break or leading '#' (each class "
                              f"is one line of the dataset's classes.txt)")

    for cls, phrases in entries:
        if not isinstance(cls, str) or not normalize(cls):
            raise ConfigError(f"{where}: expected class names that are non-empty strings, got {cls!r}")
        cls = cls.strip()
        writable(cls, "class")
        if normalize(cls) in owner:
            other, is_class = owner[normalize(cls)]
            raise ConfigError(f"{where}: class {cls!r} is given twice (expected each class once)" if is_class else
                              f"{where}: class {cls!r} is also a phrase of class {other!r} (expected each name "
                              f"in one class)")
        owner[normalize(cls)] = (cls, True)
        if phrases is None:
            phrases = []
        if not isinstance(phrases, list):
            raise ConfigError(f"{where}: class {cls!r}: expected a list of phrases (or null), got {phrases!r}")
        names = [cls]
        for phrase in phrases:
            if not isinstance(phrase, str) or not normalize(phrase):
                raise ConfigError(f"{where}: class {cls!r}: expected phrases that are non-empty strings, "
                                  f"got {phrase!r}")
            writable(phrase.strip(), f"class {cls!r}: phrase")
            other, _ = owner.setdefault(normalize(phrase), (cls, False))
            if other != cls:
                raise ConfigError(f"{where}: phrase {phrase!r} of class {cls!r} also names class {other!r} "
                                  f"(expected each name in one class)")
            names.append(phrase.strip())
        lines.append(tuple(dict.fromkeys(names)))
    return [ClassInfo(index=i, names=names) for i, names in enumerate(lines)]


# ------------------------------------------------------------------------------------------------ building


@dataclass
class _Noun:
    """Raw nouns that share a class so far: their normal forms (ranked), raw counts and image indices."""

    forms: list[str]
    raws: Counter = field(default_factory=Counter)
    images: set[int] = field(default_factory=set)

    @property
    def instances(self) -> int:
        return sum(self.raws.values())

    @property
    def name(self) -> str:
        return self.forms[0]

    def absorb(self, other: _Noun) -> None:
        self.raws.update(other.raws)
        self.images |= other.images


def _rank(forms: dict[str, _Noun]) -> list[str]:
    """Most instances first, then the shortest, then alphabetical: the order that names a merged class."""
    return sorted(forms, key=lambda f: (-forms[f].instances, len(f), f))


class VocabularyBuilder:
    """Collects the raw nouns of a dataset image by image, then builds its vocabulary.

    `add(image_id, labels)`: the raw label of every instance of one image (a noun per instance, repeats
    counting as instances); an image id given twice adds to the same image. `build()` may be called at any
    time and does not change what was collected. ontology: its classes (`load_ontology`) or the file's path."""

    def __init__(self, config: VocabularyConfig | None = None, ontology: Sequence[ClassInfo] | str | Path | None = None,
                 wordnet: Any = None, mapper: Any = None) -> None:
        self.config = config or VocabularyConfig()
        # The label mapper onto the ontology's classes (`ontology_classes`); None: `config.mapper` with its
        # model settings' defaults. `selfseg label` passes one built from the whole config.
        self.mapper = mapper
        self.ontology_path = str(ontology) if isinstance(ontology, (str, Path)) else None
        self.ontology = load_ontology(ontology) if isinstance(ontology, (str, Path)) else \
            (list(ontology) if ontology is not None else None)
        self._wordnet = wordnet
        self._images: dict[str, int] = {}
        self._raws: dict[str, _Noun] = {}

    @property
    def wn(self) -> Any:
        if self._wordnet is None:
            from ..resources import load_wordnet

            self._wordnet = load_wordnet()
        return self._wordnet

    def add(self, image_id: str, labels: Iterable[str]) -> None:
        index = self._images.setdefault(str(image_id), len(self._images))
        for label in labels:
            if not isinstance(label, str):
                raise TypeError(f"image {image_id!r}: expected labels that are strings, got {label!r}")
            raw = _raw_key(label)
            noun = self._raws.setdefault(raw, _Noun(forms=[]))
            noun.raws[raw] += 1
            noun.images.add(index)

    def build(self) -> DatasetVocabulary:
        normal = NounNormaliser(self.wn)
        forms: dict[str, _Noun] = {}
        dropped: dict[str, DroppedNoun] = {}
        for raw in sorted(self._raws):
            noun = self._raws[raw]
            form = normal(raw)
            if form is None:
                dropped[raw] = DroppedNoun("not a noun (empty, a placeholder or no letters)", noun.instances,
                                           len(noun.images))
                continue
            forms.setdefault(form, _Noun(forms=[form])).absorb(noun)
        if self.ontology is not None:
            classes = self._map_ontology(forms, dropped)
        else:
            classes = self._open_vocabulary(forms, normal, dropped)
        return DatasetVocabulary(
            classes=classes, dropped=dict(sorted(dropped.items())), images=len(self._images),
            instances=sum(n.instances for n in self._raws.values()), config=asdict(self.config),
            ontology=self.ontology_path)

    # ---------------------------------------------------------------------------------- open vocabulary
    def _open_vocabulary(self, forms: dict[str, _Noun], normal: NounNormaliser,
                         dropped: dict[str, DroppedNoun]) -> list[VocabularyClass]:
        from ..evaluate.mappers.lexical import VAGUE

        groups = self._synonyms(forms, normal)
        # Never more images than there are: a class in every image of a one-image run is not rare.
        least = min(self.config.min_images, len(self._images))
        if least > 1:
            frequent = {k: g for k, g in groups.items() if len(g.images) >= least}
            targets = self._identities({k: g for k, g in frequent.items() if k not in VAGUE})
            for key in sorted(set(groups) - set(frequent)):
                g = groups[key]
                why = f"seen in {len(g.images)} image(s), fewer than min_images {self.config.min_images}" + \
                    (f" (capped at the run's {least} images)" if least < self.config.min_images else "")
                senses = self._senses(g, common=True)
                to = self._nearest(senses, targets) if self.config.rare == "fold" else None
                if to is not None:
                    frequent[to].absorb(g)
                    continue
                why += (" (rare: drop)" if self.config.rare == "drop" else "; no WordNet hypernym of it is a class"
                        if senses else "; WordNet does not know it, so no class is its hypernym")
                for raw, n in sorted(g.raws.items()):
                    dropped[raw] = DroppedNoun(why, n, len(self._raws[raw].images))
            groups = frequent
        if self.config.coarse:
            groups = self._coarse(groups, VAGUE)
        order = sorted(groups, key=lambda k: (-groups[k].instances, k))
        return [VocabularyClass(id=i, name=k, absorbed=dict(sorted(groups[k].raws.items())),
                                images=len(groups[k].images), instances=groups[k].instances)
                for i, k in enumerate(order)]

    def _synonyms(self, forms: dict[str, _Noun], normal: NounNormaliser) -> dict[str, _Noun]:
        """Forms merged by class-list lines and first WordNet senses, keyed by the class's name."""
        from ..tag.cleanup import clean_tags

        parent = {f: f for f in forms}

        def root(f: str) -> str:
            while parent[f] != f:
                parent[f] = parent[parent[f]]
                f = parent[f]
            return f

        def union(a: str, b: str) -> None:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)

        line_of: dict[str, tuple[int, int]] = {}
        for i, classes in enumerate(self._synonym_lists()):
            for c in classes:
                for name in c.names:
                    form = normal(name)
                    if form is not None:
                        line_of.setdefault(form, (i, c.index))  # a name on several lines counts for its first
        first_on_line: dict[tuple[int, int], str] = {}
        for f in sorted(forms):
            if f in line_of:
                union(f, first_on_line.setdefault(line_of[f], f))
        if self.config.wordnet_synonyms:
            _, merges = clean_tags(_rank(forms), synonyms=True, hypernyms=False, wordnet=self.wn)
            for m in merges:
                union(m.kept, m.dropped)
        members: dict[str, dict[str, _Noun]] = {}
        for f in forms:
            members.setdefault(root(f), {})[f] = forms[f]
        groups: dict[str, _Noun] = {}
        for mem in members.values():
            ranked = _rank(mem)
            g = _Noun(forms=ranked)
            for f in ranked:
                g.absorb(mem[f])
            groups[g.name] = g
        return groups

    def _synonym_lists(self) -> list[list[ClassInfo]]:
        from ..evaluate.datasets import class_list, dataset_names, read_class_file

        out = []
        for entry in self.config.synonym_lists:
            if entry in dataset_names() and not Path(entry).is_file():
                out.append(class_list(entry))
            else:
                out.append(read_class_file(Path(entry).expanduser()))
        return out

    # ---------------------------------------------------------------------------------- WordNet
    def _first(self, form: str) -> Any:
        s = self.wn.synsets(form.replace(" ", "_"), pos=self.wn.NOUN)
        return s[0] if s else None

    def _common(self, form: str) -> list[Any]:
        """The senses WordNet's tagged corpus saw at least a fifth as often as the commonest (all when it saw
        none), in WordNet's order: a rare "dalmatian" may be the dog, but a "mouse" is not a computer's."""
        wn = self.wn
        senses = wn.synsets(form.replace(" ", "_"), pos=wn.NOUN)
        base = (wn.morphy(form.replace(" ", "_"), wn.NOUN) or form).lower()
        counts = [sum(lem.count() for lem in s.lemmas() if lem.name().lower() == base) for s in senses]
        top = max(counts, default=0)
        return [s for s, n in zip(senses, counts) if 5 * n >= top and (n > 0 or top == 0)]

    def _senses(self, g: _Noun, common: bool) -> list[Any]:
        out: list[Any] = []
        for f in g.forms:
            for s in (self._common(f) if common else [self._first(f)]):
                if s is not None and s not in out:
                    out.append(s)
        return out

    def _identities(self, groups: dict[str, _Noun]) -> dict[Any, str]:
        """Synset -> the class it is the first sense of (the first class by name when two share one)."""
        out: dict[Any, str] = {}
        for key in sorted(groups):
            for s in self._senses(groups[key], common=False):
                out.setdefault(s, key)
        return out

    def _nearest(self, senses: list[Any], targets: dict[Any, str], skip: str | None = None) -> str | None:
        """The class whose synset is the nearest hypernym (instance hypernyms included) of one of `senses`:
        the fewest hops, then the earlier sense, then the class name; `skip` is never chosen."""
        best: tuple[int, int, str] | None = None
        for rank, start in enumerate(senses):
            frontier, seen, hops = [start], {start}, 0
            while frontier and hops <= 30 and (best is None or hops <= best[0]):
                hit = sorted(targets[s] for s in frontier if s in targets and targets[s] != skip)
                if hit:
                    best = min(best or (hops, rank, hit[0]), (hops, rank, hit[0]))
                    break
                nxt = []
                for s in frontier:
                    for t in s.hypernyms() + s.instance_hypernyms():
                        if t not in seen:
                            seen.add(t)
                            nxt.append(t)
                frontier, hops = nxt, hops + 1
        return None if best is None else best[2]

    def _coarse(self, groups: dict[str, _Noun], vague: frozenset[str]) -> dict[str, _Noun]:
        targets = self._identities({k: g for k, g in groups.items() if k not in vague})
        up: dict[str, str] = {}
        for key in sorted(groups):
            # start one level above the class's own senses: a class never folds into itself
            parents = [p for s in self._senses(groups[key], common=True)
                       for p in s.hypernyms() + s.instance_hypernyms()]
            to = self._nearest(list(dict.fromkeys(parents)), targets, skip=key)
            if to is not None:
                up[key] = to
        def top(key: str) -> str:  # the most general class above it
            path = [key]
            while key in up:
                key = up[key]
                if key in path:  # classes above each other through different senses: the cycle's first name
                    return min(path[path.index(key):])
                path.append(key)
            return key

        out = {k: _Noun(forms=list(g.forms)) for k, g in groups.items() if top(k) == k}
        for key in sorted(groups):
            out[top(key)].absorb(groups[key])
        return out

    # ---------------------------------------------------------------------------------- ontology
    def _map_ontology(self, forms: dict[str, _Noun], dropped: dict[str, DroppedNoun]) -> list[VocabularyClass]:
        from ..evaluate.mappers import build_mapper
        from ..evaluate.mappers.base import normalize

        infos = ontology_classes(self.ontology or [])
        mapper = self.mapper
        if mapper is None:
            mapper = build_mapper(self.config.mapper, "folder", classes=infos, level=self.config.mapper_level)
        other = next((c.index for c in infos if normalize(c.name) == OTHER), None)
        names = [c.name for c in infos]
        if self.config.unmapped == "other" and other is None:
            other = len(names)
            names.append(OTHER)
        got = [_Noun(forms=[n]) for n in names]
        ordered = sorted(forms)
        for form, match in zip(ordered, mapper.map(ordered)):
            if match.index is not None:
                got[match.index].absorb(forms[form])
            elif self.config.unmapped == "other":
                got[other].absorb(forms[form])
            else:
                why = f"maps to no ontology class ({match.reason or match.rule or 'no relation'})"
                for raw, n in sorted(forms[form].raws.items()):
                    dropped[raw] = DroppedNoun(why, n, len(self._raws[raw].images))
        return [VocabularyClass(id=i, name=names[i], absorbed=dict(sorted(g.raws.items())), images=len(g.images),
                                instances=g.instances) for i, g in enumerate(got)]


def ontology_classes(ontology: Sequence[ClassInfo]) -> list[ClassInfo]:
    """An ontology's classes as a label mapper takes them: each indexed by its place in the list."""
    from ..evaluate.datasets import ClassInfo

    if not ontology:
        raise ConfigError("ontology: expected at least one class, got none")
    return [ClassInfo(index=i, names=c.names) for i, c in enumerate(ontology)]


def build_vocabulary(images: Iterable[tuple[str, Iterable[str]]], config: VocabularyConfig | None = None,
                     ontology: Sequence[ClassInfo] | str | Path | None = None) -> DatasetVocabulary:
    """The vocabulary of (image id, raw labels of its instances) pairs: a `VocabularyBuilder` fed them all."""
    builder = VocabularyBuilder(config, ontology)
    for image_id, labels in images:
        builder.add(image_id, labels)
    return builder.build()
