"""Per-item random streams: what is drawn for one image depends on the seed and on that image, never on
which other images share its batch, its shard, or a resumed run.

An image's key is a digest of its decoded pixels, so the same picture under another name, in another folder
or passed as an array draws the same numbers; a stream is named by the seed, that key and the draw's place
inside the image (a caption's cluster and cycle). numpy's SeedSequence + PCG64 give the draws: both are
stable across numpy releases and platforms.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np


def image_key(image: Any) -> int:
    """A 128-bit key of a PIL image's pixels (mode, size and bytes): equal pixels, equal key."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return int.from_bytes(h.digest(), "little")


def stream_uniforms(seed: int, streams: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """(len(streams), n) float64 draws in [0, 1); row i comes from the stream named by (seed, *streams[i]).

    Names are tuples of integers in [0, 2**128) (an image key, then small indices); the seed is a signed or
    unsigned 64-bit integer. Distinct (seed, name) pairs name distinct streams: both are written as
    fixed-width 32-bit words with the name's length, so (5,) and (5, 0), or seed -1 and 2**64 - 1, differ.
    """
    if not -(2**63) <= int(seed) < 2**64:
        raise ValueError(f"seed: expected a 64-bit integer, got {seed}")
    head = [int(seed) < 0, *_words(int(seed) % 2**64, 2)]
    out = np.empty((len(streams), n), dtype=np.float64)
    for i, name in enumerate(streams):
        values = [int(x) for x in name]
        if any(not 0 <= v < 2**128 for v in values):
            raise ValueError(f"stream name: expected integers in [0, 2**128), got {tuple(name)!r}")
        entropy = head + [len(values)] + [w for v in values for w in _words(v, 4)]
        out[i] = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy))).random(n)
    return out


def _words(value: int, count: int) -> list[int]:
    """`value` as `count` 32-bit words, least significant first (SeedSequence takes each as one word)."""
    return [(value >> (32 * i)) & 0xFFFFFFFF for i in range(count)]
