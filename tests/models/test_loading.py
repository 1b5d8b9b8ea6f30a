"""Loading checkpoints: the wrong model, a partial checkpoint, every way a checkpoint can be missing, pinned
revisions, the dtypes transformers chooses, devices, and what identifies a checkpoint in cached replies.

Checkpoints here are the tiny random-init models saved to folders, and hub caches are laid out by hand as
huggingface_hub lays them out (snapshots/<commit>, refs/<name>); nothing is downloaded."""
from __future__ import annotations

import json
import socket
import warnings

import pytest
import torch

from selfseg.errors import ConfigError, ResourceMissingError
from selfseg.models.spec import TINY_MODEL, ModelSpec, split_revision

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Folders holding the tiny BLIP and CLIPSeg checkpoints, written by save_pretrained."""
    from selfseg.models.tiny import build_tiny_blip, build_tiny_clipseg

    root = tmp_path_factory.mktemp("ckpts")
    for name, build in (("blip", build_tiny_blip), ("clipseg", build_tiny_clipseg)):
        model, processor = build()
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
    return root


def hub_cache(root, repo: str, files: dict[str, str], refs: tuple[str, ...] = ("main",)):
    """A Hugging Face cache holding `files` of `repo` at COMMIT, with each of `refs` pointing at it."""
    base = root / f"models--{repo.replace('/', '--')}"
    snapshot = base / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    (base / "refs").mkdir()
    for ref in refs:
        (base / "refs" / ref).write_text(COMMIT)
    return snapshot


@pytest.mark.parametrize("wrapper, folder, found", [
    ("selfseg.models.blip.BlipCaptioner", "clipseg", "'clipseg' model; expected a BLIP captioning checkpoint"),
    ("selfseg.models.clipseg.ClipSegDenseSegmenter", "blip", "'blip' model; expected a CLIPSeg checkpoint"),
    ("selfseg.models.sam2.Sam2BoxSegmenter", "blip", "'blip' model; expected a SAM 2 checkpoint"),
    ("selfseg.models.grounding_dino.GroundingDino", "blip", "'blip' model; expected a Grounding DINO checkpoint"),
])
def test_a_checkpoint_of_another_model_is_refused_before_its_weights_load(saved, wrapper, folder, found):
    """transformers loads another model's folder with a warning and random weights where names differ (a
    CLIPSeg folder became a BLIP captioner whose every weight was random, and the run went on)."""
    import importlib

    module, name = wrapper.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(ConfigError, match=found):
        cls.from_spec(ModelSpec(str(saved / folder), device="cpu"))


def _without(folder, dest, drop):
    """A copy of checkpoint `folder` whose weights lack every tensor whose name `drop` accepts."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(folder, dest)
    weights = load_file(dest / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not drop(k)}, dest / "model.safetensors", metadata={"format": "pt"})
    return dest


def test_a_checkpoint_without_most_of_a_models_weights_is_refused(saved, tmp_path):
    """A BLIP retrieval checkpoint is a 'blip' model too, but has no caption decoder: loaded as a captioner,
    its decoder would be random. A checkpoint missing a sliver of the weights still loads, as in
    transformers."""
    from selfseg.models.blip import BlipCaptioner

    no_decoder = _without(saved / "blip", tmp_path / "no_decoder", lambda k: k.startswith("text_decoder."))
    with pytest.raises(ConfigError, match=r"lacks \d+ of the model's weights \(\d+% of its parameters"):
        BlipCaptioner.from_spec(ModelSpec(str(no_decoder), device="cpu"))
    one_bias = _without(saved / "blip", tmp_path / "one_bias", lambda k: k == "vision_model.post_layernorm.bias")
    assert BlipCaptioner.from_spec(ModelSpec(str(one_bias), device="cpu")).patch_size > 0
    whole = BlipCaptioner.from_spec(ModelSpec(str(saved / "blip"), device="cpu"))
    assert not whole.is_tiny and whole.model_id == str(saved / "blip")


