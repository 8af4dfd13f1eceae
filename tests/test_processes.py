"""Background warm-ups: a low-priority one runs niced on its own thread, the rest of the process
keeps its priority."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from mlops_assets.processes import WARM_UP_NICENESS, import_in_background


def _thread_niceness(native_id: int) -> int:
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of stat(5), counted after the command name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_a_low_priority_warm_up_is_niced_alone(monkeypatch):
    import importlib

    seen: dict[str, int] = {}
    real_import = importlib.import_module

    def recording_import(name, package=None):
        if name == "json":  # the warm-up's module: note the niceness of the thread importing it
            seen["warm_up"] = _thread_niceness(threading.get_native_id())
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", recording_import)
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    import_in_background("json", low_priority=True).join(30)
    assert seen["warm_up"] == min(before + WARM_UP_NICENESS, 19)
    assert _thread_niceness(threading.get_native_id()) == before  # the caller is untouched

    seen.clear()
    import_in_background("json").join(30)
    assert seen["warm_up"] == before  # a plain warm-up keeps the process's priority
