"""The image-text-to-text chat wrapper with a tiny random-init Qwen2.5-VL built in code (replies are
meaningless noise): batching, determinism, the reply cache, the real from-a-folder loading path, and the
errors for checkpoints of the wrong kind."""
from __future__ import annotations

import pytest
from PIL import Image

from selfseg.cache import ReplyCache, image_digest
from selfseg.errors import ConfigError
from selfseg.models.chat import ChatRequest
from selfseg.models.llm import ChatLM
from selfseg.models.tiny import build_tiny_vlm
from selfseg.models.vlm import VisionChat


@pytest.fixture(scope="module")
def photos(ade_images):
    return [Image.open(p).convert("RGB") for p in ade_images[:2]]


def test_batched_greedy_replies_are_deterministic(photos):
    chat = VisionChat("tiny-random", device="cpu", batch_size=4, max_new_tokens=6)
    reqs = [ChatRequest.ask("list the objects", im) for im in photos] + [ChatRequest.ask("hello")]
    first = chat.chat(reqs)
    # the two image rows in ONE call; the text-only row in its own (never padded to image length)
    assert chat.generate_calls == 2 and chat.stats.rows_per_call == [2, 1] and len(first) == 3
    assert all(isinstance(r.text, str) and not r.cached for r in first)
    again = chat.chat(reqs)
    assert [r.text for r in again] == [r.text for r in first]  # greedy: same input, same reply
    # A row's reply does not depend on its batch neighbours (left padding, per-row images).
    alone = chat.chat([reqs[1]])
    assert alone[0].text == first[1].text


def test_rows_with_and_without_images_batch_separately():
    """batch_size rows per call with an image, text_batch_size without; replies stay on their requests."""
    from selfseg.models.chat import ChatModelBase

    class Echo(ChatModelBase):
        model_id, batch_size, text_batch_size, max_new_tokens, cache = "echo", 2, 8, 4, None

        def __init__(self):
            super().__init__()
            self.calls = []

        def _replies(self, requests):
            self.calls.append(["img" if r.image is not None else "txt" for r in requests])
            return [(r.turns[-1][1], False) for r in requests]

    img = Image.new("RGB", (8, 8))
    reqs = [ChatRequest.ask(f"q{i}", img if i % 5 == 0 else None) for i in range(25)]  # 5 images, 20 texts
    chat = Echo()
    replies = chat.chat(reqs)
    assert [r.text for r in replies] == [f"q{i}" for i in range(25)]
    assert [len(c) for c in chat.calls] == [2, 2, 1, 8, 8, 4]
    assert all(len(set(c)) == 1 for c in chat.calls)  # never mixed
    chat.text_batch_size = None  # unset: batch_size for every row
    chat.calls.clear()
    chat.chat(reqs)
    assert [len(c) for c in chat.calls] == [2, 2, 1] + [2] * 10


def test_multi_turn_conversation_runs(photos):
    chat = VisionChat("tiny-random", device="cpu", max_new_tokens=4)
    req = ChatRequest.ask("list the objects", photos[0])
    follow = req.then("[\"dog\"]", "check your list")
    assert follow.turns[1] == ("assistant", '["dog"]') and follow.image is photos[0]
    assert len(chat.chat([follow])) == 1


def test_cache_serves_reruns_and_keys_on_pixels(photos, tmp_path):
    cache = ReplyCache(tmp_path / "c.sqlite")
    chat = VisionChat("tiny-random", device="cpu", max_new_tokens=4, cache=cache)
    reqs = [ChatRequest.ask("list the objects", im) for im in photos]
    first = chat.chat(reqs)
    calls = chat.generate_calls
    # The same pixels in a new PIL object hit the cache; another prompt or image does not.
    copy = [ChatRequest.ask("list the objects", im.copy()) for im in photos]
    assert [r.text for r in chat.chat(copy)] == [r.text for r in first] and chat.generate_calls == calls
    assert cache.hits == 2
    chat.chat([ChatRequest.ask("list the animals", photos[0])])
    assert chat.generate_calls == calls + 1
    assert image_digest(photos[0]) != image_digest(photos[0].transpose(Image.FLIP_LEFT_RIGHT))


