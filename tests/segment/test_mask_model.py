"""The sam2 mask model component and the grounded_sam2 block it shares with the locator (tiny random SAM 2:
masks are meaningless; the plumbing and the equality with the model wrapper are what is checked)."""
from __future__ import annotations

import numpy as np
import pytest

from selfseg.errors import ConfigError
from selfseg.io import load_image
from selfseg.locate.grounding_dino import GroundingDinoConfig
from selfseg.models.sam2 import Sam2BoxSegmenter
from selfseg.models.spec import TINY_MODEL, ModelConfig
from selfseg.segment import mask_models, segmenters
from selfseg.segment.grounded_sam2 import GroundedSam2Config
from selfseg.segment.sam2 import Sam2Config, Sam2MaskModel


def test_the_registered_mask_model_equals_the_wrapper_and_batches_its_boxes(ade_images):
    image = load_image(ade_images[0])
    h, w = image.image.height, image.image.width
    boxes = np.array([[0, 0, w / 2, h / 2], [w / 4, h / 4, w, h], [10, 20, 60, 90]], np.float32)
    made = mask_models().create("sam2", Sam2Config(sam=TINY_MODEL, boxes_per_call=2), ModelConfig(device="cpu"))
    assert isinstance(made, Sam2MaskModel) and made.is_tiny
    masks, scores = made.masks(image, boxes)
    assert masks.shape == (3, h, w) and scores.shape == (3,) and made.sam.decoder_calls == 2
    direct = Sam2BoxSegmenter.tiny().segment(image.image, boxes, max_boxes_per_call=2)  # the same decoder batches
    assert np.array_equal(masks, direct.masks) and np.allclose(scores, direct.scores, atol=1e-6)


def test_the_grounded_sam2_block_is_both_parts_blocks():
    block = GroundedSam2Config(detector=TINY_MODEL, sam="org/sam", box_threshold=0.2, boxes_per_call=4)
    assert isinstance(block, GroundingDinoConfig) and isinstance(block, Sam2Config)
    seg = segmenters().component("grounded_sam2")
    assert seg.checkpoints(block, ModelConfig()) == [TINY_MODEL, "org/sam"] and seg.takes_prompts
    with pytest.raises(ConfigError, match=r"^boxes_per_call: expected an integer >= 0"):
        GroundedSam2Config(boxes_per_call=-1)
    with pytest.raises(ConfigError, match=r"^max_box_area: expected a fraction in \(0, 1\]"):
        GroundedSam2Config(max_box_area=0)
    with pytest.raises(ConfigError, match=r"^images_per_call: expected an integer >= 0"):
        GroundedSam2Config(images_per_call=-1)


def _grounded(**block):
    from selfseg.segment.grounded_sam2 import GroundedSam2Segmenter

    cfg = GroundedSam2Config(detector=TINY_MODEL, sam=TINY_MODEL, box_threshold=0.0, text_threshold=0.0, **block)
    return GroundedSam2Segmenter(cfg, ModelConfig(device="cpu"))


def test_a_batch_mixing_images_without_tags_or_boxes_gives_each_image_its_own_result(ade_images):
    """Three photos, the middle one without tags: each result is that image's `segment` alone, with its own
    note, and SAM 2 encodes the two with boxes in one call. Then an image whose tags keep no box."""
    from selfseg.segment.base import SegmentPlan

    images = [load_image(p) for p in ade_images]
    plans = [SegmentPlan(["wall", "floor"]), SegmentPlan([]), SegmentPlan(["sky", "tree"])]
    seg = _grounded(images_per_call=3)  # a CPU's default is one image per encoder call
    before = seg.masker.sam.encoder_calls
    batch = seg.segment_batch(images, plans)
    assert seg.masker.sam.encoder_calls - before == 1
    alone = [_grounded().segment(im, plan) for im, plan in zip(images, plans)]
    assert batch[1].labels == [] and batch[1].notes == ["no tags: nothing to locate"]
    for got, ref, im in zip(batch, alone, images):
        assert got.masks.shape[1:] == (im.image.height, im.image.width)
        assert got.labels == ref.labels and got.notes == ref.notes
        assert np.allclose(got.scores, ref.scores) and np.allclose(got.mask_scores, ref.mask_scores, atol=1e-5)
    assert len(batch[0]) and len(batch[2]) and not np.allclose(batch[0].scores[:3], batch[2].scores[:3])
    # no box on one image: its note, and the other images still get their masks in one encoder call
    strict = _grounded()
    strict.locator.box_threshold = 1.0
    nothing = strict.segment_batch(images[:1], plans[:1])
    assert nothing[0].labels == [] and "no boxes above the thresholds" in nothing[0].notes[-1]


@pytest.mark.skipif(not hasattr(__import__("torch"), "OutOfMemoryError"), reason="torch.OutOfMemoryError is new")
def test_sam2_out_of_memory_on_a_batch_retries_image_by_image_without_locating_again(ade_images):
    """SAM 2's encoder pass over two images runs out of memory: it is retried one image per call once the
    failed call's memory is released, and the boxes found are kept (Grounding DINO runs once per image)."""
    import weakref

    import torch

    from selfseg.segment.base import SegmentPlan

    images = [load_image(p) for p in ade_images[:2]]
    plans = [SegmentPlan(["wall", "floor"]), SegmentPlan(["sky"])]
    seg = _grounded(images_per_call=2)
    model = seg.masker.sam.model
    real, held, alive_at_retry = model.get_image_embeddings, [], []

    def get_image_embeddings(pixels):
        if len(pixels) > 1:
            activations = torch.zeros(1000)
            held.append(weakref.ref(activations))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        alive_at_retry.append(held[0]() is not None)
        return real(pixels)

    model.get_image_embeddings = get_image_embeddings
    detects = seg.locator.detector.forward_calls
    out = seg.segment_batch(images, plans)
    assert alive_at_retry == [False, False] and seg.locator.detector.forward_calls - detects == 2
    alone = [_grounded().segment(im, plan) for im, plan in zip(images, plans)]
    assert [o.labels for o in out] == [a.labels for a in alone] and all(len(o) for o in out)
    # one image alone that fails is not retried: its error is the image's
    model.get_image_embeddings = lambda pixels: (_ for _ in ()).throw(torch.OutOfMemoryError("out of memory"))
    with pytest.raises(torch.OutOfMemoryError):
        seg.segment_batch(images[:1], plans[:1])


def test_a_mask_model_without_masks_batch_is_called_per_image(ade_images):
    """A mask model passed in that only has `masks` (the protocol's one required method) still works."""
    from selfseg.segment.base import SegmentPlan
    from selfseg.segment.grounded_sam2 import GroundedSam2Segmenter

    class OnePerImage:
        name = "one"

        def __init__(self):
            self.calls = 0

        def masks(self, image, boxes):
            self.calls += 1
            h, w = image.image.height, image.image.width
            return np.ones((len(boxes), h, w), bool), np.full(len(boxes), 0.5)

    masker = OnePerImage()
    cfg = GroundedSam2Config(detector=TINY_MODEL, sam=TINY_MODEL, box_threshold=0.0, text_threshold=0.0)
    seg = GroundedSam2Segmenter(cfg, ModelConfig(device="cpu"), masker=masker)
    out = seg.segment_batch([load_image(p) for p in ade_images[:2]], [SegmentPlan(["wall"]), SegmentPlan(["sky"])])
    assert masker.calls == 2 and all(len(o) and np.all(o.mask_scores == 0.5) for o in out)
