"""The suite's warning policy (tests/conftest.py): a deprecation that transformers or torch raises from
selfseg's own call is an error; one raised from anyone else's call stays a warning."""
from __future__ import annotations

import warnings

import pytest
import torch


def _as_module(module: str, source: str, namespace: dict) -> dict:
    """Run `source` as code of `module` (what the stack walk sees); returns its namespace."""
    scope = {"__name__": module, **namespace}
    exec(compile(source, f"<{module}>", "exec"), scope)
    return scope


# A deprecated keyword in "transformers" code, reached as models are: through torch's nn.Module.__call__.
_LIB = _as_module("transformers.models.example", """
import warnings
def forward(self, x, old_keyword=None):
    if old_keyword is not None:
        warnings.warn("`old_keyword` is deprecated; use `new_keyword`", FutureWarning, stacklevel=2)
    return x
""", {})
Model = type("Model", (torch.nn.Module,), {"forward": _LIB["forward"]})
CALL = "model(torch.zeros(2), old_keyword=1)"


def test_a_transformers_deprecation_from_a_selfseg_call_is_an_error():
    with pytest.raises(FutureWarning, match="old_keyword"):
        _as_module("selfseg.models.example", CALL, dict(model=Model(), torch=torch))


def test_the_same_deprecation_from_other_code_stays_a_warning():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _as_module("someone_else", CALL, dict(model=Model(), torch=torch))
    assert any(issubclass(w.category, FutureWarning) and "old_keyword" in str(w.message) for w in seen)


def test_a_real_transformers_deprecation_is_caught_too():
    from transformers import BlipTextConfig
    from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

    att = BlipTextSelfAttention(BlipTextConfig(hidden_size=8, num_attention_heads=2), is_cross_attention=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        att(torch.zeros(1, 2, 8), past_key_values=None)
    if not any("past_key_values" in str(w.message) for w in seen):
        pytest.skip(reason="this transformers release does not deprecate past_key_values (renamed to cache in 5.2x)")
    with pytest.raises(FutureWarning, match="past_key_values"):
        _as_module("selfseg.models.example", "att(torch.zeros(1, 2, 8), past_key_values=None)",
                   dict(att=att, torch=torch))


# ------------------------------------------------------------------------------- what the command line prints


def test_a_warning_during_a_command_is_one_line_per_message(monkeypatch, capsys):
    import selfseg.cli as cli

    def noisy(ns):
        for _ in range(3):  # the same message from three places is still said once
            warnings.warn("the disk is nearly full", UserWarning, stacklevel=1)
            warnings.warn_explicit("the disk is nearly full", UserWarning, "elsewhere.py", 7)
        warnings.warn("first line of a long story\nsecond line\nthird", RuntimeWarning, stacklevel=1)
        return 0

    before = warnings.showwarning
    monkeypatch.setattr(cli, "cmd_resources", noisy)
    assert cli.main(["resources"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: the disk is nearly full", "warning: first line of a long story"]
    assert warnings.showwarning is before  # put back when the command ends


def test_a_broken_reply_cache_is_one_warning_line_and_the_run_goes_on(repo, ade_images, tmp_path, monkeypatch,
                                                                      capsys):
    import sqlite3

    from selfseg.cache import ReplyCache
    from selfseg.cli import main

    def locked(self, key):
        self._fail(sqlite3.OperationalError("database is locked"))
        return None

    monkeypatch.setattr(ReplyCache, "get", locked)
    out = tmp_path / "out"
    code = main(["tag", *map(str, ade_images[:2]), "--config", str(repo / "configs" / "smoke.yaml"), "--out",
                 str(out), "-q", "tagger=vlm", "vlm.max_new_tokens=4", f"vlm.cache={tmp_path / 'r.sqlite'}"])
    err = capsys.readouterr().err.splitlines()
    assert code == 0 and {p.stem for p in ade_images[:2]} <= {f.stem for f in out.rglob("*.json")}
    lines = [e for e in err if "reply cache" in e]
    assert lines == [f"warning: reply cache {tmp_path / 'r.sqlite'}: OperationalError: database is locked; going "
                     f"on without it"]
    assert not any("UserWarning" in e for e in err)


def test_a_long_tag_is_a_note_of_its_image_not_a_warning(repo, tmp_path, capsys):
    from PIL import Image

    from selfseg.cli import main

    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (120, 80, 40)).save(photo)
    long_tag = " ".join(["giraffe"] * 300)
    out = tmp_path / "out"
    code = main(["segment", str(photo), "--config", str(repo / "configs" / "smoke.yaml"), "--out", str(out), "-q",
                 "segment.vocabulary=given", f"vocabulary=[dog, {long_tag}]"])
    cap = capsys.readouterr()
    assert code == 0 and "warning" not in cap.err.lower()
    import json

    notes = json.loads((out / "photo.json").read_text())["notes"]
    assert any("truncated to its first" in n for n in notes)


def test_a_decompression_bomb_is_a_note_of_its_image_not_a_warning(repo, tmp_path, monkeypatch, capsys):
    import json

    from PIL import Image

    from selfseg.cli import main

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 64 x 48 = 3072 px: above it, below twice it
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (120, 80, 40)).save(photo)
    out = tmp_path / "out"
    assert main(["tag", str(photo), "--config", str(repo / "configs" / "smoke.yaml"), "--out", str(out), "-q",
                 "captioning.cycles=1"]) == 0
    assert "warning" not in capsys.readouterr().err.lower()
    notes = json.loads((out / "photo.json").read_text())["notes"]
    assert notes[0] == ("photo.png: 3072 pixels, more than PIL's limit of 2000 against decompression bombs; "
                        "loaded anyway")
