"""Ctrl-C always stops the `selfseg` command.

Python raises KeyboardInterrupt wherever the main thread is when the signal arrives. Inside an object's
`__del__` (a finaliser of a third-party module, run during some unrelated call) the exception is printed as
"ignored" and lost, and the command would run on to its end. The command's handler also notes the signal:
the pipeline checks the note before each batch and a benchmark before it scores, and a command that ran
to its end after a lost Ctrl-C still exits with 130. `main` called from Python (a notebook) installs
nothing: its caller's handler stays, and the note is never set.
"""
from __future__ import annotations

from typing import Any

_pending = False


def install() -> None:
    """SIGINT raises KeyboardInterrupt, as by default, and is also noted for `check`."""
    import signal

    def _interrupt(signum: int, frame: Any) -> None:
        global _pending
        _pending = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _interrupt)


def interrupted() -> bool:
    """Whether a Ctrl-C arrived (under the command's handler)."""
    return _pending


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived whose exception was lost."""
    if _pending:
        raise KeyboardInterrupt
