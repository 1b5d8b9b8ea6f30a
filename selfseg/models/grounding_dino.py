"""Grounding DINO through transformers: loading, image preprocessing, and one batched forward over token rows.

`GroundingDino` wraps a `GroundingDinoForObjectDetection` and its processor. It takes prompts as token id rows
already built by the caller (selfseg/locate/grounding_dino.py packs tags into rows and reads the outputs), and
returns sigmoid token probabilities and cxcywh boxes per row. What it adds to a plain model call:

- **Rows of one image share one backbone pass.** The rows of a forward hold the same image with different
  prompts; the image backbone (Swin-B at 800x1333 px: about a third of a one-row forward) would otherwise run
  once per row. Hooks make it see the first row only and broadcast its features (see `_shared_backbone`).
- **The phrase delimiters the model uses** (`delimiters`): the model splits its text into phrases at ids
  hard-coded in transformers; a prompt built with other ids would let every tag attend to every other, so
  the tokenizer's [CLS], [SEP] and '.' are checked against them at construction.

Weights come from `from_pretrained` (the Hugging Face cache first, the hub only when needed, a one-line
`ResourceMissingError` when neither has them) or from `tiny()`, a tiny random-init model built in code for
tests and install checks, whose outputs are meaningless.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from .loading import check_model_type, complete_weights, load_checkpoint, model_call, resolve_device, resolve_dtype
from .spec import TINY_MODEL, ModelSpec
from .tiny import build_tiny_grounding_dino

#: The default checkpoint: Swin-B backbone, the stronger of the two released in transformers format.
DEFAULT_MODEL = "IDEA-Research/grounding-dino-base"
#: The Swin-T checkpoint: about half the compute of -base, somewhat weaker boxes.
TINY_CHECKPOINT = "IDEA-Research/grounding-dino-tiny"


class GroundingDino:
    """A transformers `GroundingDinoForObjectDetection` with its processor, on one device and dtype.

    share_backbone: run the image backbone (Swin) once per forward and broadcast its features to every row
    instead of once per row. The rows hold the same image, so results are the same up to float rounding;
    for -base at 800x1333 px the backbone is about a third of a one-row forward (6.6 of 20 s on 2 CPU cores).
    forward_calls: batched forwards so far (tests and benchmarks read it).
    """

    def __init__(self, model: Any, processor: Any, device: str | torch.device = "cpu",
                 dtype: torch.dtype | str = torch.float32, model_id: str = DEFAULT_MODEL,
                 is_tiny: bool = False, share_backbone: bool = True) -> None:
        dtype = resolve_dtype(dtype)
        device = resolve_device(str(device))
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.device, self.dtype = device, dtype
        self.model_id, self.is_tiny = model_id, is_tiny
        self.share_backbone = share_backbone
        self.forward_calls = 0
        self.max_text_len = int(model.config.max_text_len)

        tok = self.tokenizer
        self.cls_id, self.sep_id, self.pad_id = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
        self.dot_id = tok.convert_tokens_to_ids(".")
        # The model splits its text into phrases at these ids (hard-coded in transformers as bert-base-uncased's
        # [CLS] [SEP] . ?). A prompt must use the same ids, or every tag would attend to every other tag.
        self.delimiters = _phrase_delimiters(model)
        # Their text ('.', '?'): a prompt must not hold them inside a tag, or "st. bernard" would be two phrases.
        self.delimiter_marks = [t for t in tok.convert_ids_to_tokens(sorted(self.delimiters))
                                if t not in (tok.cls_token, tok.sep_token)]
        missing = {self.cls_id, self.sep_id, self.dot_id} - self.delimiters
        if missing:
            raise ValueError(f"the tokenizer's [CLS]/[SEP]/'.' ids {sorted(missing)} are not among the model's "
                             f"phrase delimiters {sorted(self.delimiters)}; tokenizer and model do not match")

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_MODEL, device: str | torch.device = "auto",
                        dtype: torch.dtype | str = "float32", cache_dir: str | None = None,
                        local_files_only: bool = False, revision: str | None = None,
                        **kwargs: Any) -> GroundingDino:
        """Load a checkpoint: a Hugging Face id (DEFAULT_MODEL, TINY_CHECKPOINT, ...) or a local folder
        written by save_pretrained. "tiny-random" builds the tiny random-init model (see `tiny`).

        The local cache is tried first, so a cached checkpoint costs no network round trip; a missing one
        raises ResourceMissingError naming `selfseg download`. kwargs go to the constructor.
        """
        return cls.from_spec(ModelSpec(model_id, device, dtype, cache_dir, local_files_only, revision), **kwargs)

    @classmethod
    def from_spec(cls, spec: ModelSpec, **kwargs: Any) -> GroundingDino:
        device, torch_dtype = resolve_device(spec.device), resolve_dtype(spec.dtype)
        if spec.is_tiny:
            return cls.tiny(device=device, dtype=torch_dtype, **kwargs)
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        check_model_type("Grounding DINO", spec, {"grounding-dino"},
                         f"a Grounding DINO checkpoint such as {DEFAULT_MODEL!r}")

        def load(local_only: bool) -> tuple[Any, Any]:
            kw = spec.pretrained_kwargs(local_only)
            return (complete_weights("Grounding DINO", spec.id, GroundingDinoForObjectDetection.from_pretrained(
                        spec.id, dtype=torch_dtype, output_loading_info=True, **kw)),
                    AutoProcessor.from_pretrained(spec.id, **kw))

        model, processor = load_checkpoint("Grounding DINO", spec, load)
        return cls(model, processor, device, torch_dtype, model_id=spec.name, **kwargs)

    @classmethod
    def tiny(cls, seed: int = 0, device: str | torch.device = "cpu",
             dtype: torch.dtype | str = torch.float32, **kwargs: Any) -> GroundingDino:
        """A tiny random-init Grounding DINO with a real processor, built in code (no download).

        For tests and install checks only: its outputs change with the image and the prompt but are
        meaningless. Everything a caller relies on is real: the 256-token text limit, the BERT WordPiece
        tokenizer (multi-token words included), phrase delimiters at bert-base-uncased's ids, the image
        processor's resizing.
        """
        model, processor = build_tiny_grounding_dino(seed)
        return cls(model, processor, device, dtype, model_id=TINY_MODEL, is_tiny=True, **kwargs)

    # ------------------------------------------------------------------------------------------ inputs
    def preprocess(self, image: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(1, 3, H', W') pixel values in the model's dtype and (1, H', W') pixel mask (None when the image
        processor makes none), both on the model's device, from one PIL image (converted to RGB): the image
        processor's own output, except for an image so thin that its feature maps would hold fewer tokens
        than the model has queries (the query selection would fail). Such an image is padded below or to the
        right with zeros marked 0 in the pixel mask, just as the processor pads a smaller image in a batch, so
        the model's boxes stay relative to the image itself."""
        import torch

        if image.mode != "RGB":
            image = image.convert("RGB")
        pix = self.image_processor(images=image, return_tensors="pt")
        pixel_values = pix["pixel_values"]
        pixel_mask = pix.get("pixel_mask")
        if pixel_mask is None:
            pixel_mask = torch.ones((1, *pixel_values.shape[2:]), dtype=torch.long)
        h, w = pixel_values.shape[-2:]
        ph, pw = h, w
        while self.feature_tokens(ph, pw) < self.model.config.num_queries:
            if ph <= pw:
                ph += 8
            else:
                pw += 8
        if (ph, pw) != (h, w):
            pixel_values = torch.nn.functional.pad(pixel_values, (0, pw - w, 0, ph - h))
            pixel_mask = torch.nn.functional.pad(pixel_mask, (0, pw - w, 0, ph - h))
        elif "pixel_mask" not in pix:
            pixel_mask = None
        pixel_values = pixel_values.to(self.device, self.dtype)
        return pixel_values, pixel_mask.to(self.device) if pixel_mask is not None else None

    def feature_tokens(self, height: int, width: int) -> int:
        """How many feature tokens (all levels) the model makes of an input of height x width pixels. A Swin
        backbone's stage k holds ceil(side / (patch * 2^(k-1))) positions a side (the patch embedding and each
        patch merging pad up); each extra level is a stride-2 convolution (ceil(side / 2)). Other backbones:
        levels at strides 8, 16, ..."""
        import math

        config = self.model.config
        backbone = config.backbone_config
        stride = 8
        if getattr(backbone, "model_type", None) == "swin" and getattr(backbone, "out_indices", None):
            stride = backbone.patch_size * 2 ** (min(backbone.out_indices) - 1)
        h, w = math.ceil(height / stride), math.ceil(width / stride)
        total = 0
        for _ in range(config.num_feature_levels):
            total += h * w
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return total

    # ------------------------------------------------------------------------------------------ forward
    @model_call
    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None,
                rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched forward: the token id rows right-padded to the longest, the one image of
        `pixel_values` repeated for every row (as a view).

        Padding is safe: the text encoder attends only within a phrase (its mask is built from the delimiter
        ids, so a padding token sees only itself and no real token sees it) and the fusion layers and logits
        mask padding by attention_mask. Returns (rows, queries, longest) float32 sigmoid probabilities and
        (rows, queries, 4) float32 cxcywh boxes, both relative to the image.
        """
        n, longest = len(rows), max(len(r) for r in rows)
        if longest > self.max_text_len:
            raise ValueError(f"a prompt row of {longest} tokens exceeds the model's text limit {self.max_text_len}")
        ids = torch.full((n, longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, longest), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        inputs = dict(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
            token_type_ids=torch.zeros_like(ids).to(self.device),
            pixel_values=pixel_values.expand(n, *pixel_values.shape[1:]),
        )
        if pixel_mask is not None:
            inputs["pixel_mask"] = pixel_mask.expand(n, *pixel_mask.shape[1:])
        with self._shared_backbone(n):
            out = self.model(**inputs)
        self.forward_calls += 1
        return out.logits[:, :, :longest].float().sigmoid(), out.pred_boxes.float()

    @contextmanager
    def _shared_backbone(self, rows: int) -> Iterator[None]:
        """Within the block, the model's image backbone sees only the first row and its features are
        broadcast (expanded views, no copies) to all `rows`: every row holds the same image, and the backbone
        would otherwise run once per row. Hooks, not a replaced submodule, so the model's structure and
        state dict stay those of the checkpoint."""
        if not self.share_backbone or rows == 1:
            yield
            return
        backbone = self.model.model.backbone

        def first_row(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            return tuple(a[:1] if torch.is_tensor(a) else a for a in args), \
                {k: v[:1] if torch.is_tensor(v) else v for k, v in kwargs.items()}

        def broadcast(module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
            try:
                maps, pos = output
                return ([(f.expand(rows, *f.shape[1:]), m.expand(rows, *m.shape[1:])) for f, m in maps],
                        [p.expand(rows, *p.shape[1:]) for p in pos])
            except (TypeError, ValueError):
                raise RuntimeError("transformers changed Grounding DINO's backbone outputs; construct "
                                   "GroundingDino with share_backbone=False and please report this") from None

        handles = [backbone.register_forward_pre_hook(first_row, with_kwargs=True),
                   backbone.register_forward_hook(broadcast, with_kwargs=True)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


def _phrase_delimiters(model: Any) -> set[int]:
    """The token ids at which the model splits its text into phrases (a buffer of the model since
    transformers 5.23, selfseg's floor)."""
    ids = getattr(getattr(model, "model", None), "special_tokens", None)
    if ids is None:
        raise RuntimeError("expected Grounding DINO's phrase delimiter ids in model.model.special_tokens "
                           "(transformers >= 5.23), got none; upgrade transformers")
    return {int(i) for i in ids.tolist()}
