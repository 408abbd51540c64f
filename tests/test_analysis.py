"""sccodec.analysis and its commands: segmentation, descriptors and search from the sparse codes
of real files made here (codes, segment, index, similar)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from helpers import ASTRONAUT, astronaut_crop
from sccodec.analysis import Index, Match, cluster_grid, describe, read_codes, segment
from sccodec.analysis.index import INDEX_FORMAT
from sccodec.analysis.segment import majority_filter
from sccodec.cli import main
from sccodec.errors import FormatError, ModelMismatchError, ParameterError


def two_halves(height: int = 128, width: int = 192, seed: int = 0) -> np.ndarray:
    """Left half a smooth cool gradient, right half a warm, busy texture."""
    rng = np.random.default_rng(seed)
    half = width // 2
    img = np.zeros((height, width, 3))
    y, x = np.linspace(0, 1, height)[:, None], np.linspace(0, 1, half)[None, :]
    img[:, :half] = np.stack([40 + 20 * x + 0 * y, 90 + 60 * y + 0 * x, 170 + 40 * x * y], axis=-1)
    yy, xx = np.mgrid[0:height, 0 : width - half]
    img[:, half:] = np.stack([210 + 30 * np.sin(1.3 * xx + 0.7 * yy), 120 + 70 * np.sin(0.9 * xx - 1.1 * yy),
                              40 + 20 * np.cos(1.7 * yy)], axis=-1)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).round().astype(np.uint8)


def coffee_crop(height: int = 128, width: int = 128) -> np.ndarray:
    with Image.open(ASTRONAUT.with_name("coffee.jpg")) as im:
        small = np.asarray(im.convert("RGB").resize((im.width // 3, im.height // 3)))
    return np.ascontiguousarray(small[:height, :width])


@pytest.fixture(scope="module")
def files(codec, tmp_path_factory):
    """Real .scv files: two photos at two levels and the two-halves image."""
    folder = tmp_path_factory.mktemp("scv")
    paths = {}
    for name, pixels, quality in (("astronaut_q3", astronaut_crop(128, 128), 3),
                                  ("astronaut_q8", astronaut_crop(128, 128), 8),
                                  ("coffee_q3", coffee_crop(), 3), ("coffee_q8", coffee_crop(), 8),
                                  ("halves", two_halves(), 4)):
        paths[name] = folder / f"{name}.scv"
        paths[name].write_bytes(codec.encode(pixels, quality=quality))
    return paths


# ---------------------------------------------------------------- segmentation


def test_segment_separates_two_different_halves(files) -> None:
    codes = read_codes(files["halves"])
    labels = segment(codes, 2)
    assert labels.shape == (128, 192) and labels.dtype == np.uint8
    truth = np.zeros((128, 192), np.uint8)
    truth[:, 96:] = 1  # labels are numbered from the top-left: the left half is 0
    assert (labels == truth).mean() >= 0.95


def test_segment_is_deterministic_and_covers_the_image(files) -> None:
    codes = read_codes(files["astronaut_q8"])
    a = segment(codes, 4, seed=3)
    np.testing.assert_array_equal(a, segment(codes, 4, seed=3))
    assert a.shape == codes.image_size
    assert set(np.unique(a)) <= {0, 1, 2, 3} and a[0, 0] == 0
    # each 16x16 block has one label
    blocks = a.reshape(8, 16, 8, 16)
    assert np.all(blocks == blocks[:, :1, :, :1])


def test_cluster_grid_finds_known_groups() -> None:
    rng = np.random.default_rng(1)
    truth = np.zeros((12, 15), np.int32)
    truth[:, 5:] = 1
    truth[8:, 10:] = 2
    centres = np.array([[0, 0, 5], [5, 0, 0], [0, 5, 0]], np.float32)
    features = centres[truth] + rng.normal(0, 0.3, (12, 15, 3)).astype(np.float32)
    labels = cluster_grid(features, 3, smooth=0)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, truth)  # numbered in order of appearance, like truth


def test_position_weight_makes_compact_regions() -> None:
    """Identical features: without position there is nothing to split; with it, two halves."""
    features = np.ones((6, 10, 4), np.float32)
    assert np.all(cluster_grid(features, 2, smooth=0) == 0)
    labels = cluster_grid(features, 2, position_weight=1.0, smooth=0)
    assert set(np.unique(labels)) == {0, 1}
    assert np.all(labels[:, :4] == 0) and np.all(labels[:, 6:] == 1)


def test_majority_filter_removes_isolated_labels_and_keeps_edges() -> None:
    labels = np.zeros((7, 8), np.int32)
    labels[:, 4:] = 1
    speckled = labels.copy()
    speckled[3, 1] = 1
    speckled[5, 6] = 0
    np.testing.assert_array_equal(majority_filter(speckled), labels)


def test_bad_k_is_a_parameter_error(files) -> None:
    codes = read_codes(files["halves"])  # 8 x 12 positions
    for k in (0, -1, 8 * 12 + 1, 2.5, True):
        with pytest.raises(ParameterError):
            segment(codes, k)
    with pytest.raises(ParameterError):
        cluster_grid(np.zeros((4, 4)), 2)
    with pytest.raises(ParameterError):
        segment(codes, 2, smooth=-1)


# ---------------------------------------------------------------- descriptors and index


def test_descriptor_shape_and_norm(files, model_file) -> None:
    d = describe(read_codes(files["coffee_q3"]))
    assert d.shape == (2 * model_file.config.latent,) and d.dtype == np.float32
    assert abs(float(np.linalg.norm(d)) - 1.0) < 1e-5


def test_same_image_at_another_level_is_nearer_than_another_image(files) -> None:
    d = {name: describe(read_codes(path)) for name, path in files.items()}
    for image, other in (("astronaut", "coffee"), ("coffee", "astronaut")):
        same = np.linalg.norm(d[f"{image}_q3"] - d[f"{image}_q8"])
        different = np.linalg.norm(d[f"{image}_q3"] - d[f"{other}_q8"])
        assert same < different / 2, (image, same, different)


def test_index_save_load_and_query(files, tmp_path) -> None:
    names = ["astronaut_q8", "coffee_q8", "halves"]
    index = Index.build(files[n] for n in names)
    assert len(index) == 3 and index.descriptors.shape[0] == 3
    header = read_codes(files["halves"]).header
    assert index.model == f"{header.model}@{header.weights_hash.hex()}"
    path = tmp_path / "index.npz"
    index.save(path)
    assert not list(tmp_path.glob(".*.tmp"))
    with np.load(path, allow_pickle=False) as npz:
        assert npz["format"].item() == INDEX_FORMAT
    loaded = Index.load(path)
    assert loaded.names == tuple(str(files[n]) for n in names)
    np.testing.assert_array_equal(loaded.descriptors, index.descriptors)
    assert loaded.model == index.model

    matches = loaded.query(read_codes(files["astronaut_q3"]), k=10)
    assert len(matches) == 3 and isinstance(matches[0], Match)
    assert matches[0].name == str(files["astronaut_q8"])
    assert [m.distance for m in matches] == sorted(m.distance for m in matches)
    assert loaded.query(read_codes(files["coffee_q3"]), k=1)[0].name == str(files["coffee_q8"])
    # a descriptor as the query: itself at distance 0
    top = loaded.query(index.descriptors[2], k=2)
    assert top[0] == Match(str(files["halves"]), pytest.approx(0.0, abs=1e-5))


def test_index_from_descriptors_and_checks() -> None:
    index = Index.from_descriptors(["a", "b", "c"], np.eye(3))
    assert [m.name for m in index.query(np.array([0.1, 0.9, 0.0]), k=2)] == ["b", "a"]
    with pytest.raises(ParameterError):
        index.query(np.ones(4))
    with pytest.raises(ParameterError):
        index.query(np.ones(3), k=0)
    with pytest.raises(ParameterError):
        Index.from_descriptors(["a"], np.eye(3))


def test_query_of_another_models_file_is_refused(files) -> None:
    codes = read_codes(files["halves"])
    index = Index.from_descriptors(["x"], describe(codes)[None], model="other-model@0011223344556677")
    with pytest.raises(ModelMismatchError):
        index.query(codes)


def test_build_skips_unreadable_files_when_asked(files, tmp_path) -> None:
    bad = tmp_path / "bad.scv"
    bad.write_bytes(b"not an scv file")
    with pytest.raises(FormatError):
        Index.build([files["halves"], bad])
    skipped = []
    index = Index.build([files["halves"], bad], on_error=lambda name, e: skipped.append(name))
    assert index.names == (str(files["halves"]),) and skipped == [str(bad)]


def test_load_refuses_what_is_not_an_index(tmp_path) -> None:
    for name, content in (("text.npz", b"hello"), ("empty.npz", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(FormatError, match=name):
            Index.load(tmp_path / name)
    np.savez(tmp_path / "other.npz", descriptors=np.eye(2))
    with pytest.raises(FormatError, match="not an sccodec index"):
        Index.load(tmp_path / "other.npz")
    with pytest.raises(FormatError, match="missing.npz"):
        Index.load(tmp_path / "missing.npz")


def test_import_does_not_load_scikit_learn(tmp_path) -> None:
    script = ("import sys\n"
              "import sccodec.analysis\n"
              "for name in ('sklearn', 'torch', 'onnxruntime'):\n"
              "    assert name not in sys.modules, name + ' was imported'\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- commands


@pytest.fixture
def run():
    """The CLI in-process, stderr apart; an exception escaping a command fails the test."""
    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sccodec: error:"), result.stderr
    return lines[0]


def test_codes_command_summary(run, files) -> None:
    result = run("codes", files["halves"])
    assert result.exit_code == 0, result.stderr
    codes = read_codes(files["halves"])
    assert f"{np.count_nonzero(codes.symbols)} of {codes.symbols.size}" in result.output
    assert "8x12 positions" in result.output and "top atoms" in result.output


def test_codes_command_json(run, files) -> None:
    result = run("codes", files["coffee_q3"], "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    codes = read_codes(files["coffee_q3"])
    sparse = codes.sparse()
    assert record["nonzeros"] == len(sparse) == len(record["codes"]["values"])
    assert record["grid"] == list(codes.grid_size) and record["atoms"] == codes.atoms
    np.testing.assert_array_equal(record["codes"]["positions"], sparse.positions)
    np.testing.assert_array_equal(record["codes"]["atoms"], sparse.atoms)
    np.testing.assert_array_equal(np.array(record["codes"]["values"], np.float32), sparse.values)
    assert sum(t["positions"] for t in record["top_atoms"]) <= record["nonzeros"]


def test_codes_command_npz(run, files, tmp_path) -> None:
    out = tmp_path / "codes.npz"
    assert run("codes", files["halves"], "--npz", out).exit_code == 0
    codes = read_codes(files["halves"])
    with np.load(out, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["symbols"], codes.symbols)
        np.testing.assert_array_equal(npz["values"], codes.values)
        np.testing.assert_array_equal(npz["step"], codes.step)
        assert int(npz["stride"]) == 16 and tuple(npz["image_size"]) == (128, 192)
    one_line_error(run("codes", files["halves"], "--npz", out), 3)  # exists: --force to replace
    assert run("codes", files["halves"], "--npz", out, "--force").exit_code == 0
    one_line_error(run("codes", files["halves"], "--npz", out, "--json"), 2)


def test_codes_command_bad_input(run, tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "notes.txt: not an .scv file" in one_line_error(run("codes", text), 1)
    one_line_error(run("codes", tmp_path / "missing.scv"), 1)


def test_segment_command(run, files, tmp_path) -> None:
    labels_path, overlay_path = tmp_path / "labels.png", tmp_path / "overlay.png"
    result = run("segment", files["halves"], "-k", 2, "-o", labels_path, "--overlay", overlay_path)
    assert result.exit_code == 0, result.stderr
    with Image.open(labels_path) as im:
        assert (im.mode, im.size) == ("L", (192, 128))
        labels = np.asarray(im)
    np.testing.assert_array_equal(labels, segment(read_codes(files["halves"]), 2))
    with Image.open(overlay_path) as im:
        assert (im.mode, im.size) == ("RGB", (192, 128))
        overlay = np.asarray(im).astype(int)
    # the two halves are tinted with different colours
    assert np.abs(overlay[:, :96].mean(axis=(0, 1)) - overlay[:, 96:].mean(axis=(0, 1))).max() > 20


def test_segment_command_errors(run, files, tmp_path) -> None:
    out = tmp_path / "labels.png"
    for k in (0, 257):
        assert "-k" in one_line_error(run("segment", files["halves"], "-k", k, "-o", out), 2)
    assert "positions" in one_line_error(run("segment", files["halves"], "-k", 97, "-o", out), 2)
    one_line_error(run("segment", files["halves"], "-k", 2, "-o", tmp_path / "labels.jpg"), 2)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "not an .scv file" in one_line_error(run("segment", text, "-k", 2, "-o", out), 1)
    assert not out.exists()
    out.write_bytes(b"keep")
    one_line_error(run("segment", files["halves"], "-k", 2, "-o", out), 3)
    assert out.read_bytes() == b"keep"


def test_index_and_similar_commands(run, files, tmp_path) -> None:
    folder = files["halves"].parent
    (folder / "broken.scv").write_bytes(b"\x89SCV\r\n\x1a\n broken")
    index_path = tmp_path / "index.npz"
    try:
        result = run("index", folder, "-o", index_path)
    finally:
        (folder / "broken.scv").unlink()
    assert result.exit_code == 1  # one file could not be read ...
    assert "broken.scv" in result.stderr and "5 of 6 files indexed" in result.stderr
    assert len(Index.load(index_path)) == 5  # ... and the others are indexed

    result = run("similar", files["coffee_q3"], "--index", index_path, "-k", 3)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    rank, distance, name = lines[0].split(maxsplit=2)
    assert (rank, float(distance), name) == ("1", 0.0, str(files["coffee_q3"]))
    assert lines[1].split(maxsplit=2)[2] == str(files["coffee_q8"])

    records = json.loads(run("similar", files["astronaut_q3"], "--index", index_path, "--json").stdout)
    assert [r["rank"] for r in records] == [1, 2, 3, 4, 5]
    assert {records[0]["name"], records[1]["name"]} == {str(files["astronaut_q3"]), str(files["astronaut_q8"])}


def test_index_and_similar_command_errors(run, files, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run("index", empty, "-o", tmp_path / "index.npz"), 1)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "notes.txt" in one_line_error(run("similar", files["halves"], "--index", text), 1)
    index_path = tmp_path / "index.npz"
    assert run("index", files["halves"], "-o", index_path).exit_code == 0
    one_line_error(run("similar", files["halves"], "--index", index_path, "-k", 0), 2)
    one_line_error(run("similar", text, "--index", index_path), 1)
