"""Exceptions with messages meant for people: one line, saying what was expected and what to do."""
from __future__ import annotations


class SelfSegError(Exception):
    """Base class for every error selfseg raises on purpose."""


class ConfigError(SelfSegError, ValueError):
    """A config file or override is wrong (unknown key, bad type, unreadable file)."""


class ImageError(SelfSegError, ValueError):
    """An input image cannot be used (missing, not an image, corrupt, too small)."""


class ResourceMissingError(SelfSegError, RuntimeError):
    """A model checkpoint or language resource is not available; the message names the fixing command."""


class DeviceError(SelfSegError, RuntimeError):
    """The accelerator failed in a way that leaves it unusable for the rest of the process (an illegal memory
    access, a device-side assert): every later image would fail the same way."""


class DatasetError(SelfSegError, ValueError):
    """A dataset root does not hold the layout its loader expects, or a label/prediction file is unusable."""


def choices(names: object) -> str:
    """'a, b or c': the valid names in an error message."""
    names = [str(n) for n in names]  # type: ignore[union-attr]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def check(ok: object, key: str, expected: str, got: object) -> None:
    """Raise `ConfigError("key: expected ..., got ...")` unless `ok`. Config blocks call it from
    `__post_init__` with their own field names; the config loader puts the block's place in front."""
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {got!r}")


def text_error(exc: BaseException) -> str:
    """One line saying where and why a text (YAML) could not be read: "line 3, column 5: <problem>" when the
    parser marked the place, else the error's first line."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
