"""The chat models' fidelity on input-sensitive weights: a different image or prompt changes the reply
(so the other checks can fail), a row batched with left padding equals the same request run alone (greedy
reply and every step's logits), and selfseg's reply equals transformers' stock chat path (chat template ->
generate -> decode) on models built from the default checkpoints' published configurations
(tests/fixtures/qwen2.5-vl-3b-instruct, tests/fixtures/llama-2-7b-chat; see tests/fixtures/README.md) and on
tiny models of the other families VisionChat supports, each with its real processor classes (Gemma 3, LLaVA,
LLaVA-OneVision, Idefics3, SmolVLM). Weights are random: the replies are meaningless, only their equality is
tested."""
from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selfseg.models.chat import ChatRequest
from selfseg.models.llm import ChatLM
from selfseg.models.loading import spread_weights
from selfseg.models.vlm import VisionChat

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
STEPS = 8


def _photo(seed: int, h: int, w: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _step_logits(chat, requests):
    """Per request: (greedy reply token ids, (steps, vocab) float32 logits), from ONE generate call."""
    start, out = chat.generate_batch(requests, output_logits=True, return_dict_in_generate=True)
    logits = torch.stack(out.logits, 1).float()  # (rows, steps, vocab)
    rows = []
    for i in range(len(requests)):
        ids = out.sequences[i, start:].tolist()
        eos = chat.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        n = next((k + 1 for k, t in enumerate(ids) if t in eos), len(ids))  # steps up to and with EOS
        rows.append((ids[:n], logits[i, :n]))
    return rows


def _assert_rows_equal_alone(chat, requests):
    batched = _step_logits(chat, requests)
    worst = 0.0
    for req, (ids, logits) in zip(requests, batched):
        (alone_ids, alone_logits), = _step_logits(chat, [req])
        assert ids == alone_ids, f"reply of {req.turns[-1][1]!r} changed when batched"
        worst = max(worst, (logits - alone_logits).abs().max().item())
    assert worst < 1e-4, f"expected batched logits within 1e-4 of the row alone, got {worst:.2e}"
    return worst


# ------------------------------------------------------------------------ the tiny models (tiny-random)


@pytest.fixture(scope="module")
def vlm():
    return VisionChat("tiny-random", device="cpu", dtype="float32", batch_size=8, max_new_tokens=STEPS)


@pytest.fixture(scope="module")
def lm():
    return ChatLM("tiny-random", device="cpu", dtype="float32", batch_size=8, max_new_tokens=STEPS)


def _first_logits(chat, request):
    (_, logits), = _step_logits(chat, [request])
    return logits[0]


def test_tiny_vlm_depends_on_the_image_and_the_prompt(vlm):
    a, b = _photo(1, 90, 150), _photo(2, 90, 150)
    base = ChatRequest.ask("list the objects in the picture", a)
    other_image = ChatRequest.ask("list the objects in the picture", b)
    other_prompt = ChatRequest.ask("name the animals near the road", a)
    assert vlm.tokenizer.tokenize(base.turns[0][1]) != vlm.tokenizer.tokenize(other_prompt.turns[0][1])
    x = _first_logits(vlm, base)
    assert (x - _first_logits(vlm, other_image)).abs().max() > 0.1  # float noise is ~1e-6
    assert (x - _first_logits(vlm, other_prompt)).abs().max() > 0.1
    replies = [r.text for r in vlm.chat([base, other_image, other_prompt])]
    assert len(set(replies)) == 3, replies


def test_tiny_lm_depends_on_the_prompt(lm):
    a, b = ChatRequest.ask("a cat on the road"), ChatRequest.ask("the sky above a tree")
    assert (_first_logits(lm, a) - _first_logits(lm, b)).abs().max() > 0.1
    ra, rb = lm.reply(["a cat on the road", "the sky above a tree"])
    assert ra != rb


def test_tiny_weights_follow_the_seed():
    from selfseg.models.tiny import build_tiny_causal_lm

    flat = lambda m: torch.cat([p.flatten() for p in m.parameters()])
    assert torch.equal(flat(build_tiny_causal_lm(3)[0]), flat(build_tiny_causal_lm(3)[0]))
    assert not torch.equal(flat(build_tiny_causal_lm(3)[0]), flat(build_tiny_causal_lm(4)[0]))


def test_vlm_rows_with_images_equal_each_row_alone(vlm):
    # different image sizes (4 to 16 merged patches) and prompts of very different lengths
    reqs = [ChatRequest.ask("list the objects", _photo(3, 56, 56)),
            ChatRequest.ask("describe every object you can see in the picture, the people, the animals, the "
                            "buildings, the sky, the road, the trees and the water, one by one", _photo(4, 112, 112)),
            ChatRequest.ask("a dog", _photo(5, 60, 110)).then("a cat on the road", "and the sky")]
    _assert_rows_equal_alone(vlm, reqs)


def test_vlm_text_only_rows_equal_each_row_alone(vlm):
    reqs = [ChatRequest.ask("a dog"),
            ChatRequest.ask("describe the road, the trees, the sky, the people, the cars and the buildings of "
                            "a city street seen from a car window in the rain at night"),
            ChatRequest.ask("the sky").then("a tree", "and the grass")]
    _assert_rows_equal_alone(vlm, reqs)


def test_lm_rows_equal_each_row_alone(lm):
    reqs = [ChatRequest.ask("dog"),
            ChatRequest.ask("a photo of a street with a car, a bus, a person on a bicycle, a traffic light, a "
                            "building, the sky, some trees and the road itself, seen from above"),
            ChatRequest.ask("the sky").then("a tree", "and the grass")]
    _assert_rows_equal_alone(lm, reqs)


# ------------------------------------------------- the default checkpoints' configurations, same weights


def _fixture(name: str, file: str) -> dict:
    return json.loads((FIXTURES / name / file).read_text(encoding="utf-8"))


def _shrink(n: int, factor: int) -> int:
    return max(1, n // factor)


def _byte_level_vocab() -> dict:
    from tokenizers.pre_tokenizers import ByteLevel

    return {s: i for i, s in enumerate(sorted(ByteLevel.alphabet()))}


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    """Qwen2.5-VL-3B-Instruct's published processor, tokenizer settings, chat format and generation config,
    with a shrunk random model (2 text layers of 64, 4 vision blocks of 64) and a byte-level vocabulary of
    256 symbols plus Qwen's special tokens (so token ids differ from the real ones)."""
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    name = "qwen2.5-vl-3b-instruct"
    cfg, tcfg = _fixture(name, "config.json"), _fixture(name, "tokenizer_config.json")
    pcfg, gcfg = _fixture(name, "preprocessor_config.json"), _fixture(name, "generation_config.json")
    tok = Qwen2Tokenizer(vocab=_byte_level_vocab(), merges=[], bos_token=tcfg["bos_token"],
                         eos_token=tcfg["eos_token"], pad_token=tcfg["pad_token"], unk_token=tcfg["unk_token"],
                         errors=tcfg["errors"], model_max_length=tcfg["model_max_length"],
                         clean_up_tokenization_spaces=tcfg["clean_up_tokenization_spaces"])
    tok.add_special_tokens({"additional_special_tokens": tcfg["special_tokens"]})
    tok.chat_template = tcfg["chat_template"]
    ids = {t: tok.convert_tokens_to_ids(t) for t in tcfg["special_tokens"]}
    image_processor = Qwen2VLImageProcessor(**{k: pcfg[k] for k in ("min_pixels", "max_pixels", "patch_size",
                                                                    "temporal_patch_size", "merge_size",
                                                                    "image_mean", "image_std")})
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tok,
                                    video_processor=Qwen2VLVideoProcessor(), chat_template=tcfg["chat_template"])
    v, f = cfg["vision_config"], 32  # hidden sizes / 32, layers / 8 (vision) and / 18 (text)
    hidden, heads = _shrink(cfg["hidden_size"], f), 4
    head_dim = hidden // heads
    section = [s * (head_dim // 2) // sum(cfg["rope_scaling"]["mrope_section"])
               for s in cfg["rope_scaling"]["mrope_section"]]  # [16, 24, 24] of 64 -> [2, 3, 3] of 8
    depth = v["depth"] // 8
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=hidden,
                         intermediate_size=_shrink(cfg["intermediate_size"], f),
                         num_hidden_layers=cfg["num_hidden_layers"] // 18, num_attention_heads=heads,
                         num_key_value_heads=heads * cfg["num_key_value_heads"] // cfg["num_attention_heads"] or 1,
                         hidden_act=cfg["hidden_act"], rms_norm_eps=cfg["rms_norm_eps"],
                         max_position_embeddings=cfg["max_position_embeddings"],
                         sliding_window=cfg["sliding_window"], use_sliding_window=cfg["use_sliding_window"],
                         rope_parameters={"rope_type": "default", "rope_theta": cfg["rope_theta"],
                                          "mrope_section": section},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=cfg["tie_word_embeddings"]),
        vision_config=dict(depth=depth, hidden_size=_shrink(v["hidden_size"], 20), num_heads=heads,
                           intermediate_size=_shrink(v["intermediate_size"], 20), out_hidden_size=hidden,
                           hidden_act=v["hidden_act"], patch_size=v["patch_size"],
                           spatial_merge_size=v["spatial_merge_size"], temporal_patch_size=v["temporal_patch_size"],
                           tokens_per_second=v["tokens_per_second"], window_size=v["window_size"],
                           # every 8th block attends globally: blocks 7, 15, 23, 31 of 32 -> block 3 of 4
                           fullatt_block_indexes=[i // 8 for i in v["fullatt_block_indexes"] if i // 8 < depth]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=cfg["tie_word_embeddings"])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = spread_weights(Qwen2_5_VLForConditionalGeneration(config), seed=0)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"], **{k: gcfg[k] for k in ("do_sample", "repetition_penalty",
                                                                    "temperature", "top_k", "top_p")})
    out = tmp_path_factory.mktemp("qwen2.5-vl")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """Llama-2-7b-chat's published tokenizer settings, chat format and generation config, with a shrunk
    random model (2 layers of 64) and a real LlamaTokenizer over a tiny vocabulary (<unk> <s> </s>, the 256
    byte-fallback pieces, then "▁" and the printable ASCII characters)."""
    return _llama_like(tmp_path_factory, "llama-2-chat", template=_fixture("llama-2-7b-chat",
                                                                           "tokenizer_config.json")["chat_template"])


