"""CPU kernels compiled from the C++ beside this file on first use, with the pure-torch paths as the fallback.

`field_attention()` returns the compiled module, or None where it cannot be had: not Linux on x86-64, no C++ compiler
or ninja, a failed build, or `PIPELINE_CPU_KERNELS=0` in the environment. The build (~40 s, once per host and torch
version) goes through `torch.utils.cpp_extension.load` into torch's extension cache (`TORCH_EXTENSIONS_DIR`, default
~/.cache/torch_extensions), under a name that hashes the source's text and path, the compiler flags, torch's version
and the CPU's flags: it is compiled for the CPU it runs on (-march=native), a cache carried to another CPU
builds anew instead of loading code that CPU may not run, and two checkouts do not rebuild over each other.
Concurrent processes wait on torch's lock file for one build.
`python -m models.kernels` builds it ahead (`make run` and `make test` do, in their bytecode step).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import logging
import os
import platform
import shutil
import sys
import warnings
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("field_attention.cpp")
FLAGS = ("-O3", "-march=native", "-fopenmp")  # -fopenmp: at::parallel_for runs serially in code built without it


def enabled() -> bool:
    return os.environ.get("PIPELINE_CPU_KERNELS", "1") != "0"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _missing_tools() -> str | None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"{sys.platform}/{platform.machine()} (the kernel is built for Linux on x86-64)"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler})"
    try:
        from torch.utils.cpp_extension import verify_ninja_availability

        verify_ninja_availability()
    except RuntimeError:
        return "no ninja"
    return None


@functools.cache
def field_attention() -> ModuleType | None:
    """The per-head field attention kernel (models/kernels/field_attention.cpp), or None: see the module docstring."""
    if not enabled():
        return None
    missing = _missing_tools()
    if missing:
        log.info("CPU attention kernel not built: %s; AutoInt uses its batched-product path", missing)
        return None
    import torch
    from torch.utils.cpp_extension import load

    # The source's path too: torch rebuilds an extension whose recorded source path changed (another checkout).
    parts = [str(SOURCE.resolve()), SOURCE.read_text(), " ".join(FLAGS), torch.__version__, _cpu_flags()]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load(f"field_attention_{key}", [str(SOURCE)], extra_cflags=list(FLAGS), extra_ldflags=["-fopenmp"], verbose=False)
    except Exception as error:  # any build failure falls back to the torch path, said once
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log.warning("CPU attention kernel failed to build (%s); AutoInt uses its batched-product path", first[:200])
        return None


@functools.cache
def retain_freed_memory() -> bool:
    """Keep freed large blocks in the process's heap (glibc only): True where set, once per process.

    Training allocates and frees tensors of tens of MB every step (AutoInt on Frappe: 21 MB each and a 63 MB gradient
    per attention layer, dozens a step). glibc gives such blocks back to the kernel (a mapping of their own above its
    mmap threshold, heap trimming above another), so every step page-faults them in again and zeroes them: the C++
    attention backward took 14.5 ms a call with fresh pages and 7 ms with reused ones (bench/RESULTS.md, "A C++ kernel
    for AutoInt's attention"). This serves every block from the heap (`mallopt(M_MMAP_MAX, 0)`, no mappings of their
    own) and raises the trim threshold to 1 GiB, as the environment variables MALLOC_MMAP_MAX_=0 and
    MALLOC_TRIM_THRESHOLD_ would: the process keeps what it freed for reuse. jemalloc or tcmalloc through LD_PRELOAD
    override this.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc's own symbol: other C libraries' mallopt differ
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def prepare_cpu_training(attention: bool) -> tuple[bool, bool]:
    """Before CPU training's first timed step: keep freed memory (`retain_freed_memory`) and, for a model with fp32
    attention, build or load the kernel (~40 s the first time on a host). (kernel available, freed memory kept)."""
    retained = retain_freed_memory()
    return attention and field_attention() is not None, retained
