"""What every model wrapper shares: device and dtype settings, loading a checkpoint cache-first with one
clear error when it is missing (no minutes of hub retries on an offline machine), and the weight re-draw
that makes tiny random test models depend on their inputs."""
from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, ResourceMissingError, SelfSegError
from ..resources import hub_offline, hub_reachable
from .spec import DTYPE_NAMES, ModelSpec

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


def resolve_device(name: str | torch.device) -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cpu", "cuda[:N]" or "mps" otherwise, checked against this
    machine here rather than failing inside torch when the first weight moves."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    expected = f"model.device: expected 'auto', 'cpu', 'cuda[:N]' or 'mps', got {name!r}"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(expected) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(expected)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"model.device is {name!r} but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"model.device is {name!r} but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s), numbered from 0")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"model.device is {name!r} but MPS (Apple's GPU) is not available on this machine")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    # Configs check model.dtype and vlm.dtype when they load; this line is for Python callers of a wrapper.
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


@contextlib.contextmanager
def exact_float32(device: Any, dtype: Any) -> Iterator[None]:
    """float32 work on a CUDA device done in float32: cuDNN convolutions (BLIP's and SAM 2's patch embeddings,
    the BCC CRF's filter) default to TF32 there, which rounds their inputs to 10 mantissa bits, so the same
    image would give other features, and through them other clusters, than on the CPU. Matrix products are kept
    from TF32 too (off by default; a user's or a library's setting turns it on). Other devices and dtypes:
    unchanged. The settings are the process's: the first call in sets them and the last one out puts back
    what it found, so calls from several threads, or nested, never leave them half restored."""
    if torch.device(device).type != "cuda" or dtype != torch.float32:
        yield
        return
    global _EXACT_DEPTH, _EXACT_SAVED
    with _EXACT_LOCK:
        if _EXACT_DEPTH == 0:
            _EXACT_SAVED = _exact_settings()
        _EXACT_DEPTH += 1
    try:
        yield
    finally:
        with _EXACT_LOCK:
            _EXACT_DEPTH -= 1
            if _EXACT_DEPTH == 0:
                _assign(_EXACT_SAVED)


_EXACT_LOCK = threading.Lock()
_EXACT_DEPTH = 0
_EXACT_SAVED: list[tuple[Any, str, Any]] = []


def _precision_settings() -> list[tuple[Any, str, Any]]:
    """(owner, attribute, the value that means exact float32) of each TF32 setting. Where torch has the
    per-backend fp32_precision settings they are the ones to use: once anything has set them (transformers'
    tf32 option does), reading the older allow_tf32 flags raises."""
    backends = torch.backends
    if hasattr(backends.cuda.matmul, "fp32_precision"):
        return [(backends.cuda.matmul, "fp32_precision", "ieee"), (backends.cudnn.conv, "fp32_precision", "ieee"),
                (backends.cudnn.rnn, "fp32_precision", "ieee")]
    return [(backends.cuda.matmul, "allow_tf32", False), (backends.cudnn, "allow_tf32", False)]


def _exact_settings() -> list[tuple[Any, str, Any]]:
    """Set every TF32 setting to exact float32; returns what each was."""
    settings = _precision_settings()
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in settings]
    _assign(settings)
    return saved


def _assign(settings: list[tuple[Any, str, Any]]) -> None:
    """Set each (owner, attribute, value)."""
    for owner, name, value in settings:
        setattr(owner, name, value)