def test_unwritable_cache_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="reply cache .* cannot be opened"):
        ReplyCache(blocker / "sub" / "c.sqlite")


def test_loads_a_saved_checkpoint_through_the_auto_classes(tmp_path, photos):
    """The real loading path (AutoConfig check, AutoProcessor, AutoModelForImageTextToText) on a folder."""
    model, processor = build_tiny_vlm(seed=1)
    model.save_pretrained(tmp_path / "vlm")
    processor.save_pretrained(tmp_path / "vlm")
    chat = VisionChat(str(tmp_path / "vlm"), device="cpu", max_new_tokens=4)
    assert type(chat.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert len(chat.chat([ChatRequest.ask("list the objects", photos[0])])) == 1


def test_wrong_kind_of_checkpoint_names_what_was_expected(tmp_path):
    from transformers import CLIPSegConfig

    CLIPSegConfig().save_pretrained(tmp_path / "clipseg")
    with pytest.raises(ConfigError, match=r"vlm.model: .* is a 'clipseg' model; expected an image-text-to-text"):
        VisionChat(str(tmp_path / "clipseg"), device="cpu")
    model, processor = build_tiny_vlm()
    model.config.save_pretrained(tmp_path / "qwen-vl")
    with pytest.raises(ConfigError, match=r"vlm.llm: .* is a 'qwen2_5_vl' model; expected a causal"):
        ChatLM(str(tmp_path / "qwen-vl"), device="cpu", setting="vlm.llm")


def test_checkpoint_without_chat_template_is_refused(tmp_path):
    model, processor = build_tiny_vlm(seed=2)
    processor.chat_template = None
    processor.tokenizer.chat_template = None
    model.save_pretrained(tmp_path / "nochat")
    processor.save_pretrained(tmp_path / "nochat")
    with pytest.raises(ConfigError, match="no chat template"):
        VisionChat(str(tmp_path / "nochat"), device="cpu")


def test_text_only_lm_refuses_images(photos):
    lm = ChatLM("tiny-random", device="cpu", max_new_tokens=2)
    assert len(lm.chat([ChatRequest.ask("a", None).then("b", "c")])) == 1  # multi-turn, text only
    with pytest.raises(ValueError, match="text-only"):
        lm.chat([ChatRequest.ask("what is this", photos[0])])


def test_missing_checkpoint_offline_names_the_download_command(monkeypatch, tmp_path):
    from selfseg.errors import ResourceMissingError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ResourceMissingError, match=r"vision-language model checkpoint 'someone/no-such-vlm' .*"
                                                   r"selfseg download"):
        VisionChat("someone/no-such-vlm", device="cpu", cache_dir=str(tmp_path))


def test_a_cache_that_breaks_mid_run_is_dropped_not_fatal(photos, tmp_path):
    cache = ReplyCache(tmp_path / "c.sqlite")
    chat = VisionChat("tiny-random", device="cpu", max_new_tokens=2, cache=cache)
    cache._db.close()  # as if the file became unusable (locked NFS home, deleted, ...)
    with pytest.warns(UserWarning, match="going on without it"):
        replies = chat.chat([ChatRequest.ask("list the objects", photos[0])])
    assert len(replies) == 1 and cache.broken


def test_a_reply_cut_at_max_new_tokens_is_marked_and_one_the_model_ended_is_not():
    chat = ChatLM("tiny-random", device="cpu", max_new_tokens=6)
    reqs = [ChatRequest.ask("hello"), ChatRequest.ask("list the objects please")]
    start, out = chat.generate_batch(reqs)
    tokens = out[:, start:].tolist()
    assert all(r.truncated for r in chat.chat(reqs))  # noise never says its end-of-sequence token here
    # make the first row's second token the end of sequence: that row ends, the other runs to the limit
    config = chat.model.generation_config
    saved = config.eos_token_id
    config.eos_token_id = tokens[0][1]
    try:
        replies = chat.chat(reqs)
    finally:
        config.eos_token_id = saved
    assert [r.truncated for r in replies] == [False, tokens[0][1] not in tokens[1]]


