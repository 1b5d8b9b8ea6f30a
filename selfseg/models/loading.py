"""What every model wrapper shares: device and dtype settings, loading a checkpoint cache-first with one
clear error when it is missing (no minutes of hub retries on an offline machine), and the weight re-draw
that makes tiny random test models depend on their inputs."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, ResourceMissingError
from ..resources import hub_reachable
from .spec import DTYPE_NAMES

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


def resolve_device(name: str | torch.device) -> torch.device:
    """"auto" -> CUDA when available, else CPU; any torch device string otherwise (checked)."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"model.device: expected 'auto', 'cpu' or 'cuda[:N]', got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"model.device is {name!r} but CUDA is not available on this machine")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"model.dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def load_checkpoint(what: str, model_id: str, load: Callable[[bool], Any], local_files_only: bool) -> Any:
    """`load(local_only)` from the cache (or a local folder) first, then, if allowed and the hub answers,
    from the hub. A missing checkpoint becomes one ResourceMissingError line naming `selfseg download`."""
    try:
        return load(True)
    except (OSError, ValueError) as exc:
        if Path(model_id).exists():
            raise ResourceMissingError(f"{what} checkpoint at {model_id} could not be read: "
                                       f"{str(exc).splitlines()[0]}") from None
        missing = ResourceMissingError(
            f"{what} checkpoint {model_id!r} is not in the local cache and the Hugging Face hub is not "
            f"reachable; run `selfseg download --config <your config>` on a machine that reaches the hub "
            f"(or point HF_HOME / model.cache_dir at a cache that has it)"
        )
        # One quick probe instead of the hub client's minutes of retries on a machine with no network.
        if local_files_only or not hub_reachable():
            raise missing from None
        try:
            return load(False)
        except (OSError, ValueError) as exc:
            raise ResourceMissingError(
                f"{what} checkpoint {model_id!r} could not be loaded from the Hugging Face hub "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); check the model id"
            ) from None


def spread_weights(model: Any, seed: int, head_gain: float = 4.0, gain: float = 2.0) -> Any:
    """Re-draw every weight matrix of `model` (linear, convolution, embedding) deterministically from
    `seed`: embeddings N(0, 1), the output head N(0, head_gain^2 / fan_in), every other matrix
    N(0, gain^2 / fan_in); vectors (biases, norms) are kept. Returns the model.

    transformers' default init (std 0.02) leaves a tiny random model nearly blind to its input: attention
    is uniform and the residual stream is the current token's embedding, so another image or prompt moves
    the logits by ~1e-2 and greedy replies rarely change. With unit-scale activations attention is peaked
    and every input token reaches the logits; gain 2 lets the layers outweigh the token's own embedding
    (with tied embeddings the reply otherwise repeats its last token), and the wider head keeps the greedy
    choice far from ties, so float rounding cannot flip it. The outputs are still meaningless.
    """
    gen = torch.Generator().manual_seed(seed)
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_weight = id(head.weight) if head is not None else None
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() < 2:
                continue
            fan_in = p[0].numel()
            std = 1.0 if id(p) in embeddings and id(p) != head_weight else \
                (head_gain if id(p) == head_weight else gain) / fan_in ** 0.5
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype) * std)
    return model


def redraw_weights(model: Any, seed: int, gains: dict[str, float] | None = None) -> Any:
    """Re-draw a random-init model's weights so that its outputs follow its inputs (in place; returns it).

    Random-init checkpoints are built to start training, not to carry a signal: weights of std 0.02 shrink
    activations ~10x per layer at tiny widths, heads start at zero, layer scales at 1e-4. A test of batching,
    masking or row isolation on such a model passes whatever the code does, because no input reaches the
    output. Here every Linear / Conv weight is drawn from N(0, (gain / sqrt(fan_in))^2), which keeps
    activations at about unit scale through the depth; biases, norms and embeddings are kept. Layer-scale
    parameters named `vision_param` / `text_param` (Grounding DINO's fusion) are set to 1 so the fused
    modality is not scaled away. `gains` maps a substring of a module's qualified name to its gain (the last
    match wins; default 1): larger query/key gains make attention depend on content instead of averaging it.
    Deterministic in `seed`, independent of torch's global RNG. The outputs stay meaningless.
    """
    generator = torch.Generator().manual_seed(int(seed))
    gains = gains or {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.ConvTranspose2d):
                fan_in = module.weight.shape[0] * module.weight[0, 0].numel()
            elif isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                fan_in = module.weight[0].numel()
            else:
                continue
            gain = 1.0
            for key, value in gains.items():
                if key in name:
                    gain = value
            weight = module.weight
            weight.copy_(torch.randn(weight.shape, generator=generator, dtype=torch.float32).to(weight.dtype)
                         * (gain / fan_in ** 0.5))
        for name, param in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("vision_param", "text_param"):
                param.fill_(1.0)
    return model
