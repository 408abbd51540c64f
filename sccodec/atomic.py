"""All-or-nothing file writes: every file sccodec writes appears whole or not at all.

A temp file in the target's folder (same file system, so the rename is atomic), renamed over
the target only once it is complete; on any error the temp file is removed and the target is
untouched. Used by the CLI outputs, the weights export, training checkpoints and bench reports.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on normal exit it replaces ``target`` (OSError if it cannot)."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
