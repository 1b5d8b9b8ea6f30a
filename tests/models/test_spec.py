"""One model spec reaches every model family's `from_pretrained` the same way (id, revision, cache,
offline): checked by catching the loader's call, so no checkpoint is needed."""
from __future__ import annotations

import pytest

from selfseg.config import load_config
from selfseg.models.spec import TINY_MODEL, ModelSpec


class Called(Exception):
    pass


def _catch(monkeypatch, cls_path):
    import importlib

    module, name = cls_path.rsplit(".", 1)
    seen = {}

    def fake(model_id, **kwargs):
        seen.update(kwargs, model_id=model_id)
        raise Called

    monkeypatch.setattr(getattr(importlib.import_module(module), name), "from_pretrained", fake)
    return seen


@pytest.mark.parametrize("wrapper, loads, model_type", [
    ("selfseg.models.blip.BlipCaptioner", "transformers.BlipForConditionalGeneration", "blip"),
    ("selfseg.models.sam2.Sam2BoxSegmenter", "transformers.Sam2Model", "sam2_video"),
    ("selfseg.models.clipseg.ClipSegDenseSegmenter", "transformers.CLIPSegForImageSegmentation", "clipseg"),
    ("selfseg.models.grounding_dino.GroundingDino", "transformers.GroundingDinoForObjectDetection", "grounding-dino"),
    ("selfseg.locate.grounding_dino.GroundingDinoLocator", "transformers.GroundingDinoForObjectDetection",
     "grounding-dino"),
])
def test_a_spec_reaches_from_pretrained(monkeypatch, tmp_path, wrapper, loads, model_type):
    """The checkpoint's config is read first (its model type checked), then the weights: both get the spec's
    id, revision and cache."""
    import importlib
    import types

    import transformers

    module, name = wrapper.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    seen = _catch(monkeypatch, loads)
    configs = []

    def config(model_id, **kwargs):
        configs.append((model_id, kwargs["revision"], kwargs["cache_dir"]))
        return types.SimpleNamespace(model_type=model_type)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", config)
    spec = ModelSpec("org/model", device="cpu", cache_dir=str(tmp_path), local_files_only=False, revision="v1.2")
    monkeypatch.setattr("selfseg.models.loading.hub_reachable", lambda *a, **k: True)
    with pytest.raises(Called):
        cls.from_spec(spec)
    assert configs[0] == ("org/model", "v1.2", str(tmp_path))
    assert seen["model_id"] == "org/model" and seen["revision"] == "v1.2" and seen["cache_dir"] == str(tmp_path)
    assert seen["output_loading_info"] is True  # missing weights are counted, not only logged


@pytest.mark.parametrize("wrapper", ["selfseg.models.vlm.VisionChat", "selfseg.models.llm.ChatLM"])
def test_a_spec_reaches_the_chat_models_checkpoint_check(monkeypatch, tmp_path, wrapper):
    """The chat models read the checkpoint's config first (to refuse the wrong kind of model early)."""
    import importlib

    module, name = wrapper.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    seen = _catch(monkeypatch, "transformers.AutoConfig")
    spec = ModelSpec("org/chat", device="cpu", dtype="auto", cache_dir=str(tmp_path), revision="abc123")
    with pytest.raises(Called):
        cls.from_spec(spec, max_new_tokens=4)
    assert (seen["model_id"], seen["revision"], seen["cache_dir"]) == ("org/chat", "abc123", str(tmp_path))
    tiny = cls.from_spec(ModelSpec(TINY_MODEL, device="cpu"), max_new_tokens=2)
    assert tiny.is_tiny and tiny.max_new_tokens == 2


def test_the_config_builds_specs_and_tiny_ids_build_in_code():
    cfg = load_config(None, ["model.device=cpu", "model.cache_dir=/c", "model.local_files_only=true"])
    spec = cfg.model.spec(cfg.segment.grounded_sam2.sam)
    assert spec == ModelSpec(cfg.segment.grounded_sam2.sam, "cpu", "float32", "/c", True)
    assert not spec.is_tiny and ModelSpec(TINY_MODEL).is_tiny
    assert spec.pretrained_kwargs(True) == {"cache_dir": "/c", "local_files_only": True}  # no revision: none sent
