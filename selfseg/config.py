"""Typed configuration: YAML files -> nested dataclasses, with `key.sub=value` overrides.

Every number of the algorithm is a field of some section; defaults are the Self-Seg paper's values (Sect.
4.1). Each component's section is defined where the component is registered; the sections of the pipeline
itself (run, segment, evaluation) are defined here, and this module assembles them all into one layout.
A YAML file may name a `base:` file (relative to itself) and override a few fields, so each benchmark
config reads as "the paper's settings, except ...". Input paths a file sets (dataset root, class list,
caches) are relative to that file too; `key=value` overrides and dicts are relative to the working directory.
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from .errors import ConfigError, check, choices, text_error

# The components' sections, re-exported for config users (the shared model section is the model specs').
from .evaluate.datasets import DatasetConfig as DatasetConfig
from .evaluate.mappers.embedding import EmbeddingMapperConfig as EmbeddingMapperConfig
from .evaluate.mappers.hybrid import HybridMapperConfig as HybridMapperConfig
from .evaluate.mappers.lexical import LexicalMapperConfig as LexicalMapperConfig
from .evaluate.mappers.llm import LlmMapperConfig as LlmMapperConfig
from .io import atomic_write
from .label.export import ExportConfig as ExportConfig
from .label.vocabulary import VocabularyConfig as VocabularyConfig
from .models.spec import DTYPE_NAMES as DTYPE_NAMES
from .models.spec import PAPER_MODEL as PAPER_MODEL
from .models.spec import TINY_MODEL as TINY_MODEL
from .models.spec import CaptionSampling as CaptionSampling
from .models.spec import ModelConfig as ModelConfig
from .segment.clipseg import ClipSegConfig as ClipSegConfig
from .segment.grounded_sam2 import GroundedSam2Config as GroundedSam2Config
from .tag.caption import CAPTION_PROFILES as CAPTION_PROFILES
from .tag.caption import CaptioningConfig as CaptioningConfig
from .tag.clustering.config import ClusteringConfig as ClusteringConfig
from .tag.nouns import NounsConfig as NounsConfig
from .tag.vlm import VlmConfig as VlmConfig

#: Where the class names come from (segment.vocabulary) and how prompts are enriched (segment.enrich).
VOCABULARY_MODES = ("self", "given", "union")
ENRICH_MODES = ("none", "generic", "image")


@dataclass
class RunConfig:
    # Images per batch: BLIP's and CLIPSeg's encoder forwards (SAM 2's on a GPU) and the caption generate call
    # cover the whole batch, so memory grows with it.
    batch_size: int = 4
    # Longest image side kept after loading; larger images are reduced while decoding (JPEG draft)
    # so an 8000x6000 photo costs about as much memory as a small one. A result's masks and boxes are at
    # that reduced `image_size`; its label PNG, `to_coco()` and `to_supervision()` are at the photo's
    # (`original_size`), and `at_original_size()` gives the whole result there.
    max_image_side: int = 1024

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        check(self.max_image_side >= 16, "max_image_side", "an integer >= 16", self.max_image_side)


@dataclass
class SegmentConfig:
    # Segmenter from the registry: "grounded_sam2", "clipseg" or "bcc_clusters".
    segmenter: str = "grounded_sam2"
    # Where the class names come from: "self" (the tagger), "given" (the `vocabulary` list, no tagger run)
    # or "union" (both).
    vocabulary: str = "self"
    # Tag clean-up before locating: fold WordNet synonyms together (the user's own words are never dropped; a
    # found synonym is folded into them). The result lists every merge.
    merge_synonyms: bool = True
    # Tag clean-up: drop a tag when a more specific one is present (animal / dog keeps dog).
    merge_hypernyms: bool = True
    # Prompt enrichment (grounded_sam2, clipseg): "none"; "generic" (vlm.llm writes a short visual
    # description per tag, once per tag for all images); "image" (the VLM sees the image and describes
    # each tag as it looks there, OpenSeg-R style). The segmenter is prompted with "tag, description";
    # every label stays the plain tag.
    enrich: str = "none"
    # Longest description asked for, in words.
    enrich_max_words: int = 12
    # Longest enrichment reply, in tokens ("image" describes every tag of an image in one reply).
    enrich_max_new_tokens: int = 1024
    # Template; None: the built-in one. generic: {tag} and {max_words}; image: {tags} and {max_words}.
    enrich_prompt: str | None = None
    grounded_sam2: GroundedSam2Config = field(default_factory=GroundedSam2Config)
    clipseg: ClipSegConfig = field(default_factory=ClipSegConfig)

    def __post_init__(self) -> None:
        check(self.vocabulary in VOCABULARY_MODES, "vocabulary", choices(VOCABULARY_MODES), self.vocabulary)
        check(self.enrich in ENRICH_MODES, "enrich", choices(ENRICH_MODES), self.enrich)
        check(self.enrich_max_words >= 1 and self.enrich_max_new_tokens >= 1,
              "enrich_max_words / enrich_max_new_tokens", "integers >= 1",
              (self.enrich_max_words, self.enrich_max_new_tokens))


@dataclass(kw_only=True)
class EvaluationConfig(HybridMapperConfig, EmbeddingMapperConfig, LlmMapperConfig, LexicalMapperConfig, DatasetConfig):
    """The `evaluation` section: the dataset's and every label mapper's settings side by side, and the
    benchmark's own."""

    # Free-form description -> dataset class: "lexical" (reads the description: WordNet levels of the open-ended
    # benchmarking protocol plus the dataset's lexicon; offline), "llm" (LOVE, the Self-Seg paper), "embedding"
    # (sentence-transformers cosine) or "hybrid" (lexical, then embedding where nothing relates).
    mapper: str = "lexical"
    # mIoU convention: "mmseg" (predicted-but-absent classes count IoU 0, as mmsegmentation and Self-Seg's
    # released evaluator compute it) or "detectron2" (classes absent from the ground truth are left out, as
    # detectron2's current evaluator).
    miou_convention: str = "mmseg"
    # cmIoU segments: "class" (all pixels of one label in an image) or "components" (8-connected pieces).
    cmiou_segments: str = "class"
    # Output folder of `selfseg benchmark` ("{name}" is replaced by the config's name).
    out: str = "runs/{name}"
    # Evaluate only the first N images of the split (0: all).
    limit: int = 0
    # What to score the predictions as: "semantic" (mIoU, cmIoU; always scored), "panoptic" (PQ / SQ / RQ) and
    # "instance" (mask and box AP, COCOeval); the last two need the dataset's panoptic / instance ground truth
    # (ade20k, cityscapes, coco).
    tasks: list[str] = field(default_factory=lambda: ["semantic"])

    def __post_init__(self) -> None:
        from .evaluate.mappers import METHODS
        from .evaluate.metrics import CMIOU_SEGMENTS, CONVENTIONS

        check(self.mapper in METHODS, "mapper", choices(METHODS), self.mapper)
        for block in reversed(type(self).__mro__[1:]):  # every block this section is made of checks itself
            if "__post_init__" in block.__dict__:
                block.__post_init__(self)
        check(self.miou_convention in CONVENTIONS, "miou_convention", choices(CONVENTIONS), self.miou_convention)
        check(self.cmiou_segments in CMIOU_SEGMENTS, "cmiou_segments", choices(CMIOU_SEGMENTS), self.cmiou_segments)
        check(self.limit >= 0, "limit", "an integer >= 0 (0: all)", self.limit)
        from .evaluate.annotations import TASKS

        check(isinstance(self.tasks, list) and bool(self.tasks) and all(t in TASKS for t in self.tasks)
              and len(set(self.tasks)) == len(self.tasks), "tasks", f"a list of distinct tasks from {choices(TASKS)}",
              self.tasks)


