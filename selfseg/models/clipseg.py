"""CLIPSeg through transformers: one dense probability map per tag (tags -> dense maps).

CLIPSeg conditions a small decoder on a text embedding; its stock forward wants one copy of the image per
prompt and so runs the CLIP ViT once per tag. Here the image is encoded ONCE and its activations are
broadcast (expand, no copy) to every tag: one vision pass, one text pass over all tags, one decoder pass
over all tags. The tests check this equals the stock forward on a repeated image. Several images share one
vision pass and one text pass over their distinct tags; the same tag list in the next call (a fixed
vocabulary) reuses its text embeddings.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .loading import check_model_type, complete_weights, load_checkpoint, model_call, resolve_device, resolve_dtype
from .spec import TINY_MODEL, ModelSpec
from .tiny import build_tiny_clipseg

DEFAULT_CLIPSEG = "CIDAS/clipseg-rd64-refined"
# Prompts per text-tower forward: ADE20K-847's names fit in two.
TEXT_ROWS_PER_CALL = 512


class ClipSegDenseSegmenter:
    """CLIPSeg (transformers `CLIPSegForImageSegmentation` + `CLIPSegProcessor`): tags -> (T, H, W) maps."""

    def __init__(self, model: Any, processor: Any, device: torch.device, dtype: torch.dtype, is_tiny: bool,
                 model_id: str) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.is_tiny = is_tiny
        self.model_id = model_id
        self.forward_calls = 0  # vision forwards (one per call, over all of its images)
        self.text_calls = 0  # text forwards: none for a call whose tags repeat the last call's
        self.decoder_calls = 0  # decoder forwards (one per chunk of tags)
        # The last call's distinct tags and their embeddings: a fixed vocabulary (the user's words, a
        # benchmark's classes) is encoded once, not once per call. Keyed by the whole list, so a hit is the
        # same computation bit for bit; one entry, as self-found tags rarely repeat as a whole.
        self._text: tuple[tuple[str, ...], torch.Tensor] | None = None

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_CLIPSEG, device: str | torch.device = "auto",
                        dtype: str | torch.dtype = "float32", cache_dir: str | None = None,
                        local_files_only: bool = False, revision: str | None = None) -> ClipSegDenseSegmenter:
        """Load a CLIPSeg checkpoint (hub id or local folder); "tiny-random" builds the tiny twin (see `tiny`)."""
        return cls.from_spec(ModelSpec(model_id, device, dtype, cache_dir, local_files_only, revision))

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> ClipSegDenseSegmenter:
        dev, dt = resolve_device(spec.device), resolve_dtype(spec.dtype)
        if spec.is_tiny:
            return cls.tiny(device=dev, dtype=dt)
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        check_model_type("CLIPSeg", spec, {"clipseg"}, f"a CLIPSeg checkpoint such as {DEFAULT_CLIPSEG!r}")

        def load(local_only: bool) -> tuple[Any, Any]:
            kw = spec.pretrained_kwargs(local_only)
            return (complete_weights("CLIPSeg", spec.id, CLIPSegForImageSegmentation.from_pretrained(
                        spec.id, output_loading_info=True, **kw)),
                    CLIPSegProcessor.from_pretrained(spec.id, **kw))

        model, processor = load_checkpoint("CLIPSeg", spec, load)
        return cls(model, processor, dev, dt, is_tiny=False, model_id=spec.name)

    @classmethod
    def tiny(cls, seed: int = 0, device: str | torch.device = "cpu",
             dtype: str | torch.dtype = "float32") -> ClipSegDenseSegmenter:
        """A tiny random-init CLIPSeg built in code (no download): 64-px input, 64x64 logits.
        For tests and install checks; its maps carry no meaning."""
        model, processor = build_tiny_clipseg(seed)
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        return cls(model, processor, dev, resolve_dtype(dtype), is_tiny=True, model_id=TINY_MODEL)

    # ------------------------------------------------------------------------------------------ maps
    def _encode_images(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        """The decoder's activations of every image, in ONE vision forward: per extracted layer (N, L, D).
        The processor squashes every image to the same square, so they stack with no padding."""
        m = self.model
        pixels = self.processor.image_processor(list(images), return_tensors="pt")["pixel_values"]
        # The vision third of CLIPSegForImageSegmentation.forward.
        vision = m.clip.get_image_features(pixel_values=pixels.to(self.device, self.dtype),
                                           interpolate_pos_encoding=True, output_hidden_states=True)
        self.forward_calls += 1
        # hidden_states[0] is the embedding output, hence +1 (as the stock forward indexes them).
        return [vision.hidden_states[i + 1] for i in m.extract_layers]

    def _encode_texts(self, tags: list[str]) -> torch.Tensor:
        """Every tag's conditional embedding (T, D), in one text forward unless the list is the last one."""
        m = self.model
        key, last = tuple(tags), self._text
        if last is not None and last[0] == key:
            return last[1]
        parts = []
        # A batch's distinct prompts can run to thousands (per-image enriched phrases of a large vocabulary);
        # the text tower's activations grow with its rows (its MLP holds rows x 77 x 2048 floats), so it
        # takes TEXT_ROWS_PER_CALL at a time. Each row's embedding does not depend on the rows beside it.
        # Padding on the right whatever the tokenizer's setting: CLIP pools each row at its first end token,
        # which left padding (with the end token as pad) would move onto the padding.
        for start in range(0, len(tags), TEXT_ROWS_PER_CALL):
            text = self.processor.tokenizer(tags[start:start + TEXT_ROWS_PER_CALL], padding=True, truncation=True,
                                            max_length=m.config.text_config.max_position_embeddings,
                                            padding_side="right", return_tensors="pt")
            parts.append(m.clip.get_text_features(input_ids=text["input_ids"].to(self.device),
                                                  attention_mask=text["attention_mask"].to(self.device)).pooler_output)
            self.text_calls += 1
        conditional = torch.cat(parts)
        self._text = (key, conditional)
        return conditional

    def _encode(self, images: Sequence[Image.Image], tag_lists: Sequence[list[str]]
                ) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
        """Per image: its activations (batch 1 each) and its tags' conditional embeddings (T, D). One vision
        forward over the images and one text forward over every distinct tag of the batch (none when that
        list is the last one encoded: a fixed vocabulary is encoded once per run)."""
        activations = self._encode_images(images)
        vocabulary = list(dict.fromkeys(t for tags in tag_lists for t in tags))
        row = {t: i for i, t in enumerate(vocabulary)}
        conditional = self._encode_texts(vocabulary)
        return [([a[j:j + 1] for a in activations], conditional[[row[t] for t in tags]])
                for j, tags in enumerate(tag_lists)]

    def too_long(self, texts: list[str]) -> list[tuple[int, int, int]]:
        """(index, tokens, limit) of each text longer than the text tower's positions: `_encode` keeps its
        first `limit` tokens (the end-of-text token included), where the stock processor would raise."""
        limit = self.model.config.text_config.max_position_embeddings
        # verbose=False: counting past the limit is the point here, and the tokenizer's own warning about it
        # reads as a crash to come (the result's notes say what happened instead)
        lengths = [len(ids) for ids in self.processor.tokenizer(texts, verbose=False)["input_ids"]]
        return [(i, n, limit) for i, n in enumerate(lengths) if n > limit]

    def _chunks(self, activations: list[torch.Tensor], conditional: torch.Tensor, size: tuple[int, int],
                tags_per_call: int):
        """Yield (first tag index, (t, H, W) probabilities on the device) for tags_per_call tags at a time.

        The decoder's and the full-size maps' memory grow with the number of tags (847 ADE-full names at
        1024 px: several GB); chunks bound it while the vision and text towers still run once.
        """
        n = len(conditional)
        step = n if tags_per_call <= 0 else tags_per_call
        for start in range(0, n, step):
            cond = conditional[start:start + step]
            # expand: the image's activations are broadcast to every tag, never copied per tag.
            logits = self.model.decoder([a.expand(len(cond), -1, -1) for a in activations], cond).logits
            self.decoder_calls += 1
            logits = logits.reshape(len(cond), *logits.shape[-2:])  # (t, side, side), also for t == 1
            # The processor squashed the image to a square; bilinear upsampling straight to (h, w) undoes
            # it. Logits are interpolated before the sigmoid so boundaries stay as sharp as the model made them.
            full = F.interpolate(logits[:, None].float(), size=size, mode="bilinear", align_corners=False)
            yield start, torch.sigmoid(full[:, 0])

    @model_call
    def logits(self, image: Image.Image, tags: Sequence[str], *, tags_per_call: int = 0) -> np.ndarray:
        """(T, H, W) float32 sigmoid probabilities, one map per tag, at the image's own size.

        Despite the name these are probabilities, not raw logits: the decoder's logits are upsampled
        (bilinear) from the model's square input to (H, W) and then passed through a sigmoid. Tags are
        used verbatim (no prompt template). Zero tags: a (0, H, W) array, no model call. The result
        holds T full-size maps; `best` gives what segmentation needs in memory that does not grow with T.
        """
        image = image if image.mode == "RGB" else image.convert("RGB")
        tags = [str(t) for t in tags]
        if not tags:
            return np.zeros((0, image.height, image.width), dtype=np.float32)
        ((activations, conditional),) = self._encode([image], [tags])
        return np.concatenate([p.cpu().numpy().astype(np.float32, copy=False) for _, p in self._chunks(
            activations, conditional, (image.height, image.width), tags_per_call)])

    def best(self, image: Image.Image, tags: Sequence[str], *,
             tags_per_call: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Per pixel, the most probable tag and its probability: ((H, W) int64, (H, W) float32).

        Equal to `logits(...).argmax(0)` and `.max(0)` (ties: the first tag), computed tags_per_call maps
        at a time, so memory holds one chunk of maps rather than all T. Zero tags: a ValueError.
        """
        return self.best_batch([image], [tags], tags_per_call=tags_per_call)[0]

    @model_call
    def best_batch(self, images: Sequence[Image.Image], tag_lists: Sequence[Sequence[str]], *,
                   tags_per_call: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
        """`best` for several images, each with its own tags: one vision forward over all the images, one
        text forward over the batch's distinct tags, then each image's decoder chunks. Each result equals
        that image's `best` up to float rounding (batched kernels may round differently). Any image without
        tags: a ValueError, before any model call.
        """
        if len(images) != len(tag_lists):
            raise ValueError(f"expected one tag list per image, got {len(tag_lists)} for {len(images)} images")
        images = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        tag_lists = [[str(t) for t in tags] for tags in tag_lists]
        if not all(tag_lists):
            raise ValueError("best: no tags")
        if not images:
            return []
        out = []
        for image, (activations, conditional) in zip(images, self._encode(images, tag_lists)):
            best = conf = None
            for start, probs in self._chunks(activations, conditional, (image.height, image.width), tags_per_call):
                c_conf, c_best = probs.max(0)
                c_best = c_best + start
                if best is None:
                    best, conf = c_best, c_conf
                else:
                    better = c_conf > conf  # strictly: an earlier tag keeps a tie, as argmax does
                    best = torch.where(better, c_best, best)
                    conf = torch.where(better, c_conf, conf)
            out.append((best.cpu().numpy().astype(np.int64, copy=False),
                        conf.cpu().numpy().astype(np.float32, copy=False)))
        return out
