"""Ctrl-C stops the `selfseg` command even when its KeyboardInterrupt is raised, and lost, inside a
finaliser: the command's handler notes it and the pipeline checks before each batch."""
from __future__ import annotations

import subprocess
import sys

import pytest

from selfseg import interrupts

# A finaliser that takes the signal: its KeyboardInterrupt is printed as "ignored", and the run goes on.
LOST = """
import os, signal, time
from selfseg import interrupts
interrupts.install()

class Finalised:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the handler runs here, inside __del__

Finalised()
print("went on", flush=True)
try:
    interrupts.check()
except KeyboardInterrupt:
    print("stopped", flush=True)
"""


def test_a_ctrl_c_lost_in_a_finaliser_is_noted_and_checked():
    r = subprocess.run([sys.executable, "-c", LOST], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["went", "on", "stopped"], r.stderr
    assert "KeyboardInterrupt" in r.stderr  # Python's own "Exception ignored in ... __del__" line


def test_the_pipeline_stops_before_its_next_batch(smoke_seg, ade_images, monkeypatch):
    monkeypatch.setattr(interrupts, "_pending", True)
    with pytest.raises(KeyboardInterrupt):
        next(smoke_seg.tag_many(ade_images[:1]))
    with pytest.raises(KeyboardInterrupt):
        next(smoke_seg.segment_many(ade_images[:1]))
    monkeypatch.setattr(interrupts, "_pending", False)
    assert next(smoke_seg.tag_many(ade_images[:1])).ok


# The command itself: a Ctrl-C lost in a finaliser after the last check (here, while `main` returns).
COMMAND = """
import os, signal, sys, time
from selfseg import cli

class Finalised:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)

def main(argv=None):
    Finalised()
    return 0

cli.main = main
sys.argv = ["selfseg"]
cli.entry()
"""


def test_the_command_exits_130_after_a_lost_ctrl_c():
    r = subprocess.run([sys.executable, "-c", COMMAND], capture_output=True, text=True, timeout=60)
    assert r.returncode == 130 and r.stderr.strip().endswith("selfseg: interrupted"), r.stderr