def test_each_way_a_checkpoint_can_be_missing_has_its_own_line(saved, tmp_path, monkeypatch):
    from selfseg.models.blip import BlipCaptioner

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cases = {
        str(tmp_path / "no_such_folder"): "checkpoint folder .*no_such_folder does not exist",
        "org/blip image": "is neither a folder nor a Hugging Face model id",
    }
    for model_id, line in cases.items():
        with pytest.raises(ResourceMissingError, match=line):
            BlipCaptioner.from_spec(ModelSpec(model_id, device="cpu", cache_dir=str(tmp_path)))

    # Not cached: the revision asked for and the setting that keeps downloads off are named.
    with pytest.raises(ResourceMissingError, match=r"'org/blip' at revision 'v2' is not in the local cache and "
                                                   r"downloads are off .*selfseg download"):
        BlipCaptioner.from_spec(ModelSpec("org/blip@v2", device="cpu", cache_dir=str(tmp_path)))

    # Cached, but this transformers cannot read it: the cause, not "run selfseg download".
    cache = tmp_path / "hub"
    hub_cache(cache, "org/future", {"config.json": json.dumps({"model_type": "blip9_future"})})
    for offline in ("1", ""):  # online too: the hub would give the same files
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        monkeypatch.setattr("selfseg.models.loading.hub_reachable", lambda *a, **k: True)
        with pytest.raises(ResourceMissingError, match="'org/future' is in the local cache but could not be "
                                                       "loaded: .*blip9_future"):
            BlipCaptioner.from_spec(ModelSpec("org/future", device="cpu", cache_dir=str(cache)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    # A cut weights file is one line, not a safetensors traceback.
    cut = tmp_path / "cut"
    _without(saved / "blip", cut, lambda k: False)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ResourceMissingError, match=f"checkpoint at {cut} could not be read"):
        BlipCaptioner.from_spec(ModelSpec(str(cut), device="cpu"))


def test_a_cache_holding_part_of_a_checkpoint_is_completed_from_the_hub(tmp_path, monkeypatch):
    """The model-type check reads config.json ahead of the weights, so a first run's cache holds the config
    alone when the weights load: that run must go on to the hub, not report a cached checkpoint it cannot
    load (and offline, say that a download is incomplete)."""
    from selfseg.models import loading

    hub_cache(tmp_path, "org/blip", {"config.json": "{}"})
    spec = ModelSpec("org/blip", cache_dir=str(tmp_path))
    tried = []

    def load(local_only):
        tried.append(local_only)
        if local_only:
            raise OSError("org/blip does not appear to have a file named model.safetensors")
        return "weights"

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "hub_reachable", lambda *a, **k: True)
    assert loading.load_checkpoint("BLIP", spec, load) == "weights" and tried == [True, False]
    monkeypatch.setattr(loading, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(ResourceMissingError, match=r"only partly in the local cache \(.*model.safetensors\) and the "
                                                   "Hugging Face hub is not reachable; .*completes it"):
        loading.load_checkpoint("BLIP", spec, load)


def test_a_revision_is_pinned_in_the_model_id(tmp_path):
    assert split_revision("org/name@v1.0") == ("org/name", "v1.0")
    assert split_revision("org/name") == ("org/name", None)
    assert split_revision("@v1")[1] is None and split_revision("org/name@")[1] is None
    spec = ModelSpec(f"org/name@{COMMIT}")
    assert (spec.id, spec.revision, spec.name) == ("org/name", COMMIT, f"org/name@{COMMIT}")  # results say it
    assert ModelSpec("org/name", revision="v2").name == "org/name@v2" and ModelSpec("org/name").name == "org/name"
    assert ModelSpec("org/name@v1", revision="v1").revision == "v1"
    with pytest.raises(ConfigError, match="pins revision 'v1' but revision='v2'"):
        ModelSpec("org/name@v1", revision="v2")
    folder = tmp_path / "ckpt@v1"
    folder.mkdir()
    assert ModelSpec(str(folder)).id == str(folder) and ModelSpec(str(folder)).revision is None


def test_download_takes_the_pinned_revision_and_skips_local_folders(tmp_path, monkeypatch):
    from selfseg.resources import download_checkpoints

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, snapshot_download answers from the cache alone
    hub_cache(tmp_path, "org/name", {"config.json": "{}"}, refs=("v1",))
    folder = tmp_path / "mine"
    folder.mkdir()
    lines: list[str] = []
    assert download_checkpoints(["org/name@v1", str(folder)], cache_dir=str(tmp_path), log=lines.append) == []
    assert any(line.startswith("org/name@v1: cached at") and line.endswith(COMMIT) for line in lines)
    assert f"{folder}: a local folder, nothing to download" in lines
    assert download_checkpoints(["org/name@v2"], cache_dir=str(tmp_path), log=lines.append) == ["org/name@v2"]


def test_a_checkpoints_identity_follows_its_files(tmp_path):
    tiny = ModelSpec(TINY_MODEL).identity()
    assert tiny.startswith("tiny:") and tiny == ModelSpec(TINY_MODEL).identity()
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "generation_config.json").write_text('{"repetition_penalty": 1.0}')
    before = ModelSpec(str(folder)).identity()
    (folder / "generation_config.json").write_text('{"repetition_penalty": 1.05}')
    assert before.startswith("folder:") and ModelSpec(str(folder)).identity() != before
    after = ModelSpec(str(folder)).identity()
    (folder / ".cache").mkdir()  # a tool's bookkeeping (huggingface-cli download --local-dir)
    (folder / ".cache" / "x.lock").write_text("")
    (folder / "gone.json").symlink_to(folder / "missing.json")  # a broken link
    assert ModelSpec(str(folder)).identity() == after
    hub_cache(tmp_path, "org/name", {"config.json": "{}"})
    assert ModelSpec("org/name", cache_dir=str(tmp_path)).identity() == f"commit:{COMMIT}"
    assert ModelSpec("org/other@v3", cache_dir=str(tmp_path)).identity() == "revision:v3"  # not cached yet


