"""Fewer page faults per layer (Linux): freed memory kept for reuse; optionally huge pages.

Why: every activation of the transforms is a fresh allocation of tens of MB, which glibc maps
anew and the kernel faults in, layer after layer, image after image. On our 2-core AMD EPYC
machine the system time of one 768x512 encode swung from 10 to 280 ms between runs, and the
encoder's time with it. ``reuse_freed_memory`` removes those faults for tensors up to
REUSE_BYTES: glibc then serves them from its heap instead of mapping each anew
(``mallopt(M_MMAP_THRESHOLD)``), and keeps up to TRIM_BYTES of freed memory at the heap's top
instead of handing it back (``M_TRIM_THRESHOLD``). That is about a third of the coding time
of a 768x512 image (``bench/speed_ablation.py``, docs/performance.md). Larger tensors (tiles of
4K and 8K images) are still mapped and returned one by one: with no bound (``M_MMAP_MAX=0``)
heap fragmentation doubles the peak memory of those images.

``enable_huge_pages`` sets PyTorch's own switch, ``THP_MEM_ALLOC_ENABLE=1``: tensors of 2 MiB
and more are aligned to 2 MiB transparent huge pages and the kernel is asked for them
(``madvise``), so one fault maps 2 MiB. Without heap reuse it cuts decoding by 12-24% here;
with freed memory reused it buys nothing in steady state and makes each first touch of new
memory slower (a fresh process decoding 1080p: 3.4-3.7 s with it, 2.0-2.2 s without, and 10%
more peak memory), so the CLI does not call it. PyTorch reads the variable once, at the
first large allocation, so it must be set before the process builds its first network.
``reuse_freed_memory`` acts at once, on the allocations that follow.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

VARIABLE = "THP_MEM_ALLOC_ENABLE"
_THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
#: Tensors up to this size come from the heap and are reused (768x512's largest: 50 MB).
REUSE_BYTES = 64 << 20
#: Freed memory at the heap's top kept in the process, at most.
TRIM_BYTES = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_OLD_GLIBC_MAX = 32 << 20  # the largest mmap threshold glibc <= 2.34 accepts on 64-bit machines
_INT_MAX = 2**31 - 1
_GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TOP_PAD_")


def kernel_mode() -> str | None:
    """The kernel's THP mode ("always", "madvise" or "never"); None where there is none (not Linux)."""
    try:
        text = _THP_MODE.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def enable_huge_pages() -> bool:
    """Ask PyTorch for huge pages (unless the environment already says otherwise); True where
    the kernel will give them. Call before the first network is built: later it changes nothing."""
    os.environ.setdefault(VARIABLE, "1")
    return os.environ[VARIABLE] == "1" and kernel_mode() in ("always", "madvise")


def reuse_freed_memory(reuse_bytes: int = REUSE_BYTES, trim_bytes: int = TRIM_BYTES) -> bool:
    """Keep freed blocks of up to ``reuse_bytes`` in the process for the next tensors (glibc
    only); True where it was set. Process-wide and lasting: for programs that code many images,
    at the cost of up to ``trim_bytes`` more resident memory between them. Leaves glibc alone
    where the environment already tunes its malloc (e.g. ``MALLOC_MMAP_MAX_=0`` for training).
    glibc 2.34 and older refuse thresholds above 32 MiB: there the threshold is 32 MiB."""
    for value in (reuse_bytes, trim_bytes):
        if not 0 < value <= _INT_MAX:
            raise ValueError(f"mallopt takes a positive C int, got {value}")
    if any(name in os.environ for name in _GLIBC_VARIABLES) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, Windows)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # musl's mallopt does nothing and returns 0
    if not (mallopt(_M_MMAP_THRESHOLD, reuse_bytes) or mallopt(_M_MMAP_THRESHOLD, min(reuse_bytes, _OLD_GLIBC_MAX))):
        return False
    mallopt(_M_TRIM_THRESHOLD, trim_bytes)
    return True