@dataclass
class LabelConfig(ExportConfig, VocabularyConfig):
    """The `label` section (`selfseg label`): how the nouns of a folder of images become one class list
    (VocabularyConfig) and how the segmentations become a training dataset (ExportConfig)."""

    def __post_init__(self) -> None:
        ExportConfig.__post_init__(self)
        VocabularyConfig.__post_init__(self)


@dataclass
class Config:
    # Free-form name, echoed in results.
    name: str = "bcc"
    # Tagger from the registry: "bcc" (BLIP-Cluster-Caption), "caption" (nouns of whole-image BLIP
    # captions, the paper's baseline), "vlm" (a vision-language model lists the tags), "describe_extract"
    # (the VLM describes, an LLM extracts the tags), "vocabulary" (the user's own words) or "union".
    tagger: str = "bcc"
    # Words for the "vocabulary" tagger.
    vocabulary: list[str] = field(default_factory=list)
    # Taggers the "union" tagger runs on every batch; each tag records which of them found it.
    union: list[str] = field(default_factory=lambda: ["bcc", "vlm"])
    model: ModelConfig = field(default_factory=ModelConfig)
    vlm: VlmConfig = field(default_factory=VlmConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    captioning: CaptioningConfig = field(default_factory=CaptioningConfig)
    nouns: NounsConfig = field(default_factory=NounsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    label: LabelConfig = field(default_factory=LabelConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        """Every check: each section's own (again, so a config changed after loading is checked as it is now),
        then across sections. Names come from the registries: the tagger, the union's taggers and the
        segmenter must be registered, and every component's block is assembled once, so blocks made of
        several sections check themselves too."""
        from .segment import segmenters
        from .tag import taggers

        _check_blocks(self, "")
        for registry, chosen in ((taggers(), [self.tagger, *self.union]), (segmenters(), [self.segment.segmenter])):
            for name in chosen:
                registry.component(name)
            for name in registry.names():
                registry.component(name).block(self)
        sg = self.segment
        check(sg.vocabulary != "given" or any(w.strip() for w in self.vocabulary), "vocabulary",
              "a non-empty list when segment.vocabulary is 'given'", self.vocabulary)
        prompted = [n for n in segmenters().names() if segmenters().component(n).takes_prompts]
        check(sg.enrich == "none" or sg.segmenter in prompted, "segment.enrich",
              f"'none' with segmenter {sg.segmenter!r} (segmenters that take phrases: {', '.join(prompted)})",
              sg.enrich)
        return self


def _check_blocks(block: Any, prefix: str) -> None:
    """Check the types of `block`'s fields and run its `__post_init__` checks, and those of every block
    inside it, naming each block's place."""
    hints = typing.get_type_hints(type(block))
    for f in dataclasses.fields(block):
        value = getattr(block, f.name)
        if dataclasses.is_dataclass(value):
            _check_blocks(value, f"{prefix}{f.name}.")
        else:
            _coerce(hints[f.name], value, prefix + f.name)  # a value set after loading may have any type
    post_init = getattr(block, "__post_init__", None)
    if post_init is not None:
        try:
            post_init()
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc}") from None


def checkpoints(config: Config, *, tag: bool = True, segment: bool = False, evaluate: bool = False,
                label: bool = False) -> list[str]:
    """The checkpoint ids a run of `config` loads, each once, as the components declare them: the tagger's
    (its parts' included); with `segment`, the segmenter's and prompt enrichment's; with `evaluate`, the
    benchmark's label mapper's (`evaluation.mapper`); with `label`, `selfseg label`'s (`label.mapper`, whose
    model settings are the evaluation section's too). Tiny models built in code are listed too (as TINY_MODEL)."""
    from .evaluate.mappers import mappers
    from .segment import segmenters
    from .segment.enrich import enrich_checkpoints
    from .tag import taggers

    ids: list[str] = []
    if tag:
        ids += taggers().component(config.tagger).checkpoint_ids(config, taggers())
    if segment:
        ids += segmenters().component(config.segment.segmenter).checkpoint_ids(config, segmenters())
        ids += enrich_checkpoints(config.segment, config.vlm)
    if evaluate:
        ids += mappers().component(config.evaluation.mapper).checkpoint_ids(config, mappers())
    if label:
        ids += mappers().component(config.label.mapper).checkpoint_ids(config, mappers())
    return list(dict.fromkeys(ids))


def uses_tiny(config: Config, *, segment: bool = False) -> bool:
    """True when a tag (or, with `segment`, a segment) run of `config` loads a tiny random-init model: its
    outputs are meaningless."""
    tag = not (segment and config.segment.vocabulary == "given")
    return TINY_MODEL in checkpoints(config, tag=tag, segment=segment)


# ---------------------------------------------------------------------------------------------- loading


def load_config(source: str | Path | dict | Config | None = None, overrides: list[str] | None = None) -> Config:
    """Build a validated `Config` from a YAML path, a dict or nothing (defaults), then apply overrides.

    `overrides` are strings "section.field=value"; the value is parsed as YAML ("[384, 512]", "true", "3").
    They are applied before the sections are built, so every section validates the values it ends up with.
    """
    if isinstance(source, Config):
        data = dataclasses.asdict(source)
    elif source is None:
        data = {}
    elif isinstance(source, dict):
        data = source
    else:
        data = _read_yaml_with_base(resolve_config(source), seen=())
    for item in overrides or []:
        data = _apply_override(data, item)
    return _build(Config, data, prefix="").validate()


def declared_sections(source: str | Path | None) -> set[str]:
    """The top-level keys a config file (with its `base:` chain) sets itself; empty for the defaults."""
    return set(_read_yaml_with_base(resolve_config(source), seen=())) if source is not None else set()


def _named_configs() -> Path:
    """Where the named configs are: configs/ beside the package in a checkout or an editable install, or the
    copy a wheel ships inside the package (setup.py maps one onto the other)."""
    here = Path(__file__).resolve().parent
    shipped = here / "configs"
    return shipped if shipped.is_dir() else here.parent / "configs"


def benchmark_configs() -> list[str]:
    """The names of selfseg's own benchmark configs, as `selfseg benchmark` takes them (benchmarks/voc)."""
    return sorted(f"benchmarks/{p.stem}" for p in (_named_configs() / "benchmarks").glob("*.yaml"))


def resolve_config(source: str | os.PathLike) -> Path:
    """A config file's path from a path, or from a name found as configs/<name>.yaml under the working
    directory, then among selfseg's own configs, so `smoke` and `configs/bcc_voc.yaml` (as the README writes
    it) work from any folder and from a wheel install."""
    name = os.path.expanduser(os.fspath(source))  # "--config=~/x.yaml": the shell leaves that ~ alone
    # A folder is never a config: one named like a config (an earlier `--out smoke`) must not hide it.
    if Path(name).is_file() or Path(name).is_absolute() or name.startswith("."):
        return Path(name)  # _read_yaml_with_base says what is wrong with a path
    relative = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    inside = relative[len("configs/"):] if relative.startswith("configs/") else relative
    named = _named_configs()
    for found in (Path("configs") / inside, named / inside):
        if found.is_file():
            return found
    looked = f"./configs/{inside}" + (f" or {named / inside}" if named.is_dir() else "")
    raise ConfigError(f"config {name}: {'a folder, not a file' if Path(name).is_dir() else 'no such file'}, "
                      f"nor {looked}")


def _read_yaml_with_base(path: Path, seen: tuple) -> dict:
    if path in seen:
        raise ConfigError(f"config {path}: 'base' chain loops back to itself")
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "not a regular file" if path.exists() else "no such file"
        raise ConfigError(f"config {path}: {what}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read it ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: not valid YAML ({text_error(exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping at the top level, got {type(data).__name__}")
    base = data.pop("base", None)
    data = _anchor_paths(data, path.parent)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"config {path}: 'base' expected a file name, got {base!r}")
    parent = _read_yaml_with_base((path.parent / base).resolve(), seen + (path,))
    return _deep_merge(parent, data)


#: Fields naming a file or folder the run reads. A relative value set in a config file is relative to that
#: file's folder, so a config works from any working directory. Output folders (evaluation.out) are not here:
#: like --out, they stay relative to the working directory.
PATH_FIELDS = ("model.cache_dir", "vlm.cache", "evaluation.root", "evaluation.classes", "evaluation.llm_cache")
#: Fields holding a Hugging Face id or a local checkpoint folder. "org/name" is an id, so only a value that
#: starts with "./", "../" or "~" is taken for a path (and anchored like PATH_FIELDS).
CHECKPOINT_FIELDS = ("model.blip", "segment.grounded_sam2.detector", "segment.grounded_sam2.sam",
                     "segment.clipseg.model", "vlm.model", "vlm.llm", "evaluation.llm_model",
                     "evaluation.embedding_model")


def _anchor_paths(data: dict, folder: Path) -> dict:
    """`data` (one YAML file's mapping) with its relative path values joined to `folder` and `~` expanded.
    Anything else (null, a wrong type, a missing section) is left for validation to report."""
    out = dict(data)
    for key in PATH_FIELDS + CHECKPOINT_FIELDS:
        *sections, name = key.split(".")
        node = out
        for sec in sections:
            if not isinstance(node.get(sec), dict):
                break
            node[sec] = dict(node[sec])  # copied on the way down: the caller's mapping stays as it was
            node = node[sec]
        else:
            value = node.get(name)
            if not isinstance(value, str) or not value.strip():
                continue
            if key in CHECKPOINT_FIELDS and not value.startswith(("./", "../", "~")):
                continue
            p = Path(os.path.expanduser(value))  # unlike Path.expanduser, never raises for "~nobody"
            node[name] = str(p if p.is_absolute() else (folder / p).resolve())
    return out


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}' at {where}; valid keys: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], prefix + name)
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a section's own check names its field; say where the section is
        raise ConfigError(f"{prefix}{exc}") from None


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {tp}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer literal past float's range
            number = math.inf
        if not math.isfinite(number):  # .nan passes every range check, then silently changes results
            raise ConfigError(f"{key}: expected a finite number, got {str(value)[:40]}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {tp}")  # pragma: no cover - a bug in this file