def test_a_changed_checkpoint_is_asked_again_not_served_from_the_reply_cache(tmp_path):
    """The reply cache keyed the id alone: a new generation config (or snapshot) at the same id served the
    replies of the one before."""
    import numpy as np
    from PIL import Image

    from selfseg.cache import ReplyCache
    from selfseg.models import vlm
    from selfseg.models.chat import ChatRequest
    from selfseg.models.tiny import build_tiny_vlm

    folder = tmp_path / "vlm"
    model, processor = build_tiny_vlm(seed=1)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    image = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8"))
    requests = [ChatRequest.ask("list the objects", image)]

    def reply(cache):
        vlm._SHARED = vlm.SharedWeights()  # load the folder again, as a new process would
        return VisionChat(str(folder), device="cpu", max_new_tokens=12, cache=cache).chat(requests)[0]

    VisionChat = vlm.VisionChat
    db = tmp_path / "replies.sqlite"
    first = reply(ReplyCache(db))
    assert not first.cached and reply(ReplyCache(db)).cached
    config = folder / "generation_config.json"
    settings = json.loads(config.read_text()) if config.exists() else {}
    config.write_text(json.dumps({**settings, "repetition_penalty": 50.0}))
    fresh = reply(None)
    assert fresh.text != first.text  # the tiny model's reply follows the new setting
    again = reply(ReplyCache(db))
    assert not again.cached and again.text == fresh.text


def test_the_image_digest_reads_the_palette():
    from PIL import Image

    from selfseg.cache import image_digest

    a = Image.new("P", (4, 4), 1)
    a.putpalette([0, 0, 0, 255, 0, 0])
    b = a.copy()
    b.putpalette([0, 0, 0, 0, 0, 255])
    assert a.convert("RGB").tobytes() != b.convert("RGB").tobytes()
    assert image_digest(a) != image_digest(b) and image_digest(a) == image_digest(a.copy())


