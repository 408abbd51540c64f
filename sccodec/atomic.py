"""All-or-nothing file writes: every file sccodec writes appears whole or not at all.

A temp file in the target's folder (same file system, so the rename is atomic), flushed to
disk (fsync) and renamed over the target only once it is complete, then the folder flushed
too, so that the new name itself survives a power cut; on any error the temp file is removed
and the target is untouched. Used by the CLI outputs, the weights export, training
checkpoints and bench reports.

``overwrite=False`` never replaces a file, even one that appears while the data is written:
the complete temp file is hard-linked to the target name (``link`` fails if the name exists,
atomically: there is no moment between a check and the rename), then the temp name removed.
Where the file system has no hard links (FAT, exFAT, some network and FUSE mounts), the name
is claimed instead by creating it exclusively (O_EXCL) and the temp file renamed over that
claim: still nothing else is replaced, but a power cut in that moment can leave an empty file.
"""
from __future__ import annotations

import errno
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


# link() failing with these means "no hard links here", not "the name is taken"
_NO_HARD_LINKS = {errno.EPERM, errno.EACCES, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EINVAL,
                  getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.EOPNOTSUPP}
# fsync() of a folder failing with these means the platform or file system does not do it
_NO_FOLDER_SYNC = {errno.EINVAL, errno.EBADF, errno.EACCES, errno.EPERM, errno.EISDIR,
                   getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.EOPNOTSUPP}


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # so that a power cut cannot leave an empty file under the final name
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename, a new link) to disk; a no-op where folders cannot
    be opened or synced (Windows, some network file systems). Other errors (EIO) are raised."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as e:
        if e.errno in _NO_FOLDER_SYNC or e.errno == errno.ENOTDIR:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _NO_FOLDER_SYNC:
            raise
    finally:
        os.close(fd)


def _link_new(tmp: Path, target: Path) -> None:
    """Give the complete ``tmp`` the name ``target`` unless that name exists (FileExistsError)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        # No hard links: claim the name exclusively, then rename over our own claim.
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        try:
            os.replace(tmp, target)
        except BaseException:
            target.unlink(missing_ok=True)  # only our empty claim: the rename did not happen
            raise
        return
    os.unlink(tmp)


@contextmanager
def atomic_path(target: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp path to write; on normal exit it becomes ``target`` (OSError if it cannot).

    ``overwrite=False``: FileExistsError if ``target`` exists when the data is complete (also
    if it appeared after any check the caller made); the existing file is left as it was."""
    target = Path(target)
    tmp = _create_temp(target)
    try:
        yield tmp
        _fsync_file(tmp)
        if overwrite:
            os.replace(tmp, target)
        else:
            _link_new(tmp, target)
        fsync_folder(target.parent)  # the new name too, not only the data
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(target: str | Path) -> None:
    """Delete temp files a killed writer (SIGKILL, out of memory) left beside ``target``."""
    target = Path(target)
    for stale in target.parent.glob(f"{glob.escape(_temp_prefix(target))}.*.tmp"):
        stale.unlink(missing_ok=True)


def write_bytes(target: str | Path, data: bytes, *, overwrite: bool = True) -> None:
    with atomic_path(target, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str, *, overwrite: bool = True) -> None:
    write_bytes(target, text.encode(), overwrite=overwrite)
