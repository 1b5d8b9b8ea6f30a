"""SAM 2 through transformers: masks for boxes (the "segment" half of tags -> boxes -> masks).

An image and all its boxes go to the model together: the Hiera image encoder (nearly all of SAM 2's
cost) runs once, and the N box prompts share its embedding in ONE mask-decoder call, as in SAM 2's own
`SAM2ImagePredictor.predict(box=(N, 4))`. On a GPU several images are encoded in one encoder call (the
processor squashes every image to the same square, so they stack with no padding); on a CPU one image per
call is faster. Decoder calls stay one per image, because transformers' `Sam2Processor` cannot pad box
lists across images ("boxes cannot be padded due to model limitations").
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from .loading import check_model_type, complete_weights, load_checkpoint, model_call, resolve_device, resolve_dtype
from .spec import TINY_MODEL, ModelSpec
from .tiny import build_tiny_sam2

DEFAULT_SAM2 = "facebook/sam2.1-hiera-large"
# Same architecture family, smaller Hiera backbones; any of them can be passed as model_id.
SAM2_CHECKPOINTS = (
    "facebook/sam2.1-hiera-tiny",
    "facebook/sam2.1-hiera-small",
    "facebook/sam2.1-hiera-base-plus",
    "facebook/sam2.1-hiera-large",
)

class BoxMasks(NamedTuple):
    """What `Sam2BoxSegmenter.segment` returns; unpacks as `masks, scores = ...`.

    masks: (N, H, W) bool, one mask per box, at the image's own size.
    scores: (N,) float32, SAM 2's predicted IoU of each mask with its object (in [0, 1]).
    """

    masks: np.ndarray
    scores: np.ndarray


class Sam2BoxSegmenter:
    """SAM 2 (transformers `Sam2Model` + `Sam2Processor`) prompted with boxes: one mask per box."""

    def __init__(self, model: Any, processor: Any, device: torch.device, dtype: torch.dtype, is_tiny: bool,
                 model_id: str, mask_threshold: float = 0.0) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.is_tiny = is_tiny
        self.model_id = model_id
        self.mask_threshold = mask_threshold  # on mask logits; 0.0 is SAM 2's own threshold
        # How many image-encoder and mask-decoder calls ran (tests and benchmarks read them).
        self.encoder_calls = 0
        self.decoder_calls = 0

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_SAM2, device: str | torch.device = "auto",
                        dtype: str | torch.dtype = "float32", cache_dir: str | None = None,
                        local_files_only: bool = False, revision: str | None = None) -> Sam2BoxSegmenter:
        """Load a SAM 2 checkpoint (hub id or local folder with config.json + weights + processor_config.json).

        "tiny-random" builds the tiny random-init twin instead (see `tiny`).
        """
        return cls.from_spec(ModelSpec(model_id, device, dtype, cache_dir, local_files_only, revision))

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Sam2BoxSegmenter:
        dev, dt = resolve_device(spec.device), resolve_dtype(spec.dtype)
        if spec.is_tiny:
            return cls.tiny(device=dev, dtype=dt)
        from transformers import Sam2Model, Sam2Processor

        check_model_type("SAM 2", spec, {"sam2", "sam2_video"}, f"a SAM 2 checkpoint such as {DEFAULT_SAM2!r}")

        def load(local_only: bool) -> tuple[Any, Any]:
            kw = spec.pretrained_kwargs(local_only)
            return (complete_weights("SAM 2", spec.id, Sam2Model.from_pretrained(spec.id, output_loading_info=True,
                                                                                  **kw)),
                    Sam2Processor.from_pretrained(spec.id, **kw))

        model, processor = load_checkpoint("SAM 2", spec, load)
        return cls(model, processor, dev, dt, is_tiny=False, model_id=spec.name)

    @classmethod
    def tiny(cls, seed: int = 0, device: str | torch.device = "cpu",
             dtype: str | torch.dtype = "float32") -> Sam2BoxSegmenter:
        """A tiny random-init SAM 2 built in code (no download): 128-px input, 32x32 mask logits.
        For tests and install checks; its masks and scores follow the image and the boxes but carry no
        meaning."""
        model, processor = build_tiny_sam2(seed)
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        return cls(model, processor, dev, resolve_dtype(dtype), is_tiny=True, model_id=TINY_MODEL)

    # ------------------------------------------------------------------------------------------ segment
    def segment(self, image: Image.Image, boxes: np.ndarray, *,
                max_boxes_per_call: int | None = None) -> BoxMasks:
        """One mask per box for one image.

        boxes: (N, 4) xyxy in pixels of `image`. The image is encoded once; all N boxes go to ONE
        mask-decoder call (single-mask output, multimask_output=False), unless `max_boxes_per_call` caps
        the decoder's batch: each box costs the decoder a copy of the image embedding and the high-res
        features (30-40 MiB per box in float32, measured on CPU), so hundreds of boxes may need chunks.
        Zero boxes: empty arrays, no model call.
        """
        return self.segment_batch([image], [boxes], max_boxes_per_call=max_boxes_per_call)[0]

    @model_call
    def segment_batch(self, images: Sequence[Image.Image], boxes: Sequence[np.ndarray], *,
                      max_boxes_per_call: int | None = None, images_per_call: int | None = None) -> list[BoxMasks]:
        """`segment` for several images: the images that have boxes through the image encoder
        `images_per_call` at a time, then each image's boxes through the decoder as `segment` sends them.
        Each result equals that image's `segment` up to float rounding (the encoder's batched kernels may
        round differently). images_per_call None: one at a time on a CPU, all at once elsewhere (on a CPU,
        Hiera-L took 1.18x as long for 4 images in one call as in four, with 7x the working memory); the
        encoder's memory grows with it. An encoder call of several images that fails (out of memory) is
        retried one image per call, once the failed call's memory is released.
        """
        if len(images) != len(boxes):
            raise ValueError(f"expected one box array per image, got {len(boxes)} for {len(images)} images")
        images = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        checked = [_checked_boxes(b) for b in boxes]
        out: list[BoxMasks | None] = [None] * len(images)
        todo = []
        for i, (image, b) in enumerate(zip(images, checked)):
            if len(b):
                todo.append(i)
            else:
                out[i] = BoxMasks(np.zeros((0, image.height, image.width), dtype=bool), np.zeros(0, dtype=np.float32))
        step = images_per_call or (1 if self.device.type == "cpu" else max(len(todo), 1))
        parts = [todo[start:start + step] for start in range(0, len(todo), step)]
        while parts:
            part = parts.pop(0)
            try:
                embeddings = self._encode([images[i] for i in part])
            except Exception:
                if len(part) == 1:
                    raise
                failed = True  # a call of several images (out of memory): once it is released, one by one
            else:
                failed = False
            if failed:
                parts[:0] = [[i] for i in part]
                continue
            for row, i in enumerate(part):
                own = [e[row:row + 1] for e in embeddings]
                out[i] = self._decode(own, images[i], checked[i], max_boxes_per_call)
            del embeddings
        return out  # type: ignore[return-value]

    def _encode(self, images: list[Image.Image]) -> list[torch.Tensor]:
        # The processor squashes each image to its square input (1024 px for the checkpoints; SAM 2 does not
        # pad), so the images stack as they are; each image's box coordinates are scaled by its own factors,
        # from its own size.
        pixels = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        embeddings = self.model.get_image_embeddings(pixels.to(self.device, self.dtype))
        self.encoder_calls += 1
        return embeddings

    def _decode(self, embeddings: list[torch.Tensor], image: Image.Image, boxes: np.ndarray,
                max_boxes_per_call: int | None) -> BoxMasks:
        h, w = image.height, image.width
        # Prompts only: the input is [image][box][x1 y1 x2 y2], scaled from (h, w) to the square input.
        input_boxes = self.processor(input_boxes=boxes[None], original_sizes=[[h, w]],
                                     return_tensors="pt")["input_boxes"].to(self.device)
        step = len(boxes) if not max_boxes_per_call else max(1, int(max_boxes_per_call))
        masks, scores = [], []
        for start in range(0, len(boxes), step):
            out = self.model(image_embeddings=embeddings, input_boxes=input_boxes[:, start:start + step],
                             multimask_output=False)
            self.decoder_calls += 1
            # pred_masks: (1, n, 1, 4 * embedding side, same) logits over the squashed square image;
            # bilinear upsampling straight to (h, w) undoes the squash (the processor's post-processing).
            full = self.processor.post_process_masks(out.pred_masks.float(), [[h, w]],
                                                     mask_threshold=self.mask_threshold, binarize=True)[0]
            masks.append(full[:, 0].cpu().numpy())
            scores.append(out.iou_scores[0, :, 0].float().cpu().numpy())
        return BoxMasks(np.concatenate(masks).astype(bool, copy=False),
                        np.concatenate(scores).astype(np.float32, copy=False))


def _checked_boxes(boxes: Any) -> np.ndarray:
    """(N, 4) float32 xyxy boxes, or a ValueError naming what is wrong; no boxes: a (0, 4) array."""
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes: expected an (N, 4) xyxy array, got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes: every coordinate must be finite")
    return boxes