def test_a_reply_cache_that_cannot_be_written_still_serves_its_replies(tmp_path):
    """A shared cache the user may only read: a refused write turned the reads off too."""
    from selfseg.cache import ReplyCache

    cache = ReplyCache(tmp_path / "replies.sqlite")
    cache.put("a", "A")
    cache._db.execute("PRAGMA query_only = ON")  # sqlite refuses writes as for a read-only file
    with pytest.warns(UserWarning, match="cannot be written .* its replies are still used"):
        cache.put("b", "B")
    assert cache.unwritable and not cache.broken
    assert cache.get("a") == "A" and cache.get("b") is None


def test_loaded_chat_models_keep_the_dtypes_transformers_chose(tmp_path):
    """Some models keep modules in float32 under bfloat16 (MoE routers here); a cast of the whole model after
    loading undid that, so selfseg's weights differed from stock from_pretrained's."""
    from transformers import AutoModelForCausalLM, Glm4MoeConfig, Glm4MoeForCausalLM

    from selfseg.models.llm import ChatLM
    from selfseg.models.tiny import build_tiny_causal_lm

    _, tokenizer = build_tiny_causal_lm()
    config = Glm4MoeConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, n_routed_experts=4,
                           num_experts_per_tok=2, first_k_dense_replace=1, n_group=1, topk_group=1, head_dim=8)
    torch.manual_seed(0)
    folder = tmp_path / "moe"
    Glm4MoeForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    stock = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    ours = ChatLM(str(folder), device="cpu", dtype="bfloat16").model
    dtypes = {name: t.dtype for name, t in stock.state_dict().items()}
    assert torch.float32 in dtypes.values() and torch.bfloat16 in dtypes.values()
    assert {name: t.dtype for name, t in ours.state_dict().items()} == dtypes


def test_devices_this_machine_lacks_are_config_errors(monkeypatch):
    from selfseg.models.loading import resolve_device

    for name in ("meta", "xpu", "gpu"):
        with pytest.raises(ConfigError, match="expected 'auto', 'cpu', 'cuda\\[:N\\]' or 'mps'"):
            resolve_device(name)
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="MPS .* is not available"):
            resolve_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="'cuda:3' but this machine has 1 CUDA device"):
        resolve_device("cuda:3")


def test_behind_a_proxy_the_hub_client_is_left_to_reach_the_hub(monkeypatch):
    from selfseg.resources import hub_reachable

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    dialled = []
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: dialled.append(address) or
                        (_ for _ in ()).throw(OSError("refused")))
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080")
    assert not hub_reachable() and dialled == [("mirror.example", 8080)]
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub_reachable() and len(dialled) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no probe, no warning
        assert hub_reachable()


@pytest.mark.parametrize("builder", ["build_tiny_blip", "build_tiny_clipseg", "build_tiny_grounding_dino",
                                     "build_tiny_causal_lm", "build_tiny_sam2", "build_tiny_vlm"])