def _apply_override(data: dict, item: str) -> dict:
    """`data` (a config file's mapping) with one "key.sub=value" override applied; the key is checked against
    the sections' fields, and a value for a text field stays the text given ("model.blip=123")."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.sub=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    out = dict(data)
    node, cls = out, Config
    for depth, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            where = ".".join(parts[:depth]) or "top level"
            raise ConfigError(f"unknown config key {key!r} ({part!r} at {where}); valid keys: {', '.join(names)}")
        tp = typing.get_type_hints(cls)[part]
        if depth == len(parts) - 1:
            if tp in (str, str | None) and not isinstance(value, str) and not (value is None and tp is not str):
                value = raw.strip()  # "model.blip=123", "captioning.prompt=a photo of: x" stay strings
            if dataclasses.is_dataclass(tp) and isinstance(value, dict) and isinstance(node.get(part), dict):
                # A section given as a mapping sets the fields it names, as a file's own section does over its
                # base: the rest keep the file's values (a tiny detector is not swapped for the default).
                value = _deep_merge(node[part], value)
            node[part] = value
            return out
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        child = node.get(part)
        if child is not None and not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[:depth + 1])}: expected a mapping, got {child!r}")
        node[part] = dict(child or {})  # copied: the caller's mapping stays as it was
        node, cls = node[part], tp
    return out


def override_fields(item: str) -> dict[str, Any]:
    """The fields one "key.sub=value" override sets, by dotted key, each with the value it gets: one field,
    or every field of a section given as a mapping ("segment.grounded_sam2={box_threshold: 0.3}")."""
    section_names = {name for name, _ in sections()}
    found: dict[str, Any] = {}

    def walk(node: dict, prefix: str) -> None:
        for name, value in node.items():
            key = prefix + name
            if isinstance(value, dict) and key in section_names:
                walk(value, key + ".")
            else:
                found[key] = value

    walk(_apply_override({}, item), "")
    return found


def check_overrides_agree(given: list[tuple[str, str]]) -> None:
    """Refuse two overrides that give one field different values, in one line naming both as they were
    spelled (`given`: (spelling, "key=value") pairs). Applied in turn, the later one would win without a
    word, and which spelling a command applies later is nothing its user can see. The same value twice is
    no conflict."""
    seen: dict[str, tuple[str, Any]] = {}
    for spelling, item in given:
        for key, value in override_fields(item).items():
            if key in seen and seen[key][1] != value:
                raise ConfigError(f"{key} is given two values: `{seen[key][0]}` and `{spelling}`; give it once")
            seen.setdefault(key, (spelling, value))


# ---------------------------------------------------------------------------------------------- reference


def field_notes(cls: type) -> dict[str, str]:
    """Each field of a config block with the `#` comment lines right above it, joined: the one text that
    documents a setting, read by the README's table. A block made of other blocks (dataclass bases) has their
    fields' notes too."""
    import inspect

    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        lines: list[str] = []
        for line in inspect.getsource(klass).splitlines()[1:]:
            text = line.strip()
            name = text.split(":")[0]
            if line.startswith("    #"):
                lines.append(text[1:].strip())
            elif line.startswith("    ") and not line.startswith("     ") and ":" in text and name.isidentifier():
                notes[name] = " ".join(lines)
                lines = []
            elif not line.startswith("     "):
                lines = []  # a docstring, a method or a blank line: a comment above it documents no field
    return notes


