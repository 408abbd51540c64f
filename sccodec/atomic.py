"""All-or-nothing file writes: every file sccodec writes appears whole or not at all.

A temp file in the target's folder (same file system, so the rename is atomic), flushed to
disk and renamed over the target only once it is complete; on any error the temp file is
removed and the target is untouched. Used by the CLI outputs, the weights export, training
checkpoints and bench reports.
"""
from __future__ import annotations

import glob
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _temp_prefix(target: Path) -> str:
    """``.NAME`` cut to 200 bytes (not characters: file-name limits count UTF-8 bytes), so that
    the temp name stays under the usual 255-byte limit wherever the target's name fits."""
    return "." + target.name.encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore")


def _create_temp(target: Path) -> Path:
    """A new empty file beside ``target``, created 0666 minus the umask like any user file
    (mkstemp would give 0600, and reading the umask means changing it, which is not thread-safe)."""
    for _ in range(100):
        tmp = target.with_name(f"{_temp_prefix(target)}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on normal exit it replaces ``target`` (OSError if it cannot)."""
    target = Path(target)
    tmp = _create_temp(target)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # so that a power cut cannot leave an empty file under the final name
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(target: str | Path) -> None:
    """Delete temp files a killed writer (SIGKILL, out of memory) left beside ``target``."""
    target = Path(target)
    for stale in target.parent.glob(f"{glob.escape(_temp_prefix(target))}.*.tmp"):
        stale.unlink(missing_ok=True)


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode())
