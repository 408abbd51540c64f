"""Fewer page faults per layer (Linux): huge pages for large tensors, and freed memory kept for reuse.

Why: every activation of the transforms is a fresh allocation of tens of MB, which
glibc maps anew and the kernel faults in 4 KiB at a time, layer after layer, image after
image. On our 2-core AMD EPYC machine huge pages cut decoding a 768x512 image by 12-24%
(``bench/speed_ablation.py``, "Speed" in the README; encoding: no clear change). PyTorch's own
switch, ``THP_MEM_ALLOC_ENABLE=1``, aligns tensors of 2 MiB and more to huge pages and asks the
kernel for them (``madvise``), so one fault maps 2 MiB. Peak memory stays about the same (``bench/memory.py``).

The faults still cost: the system time of one 768x512 encode swung from 10 to 280 ms between
runs, which made the encoder's time swing with it. ``reuse_freed_memory`` removes them for
tensors up to REUSE_BYTES: glibc then serves those from its heap instead of mapping each anew
(``mallopt(M_MMAP_THRESHOLD)``), and keeps up to TRIM_BYTES of freed memory at the heap's top
instead of handing it back (``M_TRIM_THRESHOLD``). Larger tensors (tiles of 4K and 8K images)
are still mapped and returned one by one: with no bound (``M_MMAP_MAX=0``, tried first) heap
fragmentation doubled the peak memory of those images.

PyTorch reads the variable once, at the first large allocation, so it must be set before the
process builds its first network: the CLI, which owns its process, does it first thing; a
Python program calls ``sccodec.enable_huge_pages()`` at start-up or sets the variable itself.
``reuse_freed_memory`` acts at once, on the allocations that follow.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

VARIABLE = "THP_MEM_ALLOC_ENABLE"
_THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
#: Tensors up to this size come from the heap and are reused (768x512's largest: 50 MB).
REUSE_BYTES = 64 << 20
#: Freed memory at the heap's top kept in the process, at most.
TRIM_BYTES = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
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
    where the environment already tunes its malloc (e.g. ``MALLOC_MMAP_MAX_=0`` for training)."""
    if any(name in os.environ for name in _GLIBC_VARIABLES) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, Windows)
        return False
    # musl's mallopt does nothing and returns 0
    return bool(mallopt(_M_MMAP_THRESHOLD, reuse_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_bytes))
