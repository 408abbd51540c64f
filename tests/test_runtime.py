"""The CPU coding path: ONNX Runtime graphs bound to the weights, checked against the torch reference."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import astronaut_crop, textured_image
from sccodec.api import Codec
from sccodec.errors import ModelMismatchError
from sccodec.model.runtime import GRAPHS, OPTIONAL_GRAPHS, RuntimeModel, graph_paths
from sccodec.model.torch_model import TorchModel
from sccodec.weights import available_models, load_model_file, read_model_file

CONFORMANCE = Path(__file__).resolve().parent / "data" / "conformance"


@pytest.fixture(scope="module", params=available_models())
def models(request):
    """(runtime, torch reference) of each shipped model, both on the CPU."""
    model_file = load_model_file(request.param)
    return model_file, model_file.network("cpu", threads=2), TorchModel(model_file.build())


def test_every_shipped_model_has_graphs_bound_to_its_weights(models) -> None:
    model_file, runtime, _ = models
    assert isinstance(runtime, RuntimeModel)
    paths = graph_paths(model_file.path)
    assert all(paths[name].is_file() and paths[name].stat().st_size < 200_000 for name in GRAPHS)
    # the gradient graph (efforts 3-4 without torch) for every model with a plain GDN synthesis
    gdn = model_file.config.nonlinearity == "gdn" and not model_file.config.synthesis_blocks
    assert runtime.gradient_available == gdn == paths["gradient"].is_file()


def test_the_gradient_graph_gives_torchs_gradient_over_a_region(models) -> None:
    model_file, runtime, reference = models
    if not runtime.gradient_available:
        pytest.skip(f"{model_file.name} has no gradient graph")
    rng = np.random.default_rng(3)
    k = model_file.config.atoms
    symbols = (rng.integers(-2, 3, (k, 5, 7)) * (rng.random((k, 5, 7)) < 0.1)).astype(np.int32)
    target = rng.random((1, 3, 50, 90)).astype(np.float32)
    region = (slice(10, 60), slice(5, 95))
    for quality_index in (1, 8):
        want_error, want = reference.distortion_gradient(symbols, quality_index, target, region)
        error, got = runtime.distortion_gradient(symbols, quality_index, target, region)
        assert abs(error - want_error) <= 1e-4 * want_error
        np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_each_graph_computes_what_its_torch_module_does(models) -> None:
    """No silent tracing gaps: latents, real-valued symbols and pixels, graph against torch."""
    model_file, runtime, reference = models
    x = (textured_image(48, 80).astype(np.float32) / 255).transpose(2, 0, 1)[None].copy()
    y = reference.analyze(x)
    np.testing.assert_allclose(runtime.analyze(x), y, atol=1e-4)
    for q in (0, model_file.config.qualities - 1):
        s = reference.scaled_symbols(y, q)
        np.testing.assert_allclose(runtime.scaled_symbols(y, q), s, atol=1e-4)
        symbols = np.rint(s).astype(np.int32)
        a, b = (np.round(m.decode_symbols(symbols, q) * 255) for m in (runtime, reference))
        assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3


@pytest.mark.parametrize("name", sorted(p.name for p in CONFORMANCE.glob("*.scv")))
def test_runtime_decodes_within_one_level_of_the_torch_reference(name) -> None:
    data = (CONFORMANCE / name).read_bytes()
    model_file = load_model_file(Codec().parse_symbols(data).header.model)
    runtime = Codec(model_file, "cpu").decode_array(data)[0].astype(int)
    reference = Codec(model_file, "cpu", network=TorchModel(model_file.build())).decode_array(data)[0].astype(int)
    assert np.abs(runtime - reference).max() <= 1


@pytest.mark.parametrize("tile", [128, 64], ids=["one tile", "tiles side by side"])
def test_files_are_identical_with_one_and_two_threads(model_file, tile) -> None:
    """One tile: the runtime's 1- and 2-thread convolutions. Several: two tiles at a time on
    1-thread networks against one at a time (sccodec.tile_workers). Decoding: one window, 1 or 2
    threads."""
    img = astronaut_crop(96, 128)
    one, two = (Codec(model_file, "cpu", threads=n) for n in (1, 2))
    for quality in (2, 6, 10):
        data = one.encode(img, quality, tile=tile)
        assert two.encode(img, quality, tile=tile) == data
        np.testing.assert_array_equal(one.decode_array(data)[0], two.decode_array(data)[0])


def test_the_gradient_graph_is_exported_and_checked_against_torch(tmp_path) -> None:
    from sccodec.train.graphs import export_graphs

    shipped = load_model_file("scvae-gdn")
    copy = tmp_path / shipped.path.name
    shutil.copy(shipped.path, copy)
    errors = export_graphs(copy, ("gradient",))
    assert list(errors) == ["gradient"] and errors["gradient"] < 1e-4
    assert graph_paths(copy)["gradient"].is_file() and not graph_paths(copy)["synthesis"].is_file()


def test_graphs_of_other_weights_are_refused(tmp_path, model_file) -> None:
    other = load_model_file(next(m for m in available_models() if m != model_file.name))
    fake = tmp_path / f"{model_file.name}.safetensors"
    shutil.copy(other.path, fake)  # other weights under this model's graphs
    for name, path in graph_paths(model_file.path).items():
        if path.is_file():
            shutil.copy(path, graph_paths(fake)[name])
    runtime = read_model_file(fake).network("cpu")
    with pytest.raises(ModelMismatchError, match="exported from weights"):
        runtime.decode_symbols(np.zeros((other.config.atoms, 1, 1), np.int32), 0)
    with pytest.raises(ModelMismatchError, match="exported from weights"):
        runtime.analyze(np.zeros((1, 3, 16, 16), np.float32))


def test_missing_graphs_name_the_command_that_writes_them(tmp_path, model_file) -> None:
    bare = tmp_path / "bare.safetensors"
    shutil.copy(model_file.path, bare)
    with pytest.raises(ModelMismatchError, match="export-graphs"):
        read_model_file(bare).network("cpu")


def test_an_export_that_computes_something_else_is_refused(tmp_path, model_file) -> None:
    """The export's own check: a graph that does not match its module is an error, not a file."""
    import torch

    from sccodec.train.graphs import _check

    class Dimmer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model_file.build().to(memory_format=torch.contiguous_format)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.g_a(x) * 0.95

    x = torch.rand(1, 3, 32, 32)
    analysis = graph_paths(model_file.path)["analysis"]
    assert _check(analysis, Dimmer().net.g_a, (x,)) < 1e-3
    with pytest.raises(RuntimeError, match="does not compute what its torch module does"):
        _check(analysis, Dimmer(), (x,))
    assert GRAPHS + OPTIONAL_GRAPHS == tuple(graph_paths(model_file.path))


def test_coding_on_the_cpu_never_imports_torch(tmp_path) -> None:
    script = ("import sys, numpy as np, sccodec; "
              "img = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3); "
              "out = sccodec.decode(sccodec.encode(img)); "
              "assert out.size == (64, 48), out.size; "
              "assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
