"""Helpers shared by the benchmarks: machine description, peak memory, timing."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import time
from collections.abc import Callable
from typing import Any


def machine() -> str:
    """One line describing the machine the figures come from."""
    cpu, amx = platform.processor() or platform.machine(), "AMX unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            info = handle.read()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        amx = "with AMX" if "amx_bf16" in info else "no AMX"  # bf16 matrix products several times faster with it
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu} ({amx}), {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time over `repeat` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def settings_digest(**settings: Any) -> str:
    """A short digest of what a stored result depends on beyond its key: the settings given and the project's code. A
    resumed bench reuses a result only under the same digest, and its tables show only those (a result made with
    other settings or code was printed as if just measured)."""
    from pipeline.cache import code_version

    text = json.dumps({**settings, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]
