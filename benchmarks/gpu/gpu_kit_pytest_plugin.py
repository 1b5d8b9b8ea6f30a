"""pytest plugin of the GPU kit (run.sh loads it with `-p gpu_kit_pytest_plugin`).

run.sh stops a step that outlives its time with SIGTERM. Plain pytest dies on SIGTERM without a word; with
this plugin it stops as on Ctrl-C instead, so the log still ends with the summary of the tests that ran
(and their failures). SIGINT gets Python's default handler back too, in case the caller ignored it.
"""
from __future__ import annotations

import signal


def _stop(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}: the step's time limit (benchmarks/gpu/run.sh)")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)
