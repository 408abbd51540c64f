"""All-or-nothing writes (sccodec.atomic): the temp file is flushed to disk (fsync) before it is
renamed over the target, and the folder after it, so that a power cut cannot leave an empty or
partial file under the final name, nor lose the new name; any failure leaves no temp file
behind and the target as it was. ``overwrite=False`` never replaces a file, not even one that
appears after the caller checked.

The calls are recorded by wrapping ``os.fsync``, ``os.replace`` and ``os.link`` as
sccodec.atomic sees them.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

import sccodec.atomic as atomic

DATA = b"the whole file, " * 64


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    """Every fsync of a file ("fsync", with the inode and size of the file it flushed) or of a
    folder ("fsync_dir", with its inode), replace and link (with the source's inode and size),
    in order; all still do their real work."""
    log: list[tuple] = []
    real_fsync, real_replace, real_link = atomic.os.fsync, atomic.os.replace, atomic.os.link

    def fsync(fd):
        st = os.fstat(fd)
        log.append(("fsync_dir", st.st_ino) if stat.S_ISDIR(st.st_mode) else ("fsync", st.st_ino, st.st_size))
        return real_fsync(fd)

    def replace(src, dst):
        st = os.stat(src)
        log.append(("replace", st.st_ino, st.st_size, Path(src), Path(dst)))
        return real_replace(src, dst)

    def link(src, dst, **kwargs):
        st = os.stat(src)
        log.append(("link", st.st_ino, st.st_size, Path(src), Path(dst)))
        return real_link(src, dst, **kwargs)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    monkeypatch.setattr(atomic.os, "link", link)
    return log


def write_with_atomic_path(target: Path, data: bytes) -> None:
    with atomic.atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


@pytest.mark.parametrize("writer", [atomic.write_bytes, write_with_atomic_path])
def test_the_complete_temp_file_is_fsynced_before_the_rename(tmp_path, calls, writer) -> None:
    target = tmp_path / "out.scv"
    writer(target, DATA)
    assert target.read_bytes() == DATA and sorted(tmp_path.iterdir()) == [target]
    renames = [i for i, c in enumerate(calls) if c[0] == "replace"]
    assert len(renames) == 1, calls
    _, inode, size, src, dst = calls[renames[0]]
    assert dst == target and src.parent == target.parent, "the temp file must sit beside the target"
    synced = [c for c in calls[: renames[0]] if c[0] == "fsync" and c[1] == inode]
    assert synced, f"the temp file was renamed over the target without an fsync first: {calls}"
    assert synced[-1][2] == size == len(DATA), "fsync must come after the last byte is written"


def test_text_writes_are_fsynced_too(tmp_path, calls) -> None:
    target = tmp_path / "report.json"
    atomic.write_text(target, "{}\n")
    assert [c[0] for c in calls] == ["fsync", "replace", "fsync_dir"] and calls[0][1] == calls[1][1]
    assert target.read_text() == "{}\n"


def failing_call(*args) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("failure", ["body", "interrupt", "fsync", "replace"])
@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_write_leaves_no_temp_file_and_the_target_as_it_was(tmp_path, monkeypatch, failure,
                                                                     existing) -> None:
    target = tmp_path / "out.png"
    if existing:
        target.write_bytes(b"precious old content")
        before = os.stat(target)
    if failure in ("fsync", "replace"):
        monkeypatch.setattr(atomic.os, failure, failing_call)
    expected = {"body": RuntimeError, "interrupt": KeyboardInterrupt}.get(failure, OSError)
    with pytest.raises(expected):
        with atomic.atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.exists()
            tmp.write_bytes(DATA[:100])
            if failure == "body":
                raise RuntimeError("killed mid-write")
            if failure == "interrupt":
                raise KeyboardInterrupt
            tmp.write_bytes(DATA)
    if existing:
        after = os.stat(target)
        assert target.read_bytes() == b"precious old content"
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "target was replaced"
        assert sorted(tmp_path.iterdir()) == [target], "temp file left behind"
    else:
        assert not list(tmp_path.iterdir()), "a partial target or a temp file was left behind"


def test_write_bytes_failing_leaves_nothing(tmp_path, monkeypatch) -> None:
    target = tmp_path / "out.scv"
    target.write_bytes(b"old")
    monkeypatch.setattr(atomic.os, "fsync", failing_call)
    with pytest.raises(OSError, match="No space"):
        atomic.write_bytes(target, DATA)
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]


# ---------------------------------------------------------------- the folder is flushed too


@pytest.mark.parametrize("overwrite", [True, False])
def test_the_folder_is_fsynced_after_the_rename(tmp_path, calls, overwrite) -> None:
    """The rename (or link) is an entry in the folder: without a folder fsync, a power cut can
    lose the new name even though the data itself was flushed."""
    target = tmp_path / "out.scv"
    atomic.write_bytes(target, DATA, overwrite=overwrite)
    assert target.read_bytes() == DATA and sorted(tmp_path.iterdir()) == [target]
    kinds = [c[0] for c in calls]
    assert kinds == ["fsync", "replace" if overwrite else "link", "fsync_dir"], calls
    assert calls[-1][1] == os.stat(tmp_path).st_ino, "the target's own folder is the one flushed"


@pytest.mark.parametrize("err", [errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF])
def test_a_folder_fsync_the_platform_does_not_do_is_skipped(tmp_path, monkeypatch, err) -> None:
    real_fsync = atomic.os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(err, os.strerror(err))
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic.write_bytes(tmp_path / "out.scv", DATA)
    assert (tmp_path / "out.scv").read_bytes() == DATA and len(list(tmp_path.iterdir())) == 1


def test_a_folder_fsync_io_error_is_raised(tmp_path, monkeypatch) -> None:
    """EIO is a real failure (the name may not be on disk): the caller must hear of it."""
    real_fsync = atomic.os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        atomic.write_bytes(tmp_path / "out.scv", DATA)
    assert [p.name for p in tmp_path.iterdir()] == ["out.scv"], "no temp file left"


# ---------------------------------------------------------------- never replacing a file


def no_hard_links(monkeypatch) -> None:
    """A file system without hard links (FAT, exFAT, some FUSE mounts): link() fails with EPERM."""
    def link(src, dst, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", link)


@pytest.mark.parametrize("links", ["hard links", "no hard links"])
def test_no_overwrite_writes_a_new_file_whole(tmp_path, monkeypatch, links) -> None:
    if links == "no hard links":
        no_hard_links(monkeypatch)
    target = tmp_path / "new.png"
    atomic.write_bytes(target, DATA, overwrite=False)
    assert target.read_bytes() == DATA and sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("links", ["hard links", "no hard links"])
@pytest.mark.parametrize("existing", ["file", "dangling symlink", "folder"])
def test_no_overwrite_leaves_an_existing_target_alone(tmp_path, monkeypatch, links, existing) -> None:
    if links == "no hard links":
        no_hard_links(monkeypatch)
    target = tmp_path / "photo.png"
    if existing == "file":
        target.write_bytes(b"the original")
    elif existing == "folder":
        target.mkdir()
    else:
        target.symlink_to(tmp_path / "nowhere")
    before = os.lstat(target)
    with pytest.raises(FileExistsError):
        atomic.write_bytes(target, DATA, overwrite=False)
    after = os.lstat(target)
    assert (after.st_ino, after.st_mtime_ns, after.st_mode) == (before.st_ino, before.st_mtime_ns, before.st_mode)
    if existing == "file":
        assert target.read_bytes() == b"the original"
    assert [p.name for p in tmp_path.iterdir()] == ["photo.png"], "temp file left behind"


@pytest.mark.parametrize("links", ["hard links", "no hard links"])
def test_no_overwrite_does_not_race_a_file_that_appears_after_the_check(tmp_path, monkeypatch, links) -> None:
    """The check and the rename are one step: a file created while the data is written (after
    any exists-check the caller made, before the rename) is never replaced."""
    if links == "no hard links":
        no_hard_links(monkeypatch)
    target = tmp_path / "photo.png"
    assert not target.exists()  # the caller's check passes ...
    with pytest.raises(FileExistsError):
        with atomic.atomic_path(target, overwrite=False) as tmp:
            tmp.write_bytes(DATA)
            target.write_bytes(b"appeared meanwhile")  # ... then someone else creates the file
            appeared = os.stat(target)
    assert target.read_bytes() == b"appeared meanwhile"
    assert os.stat(target).st_ino == appeared.st_ino
    assert [p.name for p in tmp_path.iterdir()] == ["photo.png"], "temp file left behind"


def test_overwrite_true_still_replaces(tmp_path) -> None:
    target = tmp_path / "out.scv"
    target.write_bytes(b"old")
    atomic.write_bytes(target, DATA, overwrite=True)
    assert target.read_bytes() == DATA and sorted(tmp_path.iterdir()) == [target]


def test_a_failed_link_leaves_nothing(tmp_path, monkeypatch) -> None:
    """A link() failure that is not "no hard links here" (no space, I/O error) is raised, and
    neither the target nor the temp file is left."""
    def link(src, dst, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "link", link)
    with pytest.raises(OSError, match="No space"):
        atomic.write_bytes(tmp_path / "out.png", DATA, overwrite=False)
    assert not list(tmp_path.iterdir())


def test_without_hard_links_a_failed_rename_removes_the_claim(tmp_path, monkeypatch) -> None:
    no_hard_links(monkeypatch)
    monkeypatch.setattr(atomic.os, "replace", failing_call)
    with pytest.raises(OSError, match="No space"):
        atomic.write_bytes(tmp_path / "out.png", DATA, overwrite=False)
    assert not list(tmp_path.iterdir()), "the empty claim or the temp file was left behind"
