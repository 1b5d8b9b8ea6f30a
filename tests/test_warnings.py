"""The suite's warning policy (tests/conftest.py): a deprecation that transformers or torch raises from
selfseg's own call is an error; one raised from anyone else's call stays a warning."""
from __future__ import annotations

import warnings

import pytest


def _run_as(module: str, source: str, namespace: dict) -> None:
    # Code run with a module's name is, to the stack walk, code of that module.
    exec(compile(source, f"<{module}>", "exec"), {"__name__": module, **namespace})


@pytest.fixture(scope="module")
def attention():
    from transformers import BlipTextConfig
    from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

    return BlipTextSelfAttention(BlipTextConfig(hidden_size=8, num_attention_heads=2), is_cross_attention=False)


CALL = "att(torch.zeros(1, 2, 8), past_key_values=None)"  # renamed to `cache` in transformers 5.x


def test_a_transformers_deprecation_from_a_selfseg_call_is_an_error(attention):
    import torch

    # through torch's nn.Module.__call__, as every model call goes
    with pytest.raises(FutureWarning, match="past_key_values"):
        _run_as("selfseg.models.example", CALL, dict(att=attention, torch=torch))


def test_the_same_deprecation_from_other_code_stays_a_warning(attention):
    import torch

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _run_as("someone_else", CALL, dict(att=attention, torch=torch))
    assert any(issubclass(w.category, FutureWarning) and "past_key_values" in str(w.message) for w in seen)
