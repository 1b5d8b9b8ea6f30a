"""A persistent cache of model replies, keyed by everything that decides the reply.

Generation here is greedy (deterministic), so a reply is a pure function of (model, image, conversation,
generation settings): a rerun over the same images never calls the model again. The store is one SQLite
file, which several processes (torchrun ranks, parallel CLI runs) can share safely; a JSON file would need
locking and be rewritten whole on every insert.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import warnings
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: Where replies go unless a config says otherwise (`vlm.cache`; null turns caching off).
DEFAULT_CACHE = "~/.cache/selfseg/replies.sqlite"


def image_digest(image: Any) -> str:
    """sha256 of a PIL image's mode, size, pixels and palette: the same picture gives the same digest
    whatever lossless file (or format, or EXIF orientation already applied) it came from."""
    h = hashlib.sha256()
    h.update(f"{image.mode}|{image.size[0]}x{image.size[1]}|".encode())
    h.update(image.tobytes())
    if image.mode in ("P", "PA"):  # the same indices under another palette are another picture
        h.update(bytes(image.getpalette() or ()))
        h.update(repr(image.info.get("transparency")).encode())
    return h.hexdigest()


def reply_key(**parts: Any) -> str:
    """A stable key for a reply: sha256 of the parts as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class ReplyCache:
    """`get(key)` / `put(key, reply)` on an SQLite file; `hits` and `misses` count lookups."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.hits = 0
        self.misses = 0
        self.broken: str | None = None  # set when the file failed after opening: caching is then off
        self.unwritable: str | None = None  # set when a write was refused: replies are still read
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # timeout: wait for another process's write instead of failing with "database is locked".
            self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"reply cache {self.path}: cannot be opened ({exc}); set vlm.cache to a writable "
                              f"file, or null to turn caching off") from None

    @classmethod
    def open(cls, path: str | Path | None) -> ReplyCache | None:
        """None (caching off) for a None or empty path."""
        return cls(path) if path else None

    def _fail(self, exc: Exception) -> None:
        # A locked or broken file (NFS home directories) must not cost the replies already generated:
        # warn once and go on without the cache.
        if self.broken is None:
            self.broken = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"reply cache {self.path}: {self.broken}; going on without it", stacklevel=3)

    def get(self, key: str) -> str | None:
        if self.broken:
            return None
        try:
            with self._lock:
                row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self._fail(exc)
            return None
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return row[0]

    def mark(self, key: str) -> None:
        """Note `key` (a flag about a reply, such as its being cut short: its key with a ':' suffix);
        `marked` reads it back."""
        self.put(key, "")

    def unmark(self, key: str) -> None:
        """Clear the mark `key`, if any."""
        if self.broken or self.unwritable:
            return
        try:
            with self._lock:
                self._db.execute("DELETE FROM replies WHERE key = ?", (key,))
                self._db.commit()  # also when nothing went: the statement opened a write transaction
        except sqlite3.Error as exc:
            self._write_failed(exc)

    def marked(self, key: str) -> bool:
        """Whether `key` was marked; not counted as a hit or a miss."""
        if self.broken:
            return False
        try:
            with self._lock:
                return self._db.execute("SELECT 1 FROM replies WHERE key = ?", (key,)).fetchone() is not None
        except sqlite3.Error as exc:
            self._fail(exc)
            return False

    def put(self, key: str, reply: str) -> None:
        if self.broken or self.unwritable:
            return
        try:
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO replies (key, reply) VALUES (?, ?)", (key, reply))
                self._db.commit()
        except sqlite3.Error as exc:
            self._write_failed(exc)

    def _write_failed(self, exc: sqlite3.Error) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.rollback()
        if isinstance(exc, sqlite3.OperationalError) and ("readonly" in str(exc).replace("-", "")
                                                          or "disk is full" in str(exc)):
            # A shared cache the user may read but not write, or one on a full disk, still serves every reply
            # it holds.
            self.unwritable = str(exc)
            warnings.warn(f"reply cache {self.path}: cannot be written ({exc}); its replies are still used, new "
                          f"ones are not stored", stacklevel=3)
        else:
            self._fail(exc)

    def __len__(self) -> int:
        """The replies held; marks (keys with a ':', where reply keys are hex digests) are not counted."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies WHERE instr(key, ':') = 0").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