# HuggingFaceH4/zephyr-7b-beta's chat format (TinyLlama-1.1B-Chat uses it too): it writes no BOS, while the
# Llama tokenizer under it adds one to plain text.
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}"
    "\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")


@pytest.fixture(scope="module")
def zephyr_dir(tmp_path_factory):
    """The same shrunk model and tokenizer with Zephyr's chat format: a template without BOS."""
    return _llama_like(tmp_path_factory, "zephyr", template=ZEPHYR_TEMPLATE)


@pytest.fixture(scope="module")
def base_lm_dir(tmp_path_factory):
    """The same shrunk model and tokenizer with no chat template at all: a base language model."""
    return _llama_like(tmp_path_factory, "base-lm")


def _llama_like(tmp_path_factory, folder: str, template: str | None = None) -> Path:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    name = "llama-2-7b-chat"
    cfg, tcfg, gcfg = (_fixture(name, f) for f in ("config.json", "tokenizer_config.json", "generation_config.json"))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}  # the real ids of Llama's three special tokens
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for c in ["\u2581"] + list(string.ascii_letters + string.digits + string.punctuation):
        vocab.setdefault(c, len(vocab))
    tok = LlamaTokenizer(vocab=vocab, merges=[], **{k: tcfg[k] for k in (
        "add_bos_token", "add_eos_token", "legacy", "bos_token", "eos_token", "unk_token", "pad_token",
        "padding_side", "clean_up_tokenization_spaces", "model_max_length")})
    tok.chat_template = template
    f = 64
    config = LlamaConfig(vocab_size=len(tok), hidden_size=cfg["hidden_size"] // f,
                         intermediate_size=cfg["intermediate_size"] // f, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4,  # 32 / 32: plain multi-head attention
                         **{k: cfg[k] for k in ("hidden_act", "rms_norm_eps", "max_position_embeddings",
                                                "bos_token_id", "eos_token_id", "tie_word_embeddings",
                                                "attention_bias", "mlp_bias")},
                         rope_parameters={"rope_type": "default", "rope_theta": cfg["rope_theta"]})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = spread_weights(LlamaForCausalLM(config), seed=1)
    model.generation_config = GenerationConfig(**gcfg)
    out = tmp_path_factory.mktemp(folder)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _with_image(messages, image):
    """selfseg's messages with the picture itself in the image entry, as the stock processor takes it."""
    return [{**m, "content": [{**c, "image": image} if c["type"] == "image" else c for c in m["content"]]}
            for m in messages]


