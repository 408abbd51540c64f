"""Back large tensors with 2 MiB transparent huge pages (Linux): fewer page faults per layer.

Why: every activation of the synthesis transform is a fresh allocation of tens of MB, which
glibc maps anew and the kernel faults in 4 KiB at a time, layer after layer, image after
image. On our 2-core AMD EPYC machine huge pages cut decoding a 768x512 image by 12-24%
(``bench/speed_ablation.py``, "Speed" in the README; encoding: no clear change). PyTorch's own
switch, ``THP_MEM_ALLOC_ENABLE=1``, aligns tensors of 2 MiB and more to huge pages and asks the
kernel for them (``madvise``), so one fault maps 2 MiB. Peak memory stays about the same (``bench/memory.py``).

Rejected: keeping freed memory in the process (glibc's ``mallopt(M_MMAP_MAX, 0)``), which was
a little faster but, through heap fragmentation, doubled the peak memory of 4K and 8K images.

PyTorch reads the variable once, at the first large allocation, so it must be set before the
process builds its first network: the CLI, which owns its process, does it first thing; a
Python program calls ``sccodec.enable_huge_pages()`` at start-up or sets the variable itself.
"""
from __future__ import annotations

import os
from pathlib import Path

VARIABLE = "THP_MEM_ALLOC_ENABLE"
_THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


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