def sections(cls: type | None = None, prefix: str = "") -> list[tuple[str, type]]:
    """(dotted section name, block dataclass) of every section of the file layout, the top level as ""."""
    cls = cls or Config
    out = [(prefix.rstrip("."), cls)]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += sections(hints[f.name], prefix + f.name + ".")
    return out


def _default_text(cls: type, f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if isinstance(value, list) and len(value) > 8:
        return f"{len(value)} words (see {cls.__module__.replace('.', '/')}.py)"
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _named_fields() -> dict[str, list[str]]:
    """Fields whose value names a registered component or a fixed choice -> the valid names, from the
    registries and the modules that own the choices (so the table can never miss a new component)."""
    from .evaluate.annotations import TASKS
    from .evaluate.datasets import dataset_names
    from .evaluate.mappers import METHODS
    from .evaluate.mappers.lexical import LEVELS
    from .evaluate.metrics import CMIOU_SEGMENTS, CONVENTIONS
    from .label.export import FORMATS as EXPORT_FORMATS
    from .label.export import IMAGE_MODES, NMS_MODES
    from .label.vocabulary import RARE_RULES, UNMAPPED_RULES
    from .segment import segmenters
    from .tag import taggers
    from .tag.caption import ATTENTION_MODES, TOKEN_SLICES
    from .tag.clustering.config import ALIGN_COSTS, CONSENSUS_METHODS
    from .tag.vlm import VLM_DTYPES

    return {"tagger": taggers().names(), "union": [n for n in taggers().names() if n != "union"],
            "segment.segmenter": segmenters().names(), "segment.vocabulary": list(VOCABULARY_MODES),
            "segment.enrich": list(ENRICH_MODES), "evaluation.dataset": dataset_names(),
            "evaluation.mapper": list(METHODS), "evaluation.lexical_level": list(LEVELS),
            "evaluation.tasks": list(TASKS), "label.formats": list(EXPORT_FORMATS), "label.images": list(IMAGE_MODES),
            "label.nms": list(NMS_MODES), "label.rare": list(RARE_RULES), "label.unmapped": list(UNMAPPED_RULES),
            "label.mapper": list(METHODS), "label.mapper_level": list(LEVELS),
            "evaluation.miou_convention": list(CONVENTIONS), "evaluation.cmiou_segments": list(CMIOU_SEGMENTS),
            "model.dtype": list(DTYPE_NAMES), "vlm.dtype": list(VLM_DTYPES), "clustering.align_cost": list(ALIGN_COSTS),
            "clustering.consensus": list(CONSENSUS_METHODS),
            "captioning.profile": list(CAPTION_PROFILES), "captioning.token_slice": list(TOKEN_SLICES),
            "captioning.attention": list(ATTENTION_MODES)}


def config_table() -> str:
    """The README's reference of every config field (markdown), generated from the blocks' dataclasses and
    their comments, then which module defines each section and which components read it."""
    from .evaluate.datasets import datasets
    from .evaluate.mappers import mappers
    from .locate import locators
    from .segment import mask_models, segmenters
    from .tag import taggers

    named = _named_fields()
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for name, cls in sections():
        notes, hints = field_notes(cls), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                continue
            key = f"{name}.{f.name}" if name else f.name
            note = notes.get(f.name, "").replace("|", "/")
            if key in named:
                note += f" Valid: {', '.join(named[key])}."
            rows.append(f"| `{key}` | `{_default_text(cls, f)}` | {note} |")
    readers: dict[str, list[str]] = {}
    for registry in (taggers(), locators(), segmenters(), mask_models(), mappers(), datasets()):
        for comp_name in registry.names():
            comp = registry.component(comp_name)
            places = [comp.section] if comp.section else [f.name for f in dataclasses.fields(comp.config)] \
                if comp.config else []
            for place in places:
                readers.setdefault(place, []).append(f"{registry.kind} {comp_name}")
    # Readers that are not registered components.
    for place, who in (("model", "every component (the shared model section)"), ("run", "the pipeline"),
                       ("segment", "the pipeline"), ("segment", "prompt enrichment"), ("vlm", "prompt enrichment"),
                       ("evaluation", "`selfseg benchmark`"), ("label", "`selfseg label`")):
        readers.setdefault(place, []).append(who)
    rows += ["", "| section | defined in | read by |", "|---|---|---|"]
    for name, cls in sections():
        if name:
            who = ", ".join(readers.get(name, []))
            # the modules that declare the section's fields (a composed block's bases)
            where = dict.fromkeys(k.__module__.replace(".", "/") + ".py" for k in reversed(cls.__mro__)
                                  if dataclasses.is_dataclass(k) and k.__dict__.get("__annotations__"))
            rows.append(f"| `{name}` | {', '.join(f'`{w}`' for w in where)} | {who} |")
    return "\n".join(rows) + "\n"


README_MARKERS = ("<!-- config table: generated by `python -m selfseg.config README.md` -->",
                  "<!-- end of config table -->")


def write_readme_table(path: str | Path, check: bool = False) -> bool:
    """Replace the README's config table (between README_MARKERS) with `config_table()`; True if it changed
    (with `check`, whether it would, writing nothing)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise ConfigError(f"{p}: expected the markers {start!r} and {end!r} around the config table")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}\n{config_table()}{end}{tail}"
    if new != text and not check:
        atomic_write(p, lambda f: f.write(new.encode("utf-8")))
    return new != text


if __name__ == "__main__":  # python -m selfseg.config [--check] README.md
    import argparse
    import sys

    # Through the package's module, not this __main__ copy, so the table names the real modules.
    from selfseg.config import write_readme_table as write

    parser = argparse.ArgumentParser(prog="python -m selfseg.config",
                                     description="Write the config table (every field, its default and meaning) "
                                                 "into Markdown files between their table markers.")
    parser.add_argument("files", nargs="+", help="Markdown files holding the markers (README.md)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is out of date")
    args = parser.parse_args()
    stale = []
    for arg in args.files:
        try:
            changed = write(arg, check=args.check)
        except OSError as exc:
            sys.exit(f"{arg}: {exc.strerror or exc}")
        except ConfigError as exc:  # its message names the file
            sys.exit(str(exc))
        print(f"{arg}: {('out of date' if args.check else 'updated') if changed else 'already up to date'}")
        stale += [arg] if changed else []
    sys.exit(1 if args.check and stale else 0)
