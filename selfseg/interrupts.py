"""Ctrl-C always stops the `selfseg` command, and SIGTERM stops it the same way.

SIGTERM is how a cluster scheduler ends a job at its time limit (and what `kill` and torchrun send): by
default Python dies on it at once, leaving a half-written temporary file and no line saying how to go on.
Under the command's handler it stops the command as Ctrl-C does, which exits with 143 (128 + SIGTERM)
instead of 130.

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
_signal = 0  # the signal that interrupted the command (0: none)


def install() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, as SIGINT does by default, and are noted for `check`."""
    import signal

    def _interrupt(signum: int, frame: Any) -> None:
        global _pending, _signal
        _pending = True
        _signal = _signal or signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def exit_code() -> int:
    """The exit status of an interrupted command: 128 + the signal's number (130 for Ctrl-C, without a
    noted signal too: a KeyboardInterrupt raised some other way)."""
    import signal

    return 128 + (_signal or signal.SIGINT)


def interrupted() -> bool:
    """Whether a Ctrl-C arrived (under the command's handler)."""
    return _pending


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived whose exception was lost."""
    if _pending:
        raise KeyboardInterrupt
