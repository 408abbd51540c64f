"""sccodec.enable_huge_pages: sets PyTorch's switch, respects the user's, never changes results."""
from __future__ import annotations

import os
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


def test_coding_with_huge_pages_matches_coding_without():
    """The allocator changes where tensors live, never what they hold: same bytes, same pixels.
    The image is large enough (activations of several MiB) that the huge-page path is taken."""
    script = ("import hashlib, numpy as np, sccodec\n"
              "sccodec.enable_huge_pages()\n"
              "img = (np.indices((256, 320, 3)).sum(0) * 5 % 256).astype(np.uint8)\n"
              "data = sccodec.encode(img, quality=3)\n"
              "px = np.asarray(sccodec.decode(data))\n"
              "print(hashlib.sha256(data + px.tobytes()).hexdigest())\n")
    digests = {}
    for value in ("1", "0"):
        env = {**os.environ, allocator.VARIABLE: value}
        digests[value] = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                        check=True, env=env).stdout
    assert digests["1"] == digests["0"] != ""