def model_call(method: Callable) -> Callable:
    """A model wrapper's method (one with `device` and `dtype`) under torch.inference_mode, its float32 kept
    exact on a GPU (`exact_float32`)."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode(), exact_float32(self.device, self.dtype):
            return method(self, *args, **kwargs)

    return call


def load_checkpoint(what: str, spec: ModelSpec, load: Callable[[bool], Any], weights: bool = True) -> Any:
    """`load(local_only)` of `spec`'s checkpoint from the cache (or a local folder) first, then, if allowed
    and the hub answers, from the hub. Every failure is one ResourceMissingError line that says which of
    these it is: a folder that does not exist or cannot be read, an id that is no id, a checkpoint the hub
    could not give, a cached one that cannot be loaded offline, or one not cached (naming `selfseg
    download`). weights False: `load` reads the config alone, so a folder needs no weights for it."""
    from safetensors import SafetensorError

    unreadable = (OSError, ValueError, SafetensorError)
    model_id, revision = spec.id, spec.revision
    _check_local_folder(what, model_id, weights)
    at = f"{model_id!r}" + (f" at revision {revision!r}" if revision else "")
    try:
        return load(True)
    except SelfSegError:  # already one line (a checkpoint of the wrong kind); ConfigError is a ValueError
        raise
    except unreadable as exc:
        reason = _first_line(exc)
        if Path(model_id).exists():
            raise ResourceMissingError(f"{what} checkpoint at {model_id} could not be read: {reason}") from None
        if _looks_like_path(model_id):
            raise ResourceMissingError(f"{what} checkpoint folder {model_id} does not exist") from None
        if not _valid_repo_id(model_id):
            raise ResourceMissingError(f"{what} checkpoint {model_id!r} is neither a folder nor a Hugging Face "
                                       f"model id (owner/name)") from None
        cached = spec.identity().startswith("commit:")  # a snapshot of it is in the hub cache
        if cached and not isinstance(exc, OSError):
            # The files are there and this transformers cannot read them (a model type it does not know, a
            # damaged file): the hub would give the same files.
            raise ResourceMissingError(f"{what} checkpoint {at} is in the local cache but could not be loaded: "
                                       f"{reason}") from None
        offline = spec.local_files_only or hub_offline()
        # One quick probe instead of the hub client's minutes of retries on a machine with no network. The
        # hub also completes what the cache holds only part of (the config read ahead of the weights).
        if not offline and hub_reachable():
            try:
                return load(False)
            except SelfSegError:
                raise
            except unreadable as exc:
                raise ResourceMissingError(f"{what} checkpoint {at} could not be loaded from the Hugging Face "
                                           f"hub ({_first_line(exc)}); check the model id") from None
        why = "downloads are off (model.local_files_only or HF_HUB_OFFLINE)" if offline else \
            "the Hugging Face hub is not reachable"
        if cached:  # a file missing: part of it is cached (the config read ahead of the weights)
            raise ResourceMissingError(f"{what} checkpoint {at} is only partly in the local cache ({reason}) and "
                                       f"{why}; `selfseg download --config <your config>` completes it") from None
        raise ResourceMissingError(
            f"{what} checkpoint {at} is not in the local cache and {why}; run `selfseg download --config <your "
            f"config>` (with the run's overrides) on a machine that reaches the hub (or point HF_HOME / "
            f"model.cache_dir at a cache that has it)") from None


def check_available(what: str, spec: ModelSpec) -> None:
    """Raise `load_checkpoint`'s one-line error now when `spec`'s checkpoint cannot be had: neither a folder
    nor in the cache, and downloads off or the hub unreachable. It reads no weights, so a component that
    loads slow resources before its model (WordNet takes seconds) can fail on the model first."""
    if spec.is_tiny:
        return
    _check_local_folder(what, spec.id)
    if spec.identity().startswith(("commit:", "folder:")):
        return

    def probe(local: bool) -> None:
        if local:
            raise OSError("not in the local cache")  # the hub is asked only if it answers

    load_checkpoint(what, spec, probe)


#: Endings of the weight files transformers reads (model.safetensors, pytorch_model.bin, their shards, the
#: TensorFlow and Flax ones), and of other weight files: a folder with none of them holds no checkpoint.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".pt", ".pth", ".ckpt", ".gguf")
_CHECKPOINT = ("expected a Hugging Face model id (owner/name) or a checkpoint folder holding config.json and the "
               "weights (as save_pretrained writes them)")


def _check_local_folder(what: str, model_id: str, weights: bool = True) -> None:
    """Refuse a path that exists but holds no checkpoint (no weights: only where `weights`), saying what one
    is: transformers reads a file as a config ("not a valid JSON file") and an empty folder or one without
    config.json as a config without a model type, and a cache probe finds no file's name."""
    path = Path(model_id)
    try:
        if not path.exists():
            return  # a hub id, or a folder that is not there: load_checkpoint says which
        names = [p.name for p in path.iterdir()] if path.is_dir() else None
    except OSError:  # unreadable: the load says why
        return
    if names is None:
        problem = "it is a file"
    elif not names:
        problem = "the folder is empty"
    elif "config.json" not in names:
        problem = "the folder has no config.json"
    elif weights and not any(n.endswith(_WEIGHT_SUFFIXES) for n in names):
        problem = "the folder has config.json but no weights (model.safetensors, pytorch_model.bin or their shards)"
    else:
        return
    raise ResourceMissingError(f"{what} checkpoint at {model_id} could not be read: {problem}; {_CHECKPOINT}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _looks_like_path(model_id: str) -> bool:
    """A hub id is `name` or `owner/name`; anything absolute, relative to '.', or deeper is a folder."""
    return (Path(model_id).is_absolute() or model_id.startswith(("./", "../", "~")) or model_id.count("/") > 1
            or "\\" in model_id)


def _valid_repo_id(model_id: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(model_id)
    except HFValidationError:
        return False
    return True


def check_model_type(what: str, spec: ModelSpec, allowed: Collection[str], expected: str, setting: str = "") -> None:
    """Read only the checkpoint's config and raise one ConfigError when its model type is not one of
    `allowed`: transformers loads another model's folder with a warning and random weights where the names
    differ, and the run would go on with noise."""
    from transformers import AutoConfig

    def read(local: bool) -> Any:
        return AutoConfig.from_pretrained(spec.id, **spec.pretrained_kwargs(local))

    cfg = load_checkpoint(what, spec, read, weights=False)  # a folder of another model kind says so first
    if cfg.model_type not in allowed:
        raise ConfigError(f"{setting + ': ' if setting else ''}{what} checkpoint {spec.id!r} is a "
                          f"{cfg.model_type!r} model; expected {expected}")


#: The share of a model's parameters a checkpoint may leave to random init before it is refused. The
#: checkpoints selfseg names load complete; a head of another task (BLIP's retrieval models have no caption
#: decoder) or a model of another family leaves far more than this.
MISSING_TOLERANCE = 0.01


def complete_weights(what: str, model_id: str, loaded: tuple[Any, dict]) -> Any:
    """The model of `from_pretrained(..., output_loading_info=True)`, refused in one line when more than
    MISSING_TOLERANCE of its parameters were not in the checkpoint (transformers only logs them)."""
    model, info = loaded
    missing = sorted(info.get("missing_keys") or ())
    if not missing:
        return model
    sizes = {name: t.numel() for name, t in model.state_dict().items()}
    share = sum(sizes.get(name, 0) for name in missing) / max(1, sum(sizes.values()))
    if share > MISSING_TOLERANCE:
        raise ConfigError(f"{what} checkpoint {model_id!r} lacks {len(missing)} of the model's weights "
                          f"({share:.0%} of its parameters, e.g. {missing[0]}); it is not a {what} checkpoint "
                          f"of this kind, and those weights would be random")
    return model


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
