"""sccodec.enable_huge_pages: sets PyTorch's switch, respects the user's, never changes results."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import sccodec
from sccodec import allocator


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(allocator.VARIABLE, raising=False)
    return monkeypatch


def test_sets_the_variable_and_reports_whether_the_kernel_helps(clean_env):
    on = sccodec.enable_huge_pages()
    assert os.environ[allocator.VARIABLE] == "1"
    assert on is (allocator.kernel_mode() in ("always", "madvise"))


def test_an_explicit_choice_in_the_environment_wins(clean_env):
    clean_env.setenv(allocator.VARIABLE, "0")
    assert sccodec.enable_huge_pages() is False
    assert os.environ[allocator.VARIABLE] == "0"


def test_kernel_mode_parses_the_bracketed_choice(tmp_path, monkeypatch):
    mode = tmp_path / "enabled"
    mode.write_text("always [madvise] never\n")
    monkeypatch.setattr(allocator, "_THP_MODE", mode)
    assert allocator.kernel_mode() == "madvise"
    mode.write_text("garbage\n")
    assert allocator.kernel_mode() is None
    monkeypatch.setattr(allocator, "_THP_MODE", tmp_path / "missing")
    assert allocator.kernel_mode() is None


def _code_in_child(setup: str, env: dict[str, str]) -> list[str]:
    """Run ``setup``, then encode and decode a generated image twice, in a fresh process; its
    printed lines, the last the digest of the bytes and pixels (the child checks both runs agree).
    The image is large enough (activations of several MiB) for the allocator switches to matter."""
    script = ("import hashlib, numpy as np, sccodec\n" + setup + "\n"
              "img = (np.indices((256, 320, 3)).sum(0) * 7 % 256).astype(np.uint8)\n"
              "outs = []\n"
              "for _ in range(2):\n"
              "    data = sccodec.encode(img, quality=4)\n"
              "    outs.append(data + np.asarray(sccodec.decode(data)).tobytes())\n"
              "assert outs[0] == outs[1]\n"
              "print(hashlib.sha256(outs[0]).hexdigest())\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env=env).stdout.splitlines()


def test_coding_with_huge_pages_matches_coding_without():
    """The allocator changes where tensors live, never what they hold: same bytes, same pixels."""
    digests = {value: _code_in_child("sccodec.enable_huge_pages()", {**os.environ, allocator.VARIABLE: value})
               for value in ("1", "0")}
    assert digests["1"] == digests["0"] != []


@pytest.fixture
def untuned_malloc(monkeypatch):
    for name in (*allocator._GLIBC_VARIABLES, "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class _Mallopt:
    """Records mallopt calls (the test checks their exact arguments); ``refuse_above``: values
    it rejects, as glibc <= 2.34 rejects mmap thresholds above 32 MiB."""

    def __init__(self, result: int = 1, refuse_above: int | None = None) -> None:
        self.calls, self.result, self.refuse_above = [], result, refuse_above

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 0 if self.refuse_above is not None and value > self.refuse_above else self.result


def _fake_libc(monkeypatch, mallopt):
    class Libc:
        pass
    libc = Libc()  # accepts the argtypes/restype the real function gets
    if mallopt is not None:
        libc.mallopt = mallopt
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)


def test_reuse_falls_back_to_what_older_glibc_accepts(untuned_malloc):
    mallopt = _Mallopt(refuse_above=32 << 20)
    _fake_libc(untuned_malloc, mallopt)
    assert sccodec.reuse_freed_memory(trim_bytes=16 << 20) is True
    assert mallopt.calls == [(allocator._M_MMAP_THRESHOLD, allocator.REUSE_BYTES),
                             (allocator._M_MMAP_THRESHOLD, 32 << 20), (allocator._M_TRIM_THRESHOLD, 16 << 20)]


@pytest.mark.parametrize("value", [0, -1, 2**31])
def test_reuse_refuses_values_mallopt_cannot_take(untuned_malloc, value):
    with pytest.raises(ValueError, match="positive C int"):
        sccodec.reuse_freed_memory(reuse_bytes=value)


def test_reuse_sets_glibc_thresholds(untuned_malloc):
    mallopt = _Mallopt()
    _fake_libc(untuned_malloc, mallopt)
    assert sccodec.reuse_freed_memory() is True
    assert sorted(mallopt.calls) == sorted([(allocator._M_MMAP_THRESHOLD, allocator.REUSE_BYTES),
                                            (allocator._M_TRIM_THRESHOLD, allocator.TRIM_BYTES)])


@pytest.mark.parametrize("name, value", [("MALLOC_MMAP_MAX_", "0"), ("MALLOC_TRIM_THRESHOLD_", "100000000000"),
                                         ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1000000")])
def test_reuse_leaves_a_tuned_environment_alone(untuned_malloc, name, value):
    untuned_malloc.setenv(name, value)
    mallopt = _Mallopt()
    _fake_libc(untuned_malloc, mallopt)
    assert sccodec.reuse_freed_memory() is False
    assert mallopt.calls == []


@pytest.mark.parametrize("mallopt", [None, _Mallopt(result=0)], ids=["no mallopt", "mallopt refuses"])
def test_reuse_reports_a_c_library_without_it(untuned_malloc, mallopt):
    _fake_libc(untuned_malloc, mallopt)
    assert sccodec.reuse_freed_memory() is False


def test_coding_with_reused_memory_matches_coding_without():
    """Like huge pages: freed memory reused (glibc) changes nothing in the bytes or pixels."""
    env = {k: v for k, v in os.environ.items() if k not in (*allocator._GLIBC_VARIABLES, "GLIBC_TUNABLES")}
    reused = _code_in_child("print(sccodec.reuse_freed_memory())", env)
    plain = _code_in_child("", env)
    assert reused[-1] == plain[-1] != ""
    if platform.libc_ver()[0] == "glibc":  # the switch was really on
        assert reused[0] == "True"
