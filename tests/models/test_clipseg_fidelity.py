"""CLIPSeg fidelity: the tiny model depends on its inputs (so the equalities below can fail), a tag's map
does not depend on the tags decoded in the same call, and on a full-size model built from
CIDAS/clipseg-rd64-refined's published configuration (tests/fixtures/clipseg-rd64-refined; random weights)
selfseg's maps equal CLIPSegForImageSegmentation's own forward through the stock CLIPSegProcessor."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from selfseg.models.clipseg import ClipSegDenseSegmenter
from selfseg.models.loading import spread_weights
from selfseg.models.tiny import tiny_clip_tokenizer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "clipseg-rd64-refined"
TAGS = ["cat", "traffic light", "sky", "a fire hydrant beside the road", "dog"]


def _photo(seed: int, h: int = 90, w: int = 150) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@contextmanager
def _decoder_logits(seg):
    """Collect the decoder's logits of every call (the model's resolution, before upsampling)."""
    got = []
    handle = seg.model.decoder.register_forward_hook(lambda _m, _a, out: got.append(out.logits.detach().clone()))
    try:
        yield got
    finally:
        handle.remove()


def _logits(seg, image, tags, **kw):
    with _decoder_logits(seg) as got:
        seg.logits(image, tags, **kw)
    return torch.cat([g.reshape(-1, *g.shape[-2:]) for g in got])


@pytest.fixture(scope="module")
def tiny():
    return ClipSegDenseSegmenter.tiny(seed=0)


def test_tiny_clipseg_depends_on_the_image_and_the_tag(tiny):
    a = _logits(tiny, _photo(1), ["cat", "dog"])
    b = _logits(tiny, _photo(2), ["cat", "dog"])
    assert (a - b).abs().amax(dim=(1, 2)).min() > 0.05  # float noise at this scale is ~1e-7
    assert (a[0] - a[1]).abs().max() > 0.05


@pytest.mark.parametrize("tags_per_call", [2, 0])
def test_a_tags_map_equals_the_tag_alone_whatever_shares_its_call(tiny, tags_per_call):
    image = _photo(3)
    together = tiny.logits(image, TAGS, tags_per_call=tags_per_call)
    together_logits = _logits(tiny, image, TAGS, tags_per_call=tags_per_call)
    for i, tag in enumerate(TAGS):
        alone = tiny.logits(image, [tag])
        np.testing.assert_allclose(together[i], alone[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(together_logits[i], _logits(tiny, image, [tag])[0], atol=1e-4, rtol=1e-6)


# ---------------------------------------------------------- CIDAS/clipseg-rd64-refined, full size, random


@pytest.fixture(scope="module")
def rd64():
    """The published model configuration at full size (ViT-B/16 towers, extract layers 3/6/9, reduce dim 64,
    complex transposed convolution) with random weights; the published image processor (352 px, bilinear,
    ImageNet mean / std) and tokenizer settings (CLIPTokenizer, 77 positions, pad = unk = end of text) over
    selfseg's tiny byte-level vocabulary, <|endoftext|> the highest id as in the real one."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    cfg = json.loads((FIXTURE / "config.json").read_text())
    pcfg = json.loads((FIXTURE / "preprocessor_config.json").read_text())
    tcfg = json.loads((FIXTURE / "tokenizer_config.json").read_text())
    tok = tiny_clip_tokenizer(model_max_length=tcfg["model_max_length"])
    assert tok.pad_token == tok.unk_token == tok.eos_token == tcfg["pad_token"] == tcfg["unk_token"]
    assert tok.convert_tokens_to_ids(tok.eos_token) == len(tok) - 1
    keep = {k: v for k, v in cfg.items() if k not in ("architectures", "model_type", "text_config", "vision_config")}
    config = CLIPSegConfig(text_config={k: v for k, v in cfg["text_config"].items() if k != "model_type"},
                           vision_config={k: v for k, v in cfg["vision_config"].items() if k != "model_type"},
                           **keep)
    assert config.text_config.max_position_embeddings == tcfg["model_max_length"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = CLIPSegForImageSegmentation(config)
    # Unit-scale weights (as the tiny model's): with the stock init the logits are ~1e3, where float32
    # rounding alone exceeds 1e-4 and the sigmoid saturates.
    spread_weights(model, seed=0, head_gain=1.0, gain=1.0)
    images = ViTImageProcessor(**{k: pcfg[k] for k in ("do_resize", "size", "resample", "do_rescale",
                                                       "rescale_factor", "do_normalize", "image_mean", "image_std")})
    return ClipSegDenseSegmenter(model, CLIPSegProcessor(image_processor=images, tokenizer=tok),
                                 torch.device("cpu"), torch.float32, is_tiny=False, model_id="clipseg-rd64-refined")


def test_maps_equal_the_stock_forward_on_the_rd64_refined_configuration(rd64, ade_images):
    photo = Image.open(ade_images[0]).convert("RGB").resize((320, 240))
    tags = ["a cat", "traffic light", "sky"]
    with torch.inference_mode():
        inputs = rd64.processor(text=tags, images=[photo] * len(tags), padding=True, return_tensors="pt")
        assert inputs["pixel_values"].shape[-2:] == (352, 352)
        ref = rd64.model(**inputs).logits  # (T, 352, 352)
    ours = _logits(rd64, photo, tags, tags_per_call=2)  # chunked: 2 + 1 tags
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() < 1e-4, f"expected within 1e-4, got {(ours - ref).abs().max():.2e}"
    maps = rd64.logits(photo, tags, tags_per_call=2)
    expected = torch.sigmoid(F.interpolate(ref[:, None], size=(240, 320), mode="bilinear", align_corners=False))
    np.testing.assert_allclose(maps, expected[:, 0].numpy(), atol=1e-4, rtol=0)
    # Not vacuous: another picture, or another prompt, gives other logits.
    other = _logits(rd64, _photo(4, 240, 320), tags[:1])
    assert (other[0] - ours[0]).abs().max() > 0.05
    assert (ours[0] - ours[1]).abs().max() > 0.05
