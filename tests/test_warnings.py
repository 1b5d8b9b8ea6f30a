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
