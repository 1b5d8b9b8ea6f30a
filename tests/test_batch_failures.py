"""What a failed model call does to a batch: a batch that runs out of memory is retried image by image with
the failed call's memory released first, and an accelerator that is lost for good stops the run in one line
instead of failing every later image, while an accelerator error the device survives is its batch's alone.
The failures are raised by a wrapper around the smoke config's real taggers and segmenters (no GPU here: the
device's answer to its probe is stood in for); the models themselves are the tiny ones."""
from __future__ import annotations

import weakref

import pytest
import torch

from selfseg import SelfSeg
from selfseg.errors import DeviceError

ILLEGAL_ACCESS = "CUDA error: an illegal memory access was encountered"
needs_accelerator_error = pytest.mark.skipif(not hasattr(torch, "AcceleratorError"),
                                             reason="torch.AcceleratorError is new in torch 2.8")


@pytest.fixture
def seg(repo):
    return SelfSeg.from_config(repo / "configs" / "smoke.yaml", ["tagger=vocabulary", "vocabulary=[dog, sky]"])


@pytest.mark.skipif(not hasattr(torch, "OutOfMemoryError"), reason="torch.OutOfMemoryError is new in torch 2.5")
def test_a_batch_out_of_memory_is_retried_after_its_memory_is_released(seg, ade_images, monkeypatch):
    real = type(seg.tagger).tag_batch
    held, alive_at_retry = [], []

    def tag_batch(self, images):
        if len(images) > 1:
            activations = torch.zeros(1000)  # what the failed forward held when it ran out of memory
            held.append(weakref.ref(activations))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        alive_at_retry.append(held[0]() is not None)
        return real(self, images)

    monkeypatch.setattr(type(seg.tagger), "tag_batch", tag_batch)
    items = list(seg.tag_many(ade_images[:2], batch_size=2))
    assert [i.ok for i in items] == [True, True] and [i.source for i in items] == [str(p) for p in ade_images[:2]]
    assert alive_at_retry == [False, False]


@needs_accelerator_error
def test_a_lost_device_stops_tagging_in_one_line(seg, ade_images, monkeypatch):
    def tag_batch(self, images):
        raise torch.AcceleratorError(ILLEGAL_ACCESS)

    monkeypatch.setattr(type(seg.tagger), "tag_batch", tag_batch)
    monkeypatch.setattr("selfseg.pipeline._device_answers", lambda torch, device: False)
    with pytest.raises(DeviceError, match=r"^the device failed \(CUDA error: an illegal memory access was "
                                          r"encountered\) and cannot run anything more in this process; the "
                                          r"results written so far are kept"):
        list(seg.tag_many(ade_images[:2], batch_size=2))


@needs_accelerator_error
def test_an_accelerator_error_the_device_survives_is_its_batchs_alone(seg, ade_images, monkeypatch):
    """A launch configuration too large for one batch's size: the device still computes, so the batch is
    retried image by image, as after any other failure."""
    from selfseg.pipeline import _device_answers

    real = type(seg.tagger).tag_batch

    def tag_batch(self, images):
        if len(images) > 1:
            raise torch.AcceleratorError("CUDA error: invalid configuration argument")
        return real(self, images)

    monkeypatch.setattr(type(seg.tagger), "tag_batch", tag_batch)
    items = list(seg.tag_many(ade_images[:2], batch_size=2))
    assert [i.ok for i in items] == [True, True]
    assert _device_answers(torch, "cpu")


@needs_accelerator_error
def test_a_lost_device_stops_segmenting_but_one_bad_image_does_not(seg, ade_images, monkeypatch):
    segmenter = type(seg.segmenter)
    real = segmenter.segment_batch
    batches = []

    def fails(error):
        def call(self, images, plans):
            batches.append(len(images))
            if any(im.source == str(ade_images[0]) for im in images):
                raise error
            return real(self, images, plans)
        return call

    monkeypatch.setattr(segmenter, "segment_batch", fails(ValueError("a mask of the wrong shape")))
    items = list(seg.segment_many(ade_images[:2], batch_size=2))
    assert [i.ok for i in items] == [False, True] and "ValueError: a mask of the wrong shape" in items[0].error
    assert batches == [2, 1, 1]  # the batch failed, then each image alone

    monkeypatch.setattr(segmenter, "segment_batch", fails(torch.AcceleratorError(ILLEGAL_ACCESS)))
    monkeypatch.setattr("selfseg.pipeline._device_answers", lambda torch, device: False)
    with pytest.raises(DeviceError, match="the device failed"):
        list(seg.segment_many(ade_images[:2]))
