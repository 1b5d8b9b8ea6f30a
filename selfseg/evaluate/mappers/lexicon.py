"""A dataset's lexicon: what its generic words mean in its scenes, which parts belong to which class, what it
leaves out of its classes, and which roles turn one class into another. Shipped beside the class list as
`<classes>.lexicon.yaml`.

```yaml
classes:
  traffic light:                  # a class's first name in the class list
    names: [light, signal]        # words that name this class in the dataset's scenes (synonym level); not
                                  # names the class list already gives any class
    parts: [lamp, lens]           # a part attached to this class ("the X of / on / in / at a <class>", or
                                  # "<class> X") is this class; for a noun that names no class itself, an
                                  # entry also covers its WordNet kinds ("garment": shirt, jacket, ...)
    why: "the dataset's own class definition that justifies the entries"
none:                             # what the dataset names but leaves out of its classes (maps to none)
  names: [guard rail, bridge]
  why: "..."
rare:                             # names the class list gives a class only in a rare WordNet sense (a synset's
  names: [throne]                 # lemma whose common sense is another thing): read by their own senses
  why: "..."
roles:
  - class: rider                  # a member of `members` ...
    members: person
    verbs: [ride, sit]            # ... the object of one of these verbs (base forms) ...
    preps: ["on", astride]        # ... or attached by one of these prepositions (quote on, yes, no, off) ...
    vehicles: [bicycle, horse]    # ... to a phrase of one of these classes (or words) becomes `class`
    why: "..."
```
Every entry carries a `why`: a dataset class definition or a WordNet relation, so a reviewer can check it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import DatasetError, text_error
from ..datasets import ClassInfo
from .base import normalize


@dataclass(frozen=True)
class Role:
    cls: int
    members: int
    verbs: frozenset[str]
    preps: frozenset[str]
    vehicles: frozenset[int]
    vehicle_words: frozenset[str]


@dataclass
class Lexicon:
    """names: word -> class index. parts: class index -> part words. unlabelled: words that name a region
    the dataset leaves out of its classes. rare: the class list's names that are read by their own WordNet
    senses, not as the class that lists them. roles: in file order."""


    names: dict[str, int] = field(default_factory=dict)
    unlabelled: frozenset[str] = frozenset()
    rare: frozenset[str] = frozenset()
    parts: dict[int, frozenset[str]] = field(default_factory=dict)
    roles: list[Role] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path, classes: Sequence[ClassInfo], strict: bool = True) -> Lexicon:
        """Read a lexicon file. strict: a class name the list lacks is an error (the shipped lexicon of a
        shipped class list); otherwise such entries are skipped (the same lexicon over a user's classes)."""
        import yaml

        path = Path(path)
        from ...io import read_text

        try:
            data = yaml.safe_load(read_text(path, "lexicon")) or {}
        except yaml.YAMLError as exc:
            raise DatasetError(f"lexicon {path}: cannot read it ({text_error(exc)})") from None
        if not isinstance(data, dict) or set(data) - {"classes", "none", "rare", "roles"}:
            raise DatasetError(f"lexicon {path}: expected a mapping with 'classes', 'none', 'rare' and 'roles', "
                               f"got {_keys(data)}")
        index = {normalize(c.name): c.index for c in classes}
        listed: dict[str, int] = {}
        for c in classes:
            for n in c.names:
                listed.setdefault(normalize(n), c.index)
        lex = cls()

        def find(name: Any, where: str) -> int | None:
            i = index.get(normalize(str(name)))
            if i is None and strict:
                raise DatasetError(f"lexicon {path}: {where}: expected a class of the list, got {name!r}")
            return i

        entries = data.get("classes") or {}
        if not isinstance(entries, dict):
            raise DatasetError(f"lexicon {path}: classes: expected a mapping of class name -> entry, got "
                               f"{type(entries).__name__}")
        for name, entry in entries.items():
            if not isinstance(entry, dict) or not entry.get("why") or set(entry) - {"names", "parts", "why"}:
                raise DatasetError(f"lexicon {path}: class {name!r}: expected names / parts lists and a 'why', "
                                   f"got {_keys(entry)}")
            i = find(name, "classes")
            if i is None:
                continue
            for key in sorted(_words(entry.get("names") or [], f"{name}.names", path)):
                other = listed.get(key)
                if other is not None:  # the class list's own names are not overridden, nor repeated
                    raise DatasetError(f"lexicon {path}: {name}.names: {key!r} is a name of class "
                                       f"{classes[other].name!r} in the class list already; expected a word the "
                                       "class list does not have")
                if key in lex.names and lex.names[key] != i:
                    raise DatasetError(f"lexicon {path}: name {key!r}: expected one class, got two "
                                       f"({classes[lex.names[key]].name!r} and {name!r})")
                lex.names[key] = i
            if entry.get("parts"):
                lex.parts[i] = _words(entry["parts"], f"{name}.parts", path)
        none = data.get("none") or {"names": [], "why": "-"}
        if not isinstance(none, dict) or set(none) != {"names", "why"} or not none["why"]:
            raise DatasetError(f"lexicon {path}: none: expected a names list and a 'why', got {_keys(none)}")
        lex.unlabelled = _words(none["names"] or [], "none.names", path)
        clash = sorted(lex.unlabelled & (set(lex.names) | set(listed)))
        if clash:
            raise DatasetError(f"lexicon {path}: none: expected names no class has, got {clash[0]!r}")
        rare = data.get("rare") or {"names": [], "why": "-"}
        if not isinstance(rare, dict) or set(rare) != {"names", "why"} or not isinstance(rare["why"], str) \
                or not rare["why"]:
            raise DatasetError(f"lexicon {path}: rare: expected a names list and a 'why', got {_keys(rare)}")
        lex.rare = _words(rare["names"] or [], "rare.names", path)
        primary = set(index)
        odd = sorted(w for w in lex.rare if w not in listed or w in primary) if strict else []
        if odd:
            raise DatasetError(f"lexicon {path}: rare: expected names the class list gives a class (not its first "
                               f"name), got {odd[0]!r}")
        roles = data.get("roles") or []
        if not isinstance(roles, list):
            raise DatasetError(f"lexicon {path}: roles: expected a list of roles, got {type(roles).__name__}")
        for k, role in enumerate(roles):
            need = {"class", "members", "verbs", "preps", "vehicles", "why"}
            if not isinstance(role, dict) or set(role) != need or not role["why"]:
                raise DatasetError(f"lexicon {path}: roles[{k}]: expected keys {sorted(need)}, got {_keys(role)}")
            target, members = find(role["class"], f"roles[{k}].class"), find(role["members"], f"roles[{k}].members")
            if target is None or members is None:
                continue
            vehicles = [(w, index.get(w)) for w in sorted(_words(role["vehicles"], f"roles[{k}].vehicles", path))]
            lex.roles.append(Role(cls=target, members=members,
                                  verbs=_words(role["verbs"], f"roles[{k}].verbs", path),
                                  preps=_words(role["preps"], f"roles[{k}].preps", path),
                                  vehicles=frozenset(i for _, i in vehicles if i is not None),
                                  vehicle_words=frozenset(w for w, i in vehicles if i is None)))
        return lex


def _words(value: Any, where: str, path: Path) -> frozenset[str]:
    """A list of words; a non-string (YAML reads a bare on / yes / no as a boolean) is an error."""
    if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
        raise DatasetError(f"lexicon {path}: {where}: expected a list of words (quote on, yes, no), got {value!r}")
    return frozenset(normalize(w) for w in value)


def _keys(value: Any) -> str:
    return f"keys {sorted(map(str, value))}" if isinstance(value, dict) else type(value).__name__


def shipped_lexicon(class_file: str) -> Path | None:
    """The lexicon shipped beside a class list, if there is one."""
    if not class_file:
        return None
    path = Path(__file__).parent.parent / "classes" / (Path(class_file).stem + ".lexicon.yaml")
    return path if path.is_file() else None
