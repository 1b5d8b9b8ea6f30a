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