def test_a_template_that_opens_think_gives_the_reply_its_opening_tag():
    """DeepSeek-R1's template ends with "<think>\\n": the model writes only "</think>", so a reply cut while
    reasoning must still read as reasoning (the tag parser then notes it ran out)."""
    from selfseg.tag.parse import parse_tags

    chat = ChatLM("tiny-random", device="cpu", max_new_tokens=4)
    req = ChatRequest.ask("list the objects")
    plain = chat.chat([req])[0].text
    tok = chat.tokenizer
    saved = tok.chat_template
    tok.chat_template = saved + "<think>\n"
    try:
        opened = chat.chat([req])[0].text
    finally:
        tok.chat_template = saved
    assert opened.startswith("<think>") and not plain.startswith("<think>")
    assert "the reply ended inside <think>; raise max_new_tokens" in parse_tags(opened + ' ["dog"]').notes


def test_a_full_cache_still_serves_its_replies(tmp_path):
    cache = ReplyCache(tmp_path / "c.sqlite")
    cache.put("a" * 64, "stored")
    pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
    cache._db.execute(f"PRAGMA max_page_count = {pages}")  # as a full disk: no page more
    with pytest.warns(UserWarning, match="cannot be written .*full"):
        cache.put("b" * 64, "x" * 100_000)
    assert cache.unwritable and not cache.broken
    assert cache.get("a" * 64) == "stored" and cache.get("b" * 64) is None


def test_an_image_the_processor_refuses_is_one_line_naming_its_size():
    chat = VisionChat("tiny-random", device="cpu", max_new_tokens=4)
    with pytest.raises(ValueError, match=r"tiny-random's processor refused the request \(3400x16\): absolute aspect"):
        chat.chat([ChatRequest.ask("list the objects", Image.new("RGB", (3400, 16)))])


def test_a_whole_reply_clears_a_cut_mark_another_writer_left(tmp_path):
    from selfseg.models.chat import ChatModelBase

    class Scripted(ChatModelBase):
        model_id, batch_size, max_new_tokens = "scripted", 4, 8

        def __init__(self, cut):
            super().__init__()
            self.cache, self.cut = ReplyCache(tmp_path / "c.sqlite"), cut

        def _replies(self, requests):
            return [("A dog on grass.", self.cut) for _ in requests]

    req = [ChatRequest.ask("describe")]
    assert Scripted(cut=True).chat(req)[0].truncated
    whole = Scripted(cut=False)
    whole.cache.get = lambda key: None  # another writer on the same file, which asked before the first stored
    assert not whole.chat(req)[0].truncated
    again = Scripted(cut=True)
    again._replies = None  # served from the cache: never asked
    [reply] = again.chat(req)
    assert reply.cached and not reply.truncated and len(again.cache) == 1


def test_clearing_an_absent_mark_holds_no_lock(tmp_path):
    import sqlite3

    cache = ReplyCache(tmp_path / "c.sqlite")
    cache.unmark("a" * 64 + ":cut")
    other = sqlite3.connect(str(tmp_path / "c.sqlite"), timeout=0)
    other.execute("INSERT INTO replies (key, reply) VALUES ('x', 'y')")  # "database is locked" if held
    other.commit()


def test_a_wrapper_with_only_generate_batch_still_chats():
    """prompt_text is optional: without it, a template's open <think> is not looked for."""
    from selfseg.models.chat import ChatModelBase

    inner = ChatLM("tiny-random", device="cpu", max_new_tokens=3)

    class Minimal(ChatModelBase):
        model_id, batch_size, max_new_tokens, cache = "minimal", 2, 3, None

        def __init__(self):
            super().__init__()
            self.tokenizer, self.model = inner.tokenizer, inner.model

        def generate_batch(self, requests, **kwargs):
            return inner.generate_batch(requests, **kwargs)

    [reply] = Minimal().chat([ChatRequest.ask("hello")])
    assert reply.text == inner.chat([ChatRequest.ask("hello")])[0].text and reply.truncated
