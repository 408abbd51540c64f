"""The README's Python examples run as written (in a folder holding photo.png)."""
from __future__ import annotations

import glob
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

README = Path(__file__).resolve().parent.parent / "README.md"
SAMPLE = Path(__file__).resolve().parent.parent / "sccodec" / "data" / "samples" / "coffee.jpg"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    Image.open(SAMPLE).crop((0, 0, 96, 64)).save(tmp_path / "photo.png")
    shutil.copy(SAMPLE, tmp_path / "photo2.jpg")
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README block {index}", "exec"), {"__name__": "__readme__"})


# encode/decode/info lines, optional [parts] dropped; globs are expanded when the line runs
COMMANDS = [re.sub(r"\s*\[[^\]]*\]", "", line.split("  #")[0]).split() for line in
            re.search(r"## Command line\n\n```bash\n(.*?)```", README.read_text(), flags=re.S)[1].splitlines()
            if re.match(r"sccodec (encode|decode|info) ", line) and "…" not in line.split("#")[0]]


def test_readme_command_line_walkthrough_runs_in_order(tmp_path, monkeypatch):
    """The shell examples, run one after the other in a folder holding photo.png, all succeed."""
    from click.testing import CliRunner

    from sccodec.cli import main

    assert len(COMMANDS) >= 6
    Image.open(SAMPLE).crop((0, 0, 96, 64)).save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    for argv in COMMANDS:
        args = [match for arg in argv[1:] for match in (sorted(glob.glob(arg)) if "*" in arg else [arg])]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (argv, result.output)