def test_tiny_models_touch_only_the_cpu_generator_and_restore_it(builder, monkeypatch):
    """Built on the CPU: neither the caller's CPU random state nor any GPU's generator is touched (saving a
    GPU's state makes a CUDA context there, in every torchrun rank)."""
    import torch

    from selfseg.models import tiny

    def no_gpu(*_a, **_k):
        pytest.fail("a GPU generator was read or seeded")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name in ("get_rng_state", "set_rng_state", "manual_seed_all", "manual_seed"):
        monkeypatch.setattr(torch.cuda, name, no_gpu)
    state = torch.random.get_rng_state()
    a, _ = getattr(tiny, builder)(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    b, _ = getattr(tiny, builder)(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _tf32_settings():
    from selfseg.models.loading import _precision_settings

    return [getattr(owner, name) for owner, name, _ in _precision_settings()]


@pytest.fixture
def user_tf32():
    """TF32 turned on the way transformers' tf32 option does it (torch's fp32_precision settings, where this
    torch has them); every setting put back afterwards."""
    from selfseg.models.loading import _precision_settings

    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in _precision_settings()]
    for owner, name, exact in _precision_settings():
        setattr(owner, name, "tf32" if isinstance(exact, str) else True)
    yield _tf32_settings()
    for owner, name, value in saved:
        setattr(owner, name, value)


@pytest.mark.parametrize("device, dtype, exact", [("cuda", torch.float32, True), ("cuda:1", torch.float32, True),
                                                  ("cuda", torch.bfloat16, False), ("cpu", torch.float32, False)])
def test_float32_work_on_a_gpu_runs_without_tf32(user_tf32, device, dtype, exact):
    """cuDNN convolutions default to TF32 on a GPU (10-bit inputs): float32 model calls and the BCC clustering
    turn it off for themselves, and put back what the user had (the settings are host flags, checked here
    without a GPU)."""
    from selfseg.models.loading import _precision_settings, model_call

    exact_values = [value for _, _, value in _precision_settings()]

    class Wrapper:
        def __init__(self):
            self.device, self.dtype = torch.device(device), dtype

        @model_call
        def forward(self):
            return _tf32_settings(), torch.is_inference_mode_enabled()

    assert Wrapper().forward() == ((exact_values if exact else user_tf32), True)
    assert _tf32_settings() == user_tf32


def test_overlapping_calls_from_two_threads_put_the_settings_back(user_tf32):
    import threading
    import time

    from selfseg.models.loading import _precision_settings, exact_float32

    exact_values = [value for _, _, value in _precision_settings()]
    seen = {}

    def call(name, wait):
        with exact_float32("cuda", torch.float32):
            time.sleep(wait)
            seen[name] = _tf32_settings()  # read as the call ends: the other may have left already

    threads = [threading.Thread(target=call, args=("A", 0.1)), threading.Thread(target=call, args=("B", 0.3))]
    threads[0].start()
    time.sleep(0.02)
    threads[1].start()
    for t in threads:
        t.join()
    assert seen == {"A": exact_values, "B": exact_values}
    assert _tf32_settings() == user_tf32


def test_a_path_that_holds_no_checkpoint_says_what_one_is(saved, tmp_path, capsys):
    """A file, an empty folder, a folder without config.json or without weights: transformers' own words
    were "not a valid JSON file" or "Should have a `model_type` key in its config.json", and the caption
    tagger's early check called a file "not in the local cache"."""
    import shutil

    from selfseg.cli import main
    from selfseg.models.blip import BlipCaptioner
    from selfseg.models.loading import check_available

    (tmp_path / "weights.safetensors").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "no_config").mkdir()
    shutil.copy(saved / "blip" / "model.safetensors", tmp_path / "no_config")
    (tmp_path / "no_weights").mkdir()
    shutil.copy(saved / "blip" / "config.json", tmp_path / "no_weights")
    expected = ("; expected a Hugging Face model id (owner/name) or a checkpoint folder holding config.json and the "
                "weights (as save_pretrained writes them)")
    for name, problem in (("weights.safetensors", "it is a file"), ("empty", "the folder is empty"),
                          ("no_config", "the folder has no config.json"),
                          ("no_weights", "the folder has config.json but no weights (model.safetensors, "
                                         "pytorch_model.bin or their shards)")):
        line = f"BLIP checkpoint at {tmp_path / name} could not be read: {problem}{expected}"
        for load in (lambda spec: BlipCaptioner.from_spec(spec), lambda spec: check_available("BLIP", spec)):
            with pytest.raises(ResourceMissingError) as err:
                load(ModelSpec(str(tmp_path / name), device="cpu"))
            assert str(err.value) == line

    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(photo)
    argv = ["tag", str(photo), "--config", "smoke", "--out", str(tmp_path / "out"), "-q"]
    assert main([*argv, f"model.blip={tmp_path / 'weights.safetensors'}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"selfseg: error: BLIP checkpoint at {tmp_path / 'weights.safetensors'} could not be read: " \
                      f"it is a file{expected}"
