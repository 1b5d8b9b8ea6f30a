"""Per-item random streams: what is drawn for one image depends on the seed and on that image, never on
which other images share its batch, its shard, or a resumed run.

An image's key is a digest of its decoded pixels, so the same picture under another name, in another folder
or passed as an array draws the same numbers; a stream is named by the seed, that key and the draw's place
inside the image (a caption's cluster and cycle). numpy's SeedSequence + PCG64 give the draws: both are
stable across numpy releases and platforms.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

_MASK64 = (1 << 64) - 1


def image_key(image: Any) -> int:
    """A 128-bit key of a PIL image's pixels (mode, size and bytes): equal pixels, equal key."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return int.from_bytes(h.digest(), "little")


def stream_uniforms(seed: int, streams: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """(len(streams), n) float64 draws in [0, 1); row i comes from the stream named by (seed, *streams[i]).

    Names are tuples of non-negative ints (a key of any size, then small indices); the seed may be any int.
    """
    out = np.empty((len(streams), n), dtype=np.float64)
    for i, name in enumerate(streams):
        entropy = [int(seed) & _MASK64, *(int(x) for x in name)]
        if min(entropy) < 0:
            raise ValueError(f"stream name: expected non-negative integers, got {tuple(name)!r}")
        out[i] = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy))).random(n)
    return out