def _stock_reply(model, processor, messages, max_new_tokens):
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")
    out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
    return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()


def test_vlm_replies_equal_the_stock_chat_path_on_qwen25_vl_settings(qwen_dir, ade_images):
    from transformers import AutoProcessor

    chat = VisionChat(str(qwen_dir), device="cpu", dtype="float32", batch_size=4, max_new_tokens=STEPS)
    stock = AutoProcessor.from_pretrained(qwen_dir)  # untouched: selfseg's copy is set to left padding
    assert type(stock.image_processor).__name__.startswith("Qwen2VLImageProcessor")
    size = stock.image_processor.size  # min_pixels / max_pixels, as transformers stores them
    assert (size["shortest_edge"], size["longest_edge"]) == (3136, 12845056)
    photos = [Image.open(p).convert("RGB") for p in ade_images[:2]]
    photos = [photos[0].resize((320, 240)), photos[1].resize((200, 300))]  # two sizes: different token counts
    reqs = [ChatRequest.ask("List the objects in this image.", photos[0]),
            ChatRequest.ask("List the objects in this image.", photos[1]),
            ChatRequest.ask("Describe it.", photos[0]),
            ChatRequest.ask("What is a car?"),
            ChatRequest.ask("A dog.").then("Yes.", "And a cat, two birds and a horse in the field?")]
    ours = [r.text for r in chat.chat(reqs)]
    assert chat.stats.rows_per_call == [3, 2]  # batched: left-padded rows of different lengths
    with torch.inference_mode():
        ref = [_stock_reply(chat.model, stock, _with_image(chat._messages(r), r.image), STEPS) for r in reqs]
    assert ours == ref
    assert len(set(ref[:3])) == 3, ref  # another image or prompt -> another reply: the equality is not vacuous
    # The stock template put Qwen's default system turn first; selfseg's prompt went through the same one.
    text = stock.apply_chat_template(chat._messages(reqs[3]), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")


def test_lm_replies_equal_the_stock_chat_path_on_llama2_chat_settings(llama_dir):
    from transformers import AutoTokenizer

    lm = ChatLM(str(llama_dir), device="cpu", dtype="float32", batch_size=4, max_new_tokens=STEPS)
    stock = AutoTokenizer.from_pretrained(llama_dir)
    assert stock.padding_side == "right" and stock.pad_token is None  # as published; selfseg pads left itself
    reqs = [ChatRequest.ask("To which class is 'puppy' most similar?"),
            ChatRequest.ask("To which class in the list ['dog', 'cat', 'car', 'bus', 'person', 'sofa'] is "
                            "'kitten' exclusively most similar to?"),
            ChatRequest.ask("Hi.").then("Hello.", "Name a bird.")]
    ours = [r.text for r in lm.chat(reqs)]
    assert lm.stats.rows_per_call == [3]
    with torch.inference_mode():
        ref = [_stock_reply(lm.model, stock, [{"role": r, "content": t} for r, t in q.turns], STEPS) for q in reqs]
    assert ours == ref
    assert len(set(ref)) == 3, ref
    # Llama-2's template writes <s> itself: no second BOS from the tokenizer
    ids = stock.apply_chat_template([{"role": "user", "content": "Hi."}], tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert ids[:2] != [1, 1] and ids[0] == 1


def _prompt_ids(lm: ChatLM, requests) -> list[list[int]]:
    """The unpadded prompt ids of each row of one generate call of `lm`."""
    seen = {}
    generate = lm.model.generate

    def spy(**kw):
        seen.update(ids=kw["input_ids"], mask=kw["attention_mask"])
        return generate(**kw)

    lm.model.generate = spy
    try:
        lm.generate_batch(requests)
    finally:
        del lm.model.generate
    return [ids[m.bool()].tolist() for ids, m in zip(seen["ids"], seen["mask"])]


def test_lm_takes_a_template_without_bos_as_the_stock_chat_path_does(zephyr_dir):
    from transformers import AutoTokenizer

    lm = ChatLM(str(zephyr_dir), device="cpu", dtype="float32", batch_size=4, max_new_tokens=STEPS)
    stock = AutoTokenizer.from_pretrained(zephyr_dir)
    assert stock.bos_token == "<s>" and stock("Hi.")["input_ids"][0] == stock.bos_token_id  # BOS on plain text
    reqs = [ChatRequest.ask("Name a bird."), ChatRequest.ask("To which class is 'puppy' most similar?"),
            ChatRequest.ask("Hi.").then("Hello.", "Name a fish.")]
    messages = [[{"role": r, "content": t} for r, t in q.turns] for q in reqs]
    want = [stock.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
            for m in messages]
    assert _prompt_ids(lm, reqs) == want
    assert all(ids[0] != stock.bos_token_id for ids in want)  # the template wrote no BOS, and none was added
    ours = [r.text for r in lm.chat(reqs)]
    with torch.inference_mode():
        ref = [_stock_reply(lm.model, stock, m, STEPS) for m in messages]
    assert ours == ref
    assert len(set(ref)) == 3, ref
    # Cached replies made with a BOS added to such a template are not read back as this prompt's.
    assert all(lm.prompt_key(r) == {"bos": "as templated"} for r in reqs)


def test_prompts_whose_tokens_are_as_before_keep_their_cache_keys(llama_dir, base_lm_dir):
    for folder in (llama_dir, base_lm_dir):  # a template that writes BOS; no template
        lm = ChatLM(str(folder), device="cpu", dtype="float32", batch_size=4, max_new_tokens=STEPS)
        assert lm.prompt_key(ChatRequest.ask("Name a bird.")) == {}


def test_a_base_lm_gets_the_tokenizers_own_special_tokens(base_lm_dir):
    from transformers import AutoTokenizer

    lm = ChatLM(str(base_lm_dir), device="cpu", dtype="float32", batch_size=4, max_new_tokens=STEPS)
    stock = AutoTokenizer.from_pretrained(base_lm_dir)
    assert not stock.chat_template
    reqs = [ChatRequest.ask("Name a bird."), ChatRequest.ask("Hi.").then("Hello.", "Name a fish.")]
    texts = ["Name a bird.", "Hi.\n\nHello.\n\nName a fish."]  # the turns as plain text, the last one last
    want = [stock(t)["input_ids"] for t in texts]
    assert _prompt_ids(lm, reqs) == want and all(ids[0] == stock.bos_token_id for ids in want)
    ours = [r.text for r in lm.chat(reqs)]
    ref = []
    with torch.inference_mode():
        for t in texts:
            enc = stock(t, return_tensors="pt")
            out = lm.model.generate(**enc, do_sample=False, max_new_tokens=STEPS)
            ref.append(stock.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip())
    assert ours == ref
    assert len(set(ref)) == 2, ref


@pytest.fixture(scope="module")
def gemma3_dir(tmp_path_factory):
    """A shrunk random Gemma 3 with a real Gemma3Processor over a byte-fallback vocabulary and a short
    Gemma-style chat template. Gemma 3 is the family that reads the processor's token_type_ids: its image
    tokens attend to each other both ways while it generates."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
        GemmaTokenizer,
        GenerationConfig,
    )

    special = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, **{t: 4 + i for i, t in enumerate(special)}}
    vocab.update({f"<0x{b:02X}>": len(vocab) + b for b in range(256)})
    for c in ["\u2581"] + list(string.ascii_letters + string.digits + string.punctuation):
        vocab.setdefault(c, len(vocab))
    template = ("{{ bos_token }}{% for m in messages %}<start_of_turn>"
                "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<start_of_image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
                "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
    tok = GemmaTokenizer(vocab=vocab, merges=[], bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                         unk_token="<unk>", extra_special_tokens={"boi_token": "<start_of_image>",
                                                                  "eoi_token": "<end_of_image>",
                                                                  "image_token": "<image_soft_token>"})
    tok.add_special_tokens({"additional_special_tokens": special})
    tok.chat_template = template
    images = Gemma3ImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = Gemma3Processor(image_processor=images, tokenizer=tok, chat_template=template, image_seq_length=4)
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    config = Gemma3Config(
        text_config=dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, head_dim=16, sliding_window=512,
                         max_position_embeddings=2048),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=64, patch_size=16),
        mm_tokens_per_image=4, boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = spread_weights(Gemma3ForConditionalGeneration(config), seed=0)
    model.generation_config = GenerationConfig(bos_token_id=2, eos_token_id=[1, ids["<end_of_turn>"]],
                                               pad_token_id=0)
    out = tmp_path_factory.mktemp("gemma3")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def test_vlm_passes_gemma3_its_token_types_as_the_stock_chat_path_does(gemma3_dir):
    """The stock processor marks Gemma 3's image tokens in token_type_ids; without them the image tokens
    attend only backwards. selfseg's first-step logits equal the stock path's, which differ from the same
    path without the marks (so the comparison can fail)."""
    from transformers import AutoProcessor

    chat = VisionChat(str(gemma3_dir), device="cpu", dtype="float32", batch_size=2, max_new_tokens=STEPS)
    stock = AutoProcessor.from_pretrained(gemma3_dir)
    reqs = [ChatRequest.ask("List the objects.", _photo(1, 64, 64)), ChatRequest.ask("Name things.", _photo(2, 64, 64))]
    rows = _step_logits(chat, reqs)
    for req, (_, logits) in zip(reqs, rows):
        inputs = stock.apply_chat_template(_with_image(chat._messages(req), req.image), add_generation_prompt=True,
                                           tokenize=True, return_dict=True, return_tensors="pt")
        assert "token_type_ids" in inputs
        with torch.inference_mode():
            ref = chat.model(**inputs).logits[0, -1]
            unmarked = chat.model(**{k: v for k, v in inputs.items() if k != "token_type_ids"}).logits[0, -1]
        assert (ref - unmarked).abs().max().item() > 1e-3  # the marks matter to this model
        assert (logits[0] - ref).abs().max().item() < 1e-4


# ----------------------------- the other families VisionChat claims: two rows of one call vs the stock chat path


def _byte_fallback_vocab(specials: list[str]) -> dict:
    """<unk> <s> </s>, then `specials`, the 256 byte-fallback pieces, "▁" and the printable ASCII characters."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{t: 3 + i for i, t in enumerate(specials)}}
    base = len(vocab)
    vocab.update({f"<0x{b:02X}>": base + b for b in range(256)})
    for c in ["\u2581"] + list(string.ascii_letters + string.digits + string.punctuation):
        vocab.setdefault(c, len(vocab))
    return vocab


def _save(model, processor, generation, tmp_path_factory, name: str) -> Path:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = spread_weights(model, seed=0)
    model.generation_config = generation
    out = tmp_path_factory.mktemp(name)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _tiny_text(model_type: str, vocab_size: int, **extra) -> dict:
    return dict(model_type=model_type, vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                **extra)


_TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                    patch_size=8)


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    """A shrunk random LLaVA-1.5 with a real LlavaProcessor: a CLIP tower read at its second-to-last layer
    with the CLS token dropped ("default" strategy), a Llama text model, and LLaVA-1.5's "USER: <image>\\n...
    ASSISTANT:" template, which writes no <s> (the tokenizer adds it)."""
    from transformers import (
        CLIPImageProcessor,
        GenerationConfig,
        LlamaTokenizer,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    vocab = _byte_fallback_vocab(["<image>", "<pad>"])
    tok = LlamaTokenizer(vocab=vocab, merges=[], bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                         pad_token="<pad>", add_bos_token=True, legacy=False)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    template = ("{% for m in messages %}{{ m['role'].upper() + ': ' }}"
                "{% for c in m['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
                "{% for c in m['content'] | selectattr('type', 'equalto', 'text') %}{{ c['text'] + ' ' }}{% endfor %}"
                "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
    tok.chat_template = template
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=8, num_additional_image_tokens=1,
                               vision_feature_select_strategy="default", chat_template=template)
    config = LlavaConfig(vision_config=dict(model_type="clip_vision_model", projection_dim=32, **_TINY_VISION),
                         text_config=_tiny_text("llama", len(tok), pad_token_id=vocab["<pad>"]),
                         image_token_index=vocab["<image>"], image_seq_length=16,
                         vision_feature_select_strategy="default", vision_feature_layer=-2)
    return _save(LlavaForConditionalGeneration(config), processor,
                 GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=vocab["<pad>"]), tmp_path_factory,
                 "llava")


@pytest.fixture(scope="module")
def llava_onevision_dir(tmp_path_factory):
    """A shrunk random LLaVA-OneVision with a real LlavaOnevisionProcessor: a SigLIP tower of 4x4 patches, anyres
    tiling over a grid of 32-px tiles (so each image's aspect ratio sets its tile count and token count), a Qwen2
    text model and OneVision's "<|im_start|>user <image>\\n..." template."""
    from transformers import (
        GenerationConfig,
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Tokenizer,
    )

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tok = Qwen2Tokenizer(vocab=_byte_level_vocab(), merges=[], bos_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", unk_token=None)
    tok.add_special_tokens({"additional_special_tokens": special})
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + ' ' }}"
                "{% for c in m['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
                "{% for c in m['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + c['text'] }}{% endfor %}"
                "{{ '<|im_end|>\n' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    tok.chat_template = template
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64], [32, 96], [96, 32]]
    images = LlavaOnevisionImageProcessor(size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints,
                                          image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = LlavaOnevisionProcessor(image_processor=images, tokenizer=tok,
                                        video_processor=LlavaOnevisionVideoProcessor(), num_image_tokens=16,
                                        vision_feature_select_strategy="full", chat_template=template)
    config = LlavaOnevisionConfig(vision_config=dict(model_type="siglip_vision_model", **_TINY_VISION),
                                  text_config=_tiny_text("qwen2", len(tok)), image_token_index=ids["<image>"],
                                  video_token_index=ids["<video>"], image_grid_pinpoints=pinpoints,
                                  vision_feature_select_strategy="full", vision_feature_layer=-1)
    return _save(LlavaOnevisionForConditionalGeneration(config), processor,
                 GenerationConfig(eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                                  pad_token_id=ids["<|endoftext|>"]), tmp_path_factory, "llava-onevision")


def _idefics3_style_dir(tmp_path_factory, family: str) -> Path:
    """A shrunk random Idefics3 or SmolVLM with its real processor: each image is resized to at most 64 px and
    split into 32-px tiles plus the whole image (so rows of one call carry different numbers of tiles, padded
    with blank ones), 4 tokens per tile after the pixel shuffle, and the "User:<image>...<end_of_utterance>\\n
    Assistant:" template, which writes the BOS token itself."""
    import transformers
    from transformers import GenerationConfig

    smol = family == "smolvlm"
    prefix = "SmolVLM" if smol else "Idefics3"
    bos = "<|im_start|>" if smol else "<|begin_of_text|>"
    tiles = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    special = [bos, "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>", *tiles, "<|pad|>"]
    vocab = _byte_fallback_vocab(special)
    tok = transformers.LlamaTokenizer(vocab=vocab, merges=[], bos_token=bos, eos_token="<end_of_utterance>",
                                      unk_token="<unk>", pad_token="<|pad|>", add_bos_token=True, legacy=False)
    tok.add_special_tokens({"additional_special_tokens": special})
    template = (bos + "{% for m in messages %}{{ m['role'] | capitalize }}"
                "{% if m['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
                "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
                "{% elif c['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
                "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
    tok.chat_template = template
    images = getattr(transformers, f"{prefix}ImageProcessor")(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True,
        image_mean=[0.5] * 3, image_std=[0.5] * 3)
    extra = {"video_processor": transformers.SmolVLMVideoProcessor()} if smol else {}
    processor = getattr(transformers, f"{prefix}Processor")(image_processor=images, tokenizer=tok, image_seq_len=4,
                                                            chat_template=template, **extra)
    config = getattr(transformers, f"{prefix}Config")(
        vision_config=_TINY_VISION, text_config=_tiny_text("llama", len(tok), pad_token_id=vocab["<|pad|>"]),
        image_token_id=vocab["<image>"], scale_factor=2)
    model = getattr(transformers, f"{prefix}ForConditionalGeneration")(config)
    return _save(model, processor, GenerationConfig(bos_token_id=vocab[bos], eos_token_id=[vocab["<end_of_utterance>"]],
                                                    pad_token_id=vocab["<|pad|>"]), tmp_path_factory, family)


@pytest.fixture(scope="module")
def idefics3_dir(tmp_path_factory):
    return _idefics3_style_dir(tmp_path_factory, "idefics3")


@pytest.fixture(scope="module")
def smolvlm_dir(tmp_path_factory):
    pytest.importorskip("num2words")  # SmolVLMProcessor refuses to build without it
    return _idefics3_style_dir(tmp_path_factory, "smolvlm")


def _assert_rows_equal_the_stock_chat_path(folder: Path, sizes: list[tuple[int, int]]) -> dict:
    """Two requests (different pictures of `sizes` (h, w), prompts of different lengths) in ONE VisionChat
    generate call; each row's greedy reply and every step's logits equal transformers' stock chat path for
    that request alone, and another picture of the same size moves the stock path's first logits (so the
    comparison can fail). Returns the stock inputs' pixel_values shapes, for the families' own checks."""
    from transformers import AutoProcessor

    chat = VisionChat(str(folder), device="cpu", dtype="float32", batch_size=2, max_new_tokens=STEPS)
    stock = AutoProcessor.from_pretrained(folder)  # untouched: selfseg's copy is set to left padding
    reqs = [ChatRequest.ask("List the objects.", _photo(1, *sizes[0])),
            ChatRequest.ask("Describe every object in the picture, one by one, please.", _photo(2, *sizes[1]))]
    rows = _step_logits(chat, reqs)
    eos = chat.model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    lengths, pixels, worst = [], [], 0.0
    def inputs(req, image):
        return stock.apply_chat_template(_with_image(chat._messages(req), image), add_generation_prompt=True,
                                         tokenize=True, return_dict=True, return_tensors="pt")

    for n, (req, (ids, logits)) in enumerate(zip(reqs, rows)):
        alone = inputs(req, req.image)
        with torch.inference_mode():
            out = chat.model.generate(**alone, do_sample=False, max_new_tokens=STEPS, output_logits=True,
                                      return_dict_in_generate=True)
            other = chat.model(**inputs(req, _photo(10 + n, *sizes[n]))).logits[0, -1]
        ref_ids = out.sequences[0, alone["input_ids"].shape[1]:].tolist()
        ref_ids = ref_ids[:next((k + 1 for k, t in enumerate(ref_ids) if t in eos), len(ref_ids))]
        ref = torch.stack(out.logits, 1)[0, :len(ref_ids)].float()
        assert ids == ref_ids, f"reply of {req.turns[0][1]!r}: {ids} batched, {ref_ids} by the stock path"
        worst = max(worst, (logits - ref).abs().max().item())
        assert (ref[0] - other).abs().max().item() > 0.1  # the picture matters to this model
        lengths.append(alone["input_ids"].shape[1])
        pixels.append(tuple(alone["pixel_values"].shape))
    assert lengths[0] != lengths[1]  # the shorter row was left-padded in the batched call
    assert worst < 1e-4, f"expected logits within 1e-4 of the stock chat path, got {worst:.2e}"
    return {"pixel_values": pixels}


def test_vlm_rows_equal_the_stock_chat_path_on_llava(llava_dir):
    _assert_rows_equal_the_stock_chat_path(llava_dir, [(40, 60), (80, 50)])


def test_vlm_rows_equal_the_stock_chat_path_on_llava_onevision(llava_onevision_dir):
    # a wide and a tall picture: anyres tiles them 1x3 and 2x2 (+ the base image), with different token counts
    shapes = _assert_rows_equal_the_stock_chat_path(llava_onevision_dir, [(40, 90), (70, 50)])["pixel_values"]
    assert shapes[0][1] != shapes[1][1], shapes


@pytest.mark.parametrize("family", ["idefics3_dir", "smolvlm_dir"])
def test_vlm_rows_equal_the_stock_chat_path_on_idefics3(family, request):
    # a wide picture splits into 1x2 tiles + the whole image, a square one into 2x2 + the whole image
    shapes = _assert_rows_equal_the_stock_chat_path(request.getfixturevalue(family),
                                                    [(30, 100), (80, 80)])["pixel_values"]
    assert (shapes[0][1], shapes[1][1]) == (3, 5), shapes
