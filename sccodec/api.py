"""The public Python API: image -> .scv bytes -> image.

    encode:  image ─read_image─▶ tiles ─ImageModel.analyze, .scaled_symbols─▶ s
                   ─SymbolCoder.quantize, .encode_tile─▶ chunks ─bitstream.pack─▶ bytes
    decode:  bytes ─bitstream.parse─▶ chunks ─SymbolCoder.decode_tile─▶ symbols
                   ─ImageModel.decode_symbols─▶ tiles ─▶ image

``Codec`` composes an image model (``sccodec.model.interface``) and a symbol coder
(``sccodec.coder``), both built from one model file, and keeps them loaded for batch work;
``encode``/``decode``/``open`` are one-call shortcuts.
"""
from __future__ import annotations

import bisect
import functools
import importlib.util
import itertools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from sccodec import bitstream
from sccodec.bitstream import DEFAULT_MAX_PIXELS, ICC_CHUNK, MAX_TILE, Container, Header
from sccodec.atom_pairs import products_on_one_thread
from sccodec.coder import SymbolCoder
from sccodec.curvature import curvature_file_path
from sccodec.device import resolve_device
from sccodec.entropy import SymbolTables
from sccodec.errors import CorruptFileError, ImageInputError, ParameterError
from sccodec.image_io import ImageLike, from_planes, pad_to_multiple, read_image, to_image, to_planes, validate_icc
from sccodec.levels import DEFAULT_EFFORT, DEFAULT_QUALITY, EFFORTS, QUALITIES
from sccodec.metrics import psnr_rgb
from sccodec.model.config import Geometry, open_atoms
from sccodec.model.interface import ImageModel
from sccodec.refine import SCHEDULES, RefinementSettings, Schedule, lagrangian, refine
from sccodec.tile_workers import TileWorkers, available_cores
from sccodec.tiling import Box, assemble, latent_box, tile_boxes
from sccodec.weights import DEFAULT_MODEL, ModelFile, load_model_file

_NEEDS_TORCH = ("this model has no gradient graph, so efforts 3 and 4 refine the code through torch, which "
                "is not installed (pip install 'sccodec[torch]')")
DEFAULT_TILE = 1024
#: Decoding synthesises the image in windows of at most this many pixels a side, whatever tile
#: size the file declares: memory and time per window stay bounded (docs/format.md, reader limits).
SYNTHESIS_WINDOW = 1024


@dataclass(frozen=True)
class DecodedSymbols:
    """What parsing alone gives: the header and each tile's integer symbols (K, h, w)."""

    header: Header
    tiles: list[np.ndarray]
    ancillary: dict[bytes, bytes]  # e.g. b"iCCP": the ICC profile of the original


def parse_symbols(data: bytes | Container, model_file: ModelFile | None = None,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedSymbols:
    """Entropy-decode a file (bytes, or a parsed ``Container``) to integer symbols without
    building any neural network."""
    container = _parsed(data, max_pixels)
    h = container.header
    if model_file is None or (model_file.name, model_file.digest) != (h.model, h.weights_hash):
        model_file = load_model_file(h.model, h.weights_hash)
    return _parse_tiles(container, model_file.coder, model_file.geometry.stride)


def _parse_tiles(container: Container, coder: SymbolCoder, stride: int) -> DecodedSymbols:
    h = container.header
    if not 1 <= h.quality <= coder.qualities:
        raise CorruptFileError(f"quality {h.quality} does not exist in model '{h.model}'")
    reader = coder.reading(h.version, h.coder_version, h.classes_hash, h.pairs_hash)
    tiles = []
    with products_on_one_thread(bool(reader.pairs_hash)):
        for payload, box in zip(container.tiles, tile_boxes(h.height, h.width, h.tile)):
            own = latent_box(box, stride)
            try:
                tiles.append(reader.decode_tile(payload, h.quality - 1, (reader.atoms, own.height, own.width)))
            except CorruptFileError as e:
                raise CorruptFileError(f"tile {len(tiles)}: {e}") from None
    return DecodedSymbols(h, tiles, container.ancillary)


@dataclass(frozen=True)
class Encoded:
    data: bytes
    quality: int
    bpp: float
    psnr: float | None = None  # PSNR-RGB (dB) of the decoded file, measured when a target asked for it

    def __repr__(self) -> str:
        psnr = "" if self.psnr is None else f", psnr={self.psnr:.2f}"
        return f"Encoded({len(self.data)} bytes, quality={self.quality}, bpp={self.bpp:.4f}{psnr})"


def _lowest_level_past(qualities: tuple[int, ...], past: Callable[[int], bool]) -> int:
    """Index of the lowest level for which ``past(level)`` holds (len(qualities) if none):
    binary search, since rate and quality both grow with the level."""
    return bisect.bisect_left(range(len(qualities)), True, key=lambda i: past(qualities[i]))


class Codec:
    """An image model and a symbol coder, loaded once for encoding and decoding many images."""

    synthesis_window: int = SYNTHESIS_WINDOW  # pixels a side synthesised at a time (a multiple of the stride)
    #: Called as ``progress(stage, done, total)`` after each tile or window of the network's work
    #: (stage: "encoding", "refining" (efforts 3 and 4: a window of a pass) or "decoding"), e.g.
    #: to show progress on large images; None: silent.
    progress: Callable[[str, int, int], None] | None = None

    def __init__(self, model: str | ModelFile = DEFAULT_MODEL, device: str = "auto",
                 max_pixels: int = DEFAULT_MAX_PIXELS, *, threads: int | None = None,
                 network: ImageModel | None = None, coder: SymbolCoder | None = None) -> None:
        """``model``: an installed model's name, or a ``ModelFile`` (``sccodec.weights.read_model_file``).
        ``threads``: the CPU runtime's threads (default: all cores this process may use). An
        image of several tiles codes up to four tiles at a time on networks sharing them
        (``sccodec.tile_workers``), which costs a few hundred MB per extra tile in flight:
        ``threads=1`` codes one tile at a time.

        ``network`` and ``coder`` replace the halves the model file would build (its name and
        weights hash still go into every header): how a new transform or entropy model is tried.
        """
        if not isinstance(model, (str, ModelFile)):
            raise ParameterError(f"model must be an installed model's name or a ModelFile "
                                 f"(sccodec.weights.read_model_file(path)), got {type(model).__name__}")
        self.model_file = model if isinstance(model, ModelFile) else load_model_file(model)
        self.device = resolve_device(device)
        self.max_pixels = max_pixels
        self.threads = threads
        self.coder: SymbolCoder = self.model_file.coder if coder is None else coder
        self.geometry: Geometry = self.model_file.geometry if network is None else network.geometry
        self._custom_network = network is not None
        if network is not None:
            self.network = network

    @functools.cached_property
    def network(self) -> ImageModel:
        """Loaded on first use: parsing never needs it. ONNX Runtime on the CPU, torch on CUDA."""
        return self.model_file.network(self.device, self.threads)

    @property
    def stride(self) -> int:
        return self.geometry.stride

    @property
    def qualities(self) -> tuple[int, ...]:
        return tuple(range(1, self.coder.qualities + 1))

    @property
    def default_quality(self) -> int:
        """The model's own default level (its sidecar), else ``DEFAULT_QUALITY``; at most its best level."""
        return min(self.model_file.encoder.default_quality or DEFAULT_QUALITY, self.qualities[-1])

    def encode(self, image: ImageLike, quality: int | None = None, *, target_bpp: float | None = None,
               target_psnr: float | None = None, tile: int = DEFAULT_TILE, effort: int = DEFAULT_EFFORT) -> bytes:
        """Encode at a quality level, at the best level whose file fits ``target_bpp``, or at
        the smallest level whose decoded image reaches ``target_psnr`` dB (PSNR-RGB).
        ``effort`` (one of ``EFFORTS``): higher is slower and gives fewer bits at the same
        PSNR; the file decodes the same way whatever the effort. Efforts 3 and 4 refine the code
        against the synthesis (``sccodec.refine``): at a given ``quality`` they spend a
        few more bits for a higher PSNR, so ``target_bpp`` may pick a lower level than effort 2."""
        return self.encode_with_info(image, quality, target_bpp=target_bpp, target_psnr=target_psnr, tile=tile,
                                     effort=effort).data

    def encode_with_info(self, image: ImageLike, quality: int | None = None, *, target_bpp: float | None = None,
                         target_psnr: float | None = None, tile: int = DEFAULT_TILE,
                         effort: int = DEFAULT_EFFORT) -> "Encoded":
        """Like ``encode``, with the level chosen and the rate (and PSNR, for ``target_psnr``).

        A target that no level meets gives the nearest level: the lowest for ``target_bpp``, the
        highest for ``target_psnr`` (compare the result's ``bpp`` or ``psnr`` with the target).
        The search assumes PSNR rises with the level, as it does on photos; on flat synthetic
        images the top levels can differ by a tenth of a dB either way, and it may then pick a
        higher level than needed.
        """
        self._check_encode_arguments(quality, target_bpp, target_psnr, tile, effort)
        with products_on_one_thread(bool(self.coder.pairs_hash)):
            return self._encoded(image, quality, target_bpp, target_psnr, tile, effort)

    def _encoded(self, image: ImageLike, quality: int | None, target_bpp: float | None,
                 target_psnr: float | None, tile: int, effort: int) -> "Encoded":
        src = read_image(image, self.max_pixels)
        ancillary = {ICC_CHUNK: src.icc} if src.icc else {}
        boxes = tile_boxes(src.height, src.width, tile)
        mf, coder, workers = self.model_file, self.coder, self._tile_workers
        encoding = functools.partial(self._report, "encoding", total=len(boxes))

        def analyze(network: ImageModel, box: Box) -> np.ndarray:
            return self._analyze_tile(network, src.pixels, box)

        def symbols_at(network: ImageModel, latent: np.ndarray, q: int) -> np.ndarray:
            return coder.quantize(network.scaled_symbols(latent, q - 1), q - 1, effort)

        def packed(q: int, chunks: list[bytes]) -> Encoded:
            header = Header(model=mf.name, weights_hash=mf.digest, quality=q, width=src.width,
                            height=src.height, mode=src.mode, tile=tile, coder_version=coder.coder_version,
                            version=coder.format_version, classes_hash=coder.classes_hash,
                            pairs_hash=coder.pairs_hash)
            data = bitstream.pack(Container(header, chunks, ancillary))
            return Encoded(data, q, len(data) * 8 / (src.width * src.height))

        if target_bpp is None and target_psnr is None and effort not in SCHEDULES:
            # one level, tiles coded alone: each tile from pixels to its chunk in one task
            q = self.default_quality if quality is None else quality
            return packed(q, workers.map(lambda network, box: coder.encode_tile(
                symbols_at(network, analyze(network, box), q), q - 1), boxes, encoding))
        # The analysis transform does not depend on the quality: run it once per tile.
        latents = workers.map(analyze, boxes, encoding)

        @functools.cache
        def at(q: int) -> Encoded:
            symbols = workers.map(lambda network, latent: symbols_at(network, latent, q), latents)
            if effort in SCHEDULES:
                symbols = self._refined(symbols, boxes, src.pixels, q - 1, SCHEDULES[effort])
            return packed(q, workers.map(lambda _, tile_symbols: coder.encode_tile(tile_symbols, q - 1), symbols))

        @functools.cache
        def measured(q: int) -> Encoded:
            seen = np.asarray(self.decode(at(q).data).convert("RGB"))  # what the user gets: grey for L
            return replace(at(q), psnr=psnr_rgb(src.pixels, seen))

        levels = self.qualities
        if target_bpp is not None:
            too_big = _lowest_level_past(levels, lambda q: at(q).bpp > target_bpp)
            return at(levels[max(too_big - 1, 0)])
        if target_psnr is not None:
            good = _lowest_level_past(levels, lambda q: measured(q).psnr >= target_psnr)
            return measured(levels[min(good, len(levels) - 1)])
        return at(self.default_quality if quality is None else quality)

    def _check_encode_arguments(self, quality: object, target_bpp: object, target_psnr: object, tile: object,
                                effort: object) -> None:
        if sum(v is not None for v in (quality, target_bpp, target_psnr)) > 1:
            raise ParameterError("give one of quality, target_bpp and target_psnr")
        if quality is not None and (isinstance(quality, bool) or not isinstance(quality, numbers.Integral)
                                    or quality not in self.qualities):
            raise ParameterError(f"quality must be one of {self.qualities}, got {quality!r}")
        for name, target in (("target_bpp", target_bpp), ("target_psnr", target_psnr)):
            if target is not None and (isinstance(target, bool) or not isinstance(target, numbers.Real)
                                       or not 0 < target < math.inf):
                raise ParameterError(f"{name} must be a positive number, got {target!r}")
        self.check_effort(effort)
        stride = self.stride
        if isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or not stride <= tile <= MAX_TILE or tile % stride:
            raise ParameterError(f"tile must be a multiple of {stride} between {stride} and {MAX_TILE}, got {tile}")

    def check_effort(self, effort: object) -> None:
        """ParameterError unless this codec can encode at ``effort``: one of ``EFFORTS``, and for
        efforts 3 and 4 the synthesis' curvature measured for these weights, tables to price bits
        with, and a network with a gradient (its gradient graph, or torch). Checked before any work."""
        if isinstance(effort, bool) or not isinstance(effort, numbers.Integral) or effort not in EFFORTS:
            raise ParameterError(f"effort must be one of {EFFORTS}, got {effort!r}")
        if effort not in SCHEDULES:
            return
        curvature = self.model_file.curvature
        if curvature is None:
            path = curvature_file_path(self.model_file.path)
            why = f"{path} was measured for other weights" if path.is_file() else "it has none"
            raise ParameterError(f"effort {effort} needs the synthesis' curvature of model {self.model_file.name}, "
                                 f"measured for its weights, and {why} (bench/curvature.py --write); "
                                 f"use effort 1 or 2")
        try:
            curvature.at_level(self.model_file.tensors, 0)
        except (KeyError, ValueError) as e:
            raise ParameterError(f"effort {effort} cannot use the curvature of model {self.model_file.name}: "
                                 f"{e}; use effort 1 or 2") from None
        if not isinstance(getattr(self.coder, "tables", None), SymbolTables):
            raise ParameterError(f"effort {effort} prices bits with the coder's tables; this coder has none")
        if self._custom_network and not _has_gradient(self.network):
            raise ParameterError(f"effort {effort} needs the gradient of the synthesis, which this codec's "
                                 f"network does not give (no distortion_gradient)")
        if importlib.util.find_spec("torch") is None and not _has_gradient(self.network):
            raise ParameterError(_NEEDS_TORCH)

    def parse_symbols(self, data: bytes | Container) -> DecodedSymbols:
        """A file of this codec's model -> its integer symbols, tile by tile; builds no network."""
        container = _parsed(data, self.max_pixels)
        h = container.header
        if (h.model, h.weights_hash) != (self.model_file.name, self.model_file.digest):
            return parse_symbols(container, max_pixels=self.max_pixels)
        return _parse_tiles(container, self.coder, self.stride)

    def decode_array(self, data: bytes | Container) -> tuple[np.ndarray, str]:
        """.scv bytes (or a parsed ``Container``) -> ((H,W,3) uint8 RGB pixels, original colour mode)."""
        pixels, header, _ = self._decode(data)
        return pixels, header.mode

    def decode(self, data: bytes | Container) -> Image.Image:
        """.scv bytes (or a parsed ``Container``) -> PIL image (RGB, or L for grey originals)."""
        pixels, header, ancillary = self._decode(data)
        image = to_image(pixels, header.mode)
        profile = validate_icc(ancillary.get(ICC_CHUNK))  # broken or too large: dropped, with a warning
        if profile:
            image.info["icc_profile"] = profile
        return image

    def _decode(self, data: bytes | Container) -> tuple[np.ndarray, Header, dict[bytes, bytes]]:
        container = _parsed(data, self.max_pixels)
        h = container.header
        mf = self.model_file
        if (h.model, h.weights_hash) != (mf.name, mf.digest):
            needed = load_model_file(h.model, h.weights_hash)  # raises, naming the model needed
            return Codec(needed, self.device, self.max_pixels, threads=self.threads)._decode(container)
        parsed = _parse_tiles(container, self.coder, self.stride)
        grid = assemble(parsed.tiles, [latent_box(b, self.stride) for b in tile_boxes(h.height, h.width, h.tile)])
        out = np.empty((h.height, h.width, 3), dtype=np.uint8)
        windows = tile_boxes(h.height, h.width, self.synthesis_window)  # not the file's tiles: bounded work

        def synthesize(network: ImageModel, box: Box) -> None:
            out[box.slices()] = self._synthesize(network, grid, box, h.quality - 1)  # windows do not overlap

        self._tile_workers.map(synthesize, windows, functools.partial(self._report, "decoding", total=len(windows)))
        return out, h, parsed.ancillary

    def _report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    @functools.cached_property
    def _tile_workers(self) -> TileWorkers:
        """Several tiles or windows side by side on the CPU runtime, on networks sharing the
        codec's threads (``sccodec.tile_workers``); one at a time on the codec's own network
        elsewhere (CUDA, a custom network)."""
        parallel = str(self.device) == "cpu" and not self._custom_network
        return TileWorkers(self.network, lambda threads: self.model_file.network(self.device, threads),
                           (self.threads or available_cores()) if parallel else 1)

    def _analyze_tile(self, network: ImageModel, pixels: np.ndarray, box: Box) -> np.ndarray:
        """The tile's latents, computed with its neighbours' pixels in view (sccodec.tiling)."""
        height, width = pixels.shape[:2]
        ctx = box.grow(self.geometry.analysis_margin, height, width)
        x = to_planes(pad_to_multiple(pixels[ctx.top : ctx.top + ctx.height, ctx.left : ctx.left + ctx.width],
                                      self.stride))
        y = network.analyze(x)
        rows, cols = latent_box(box, self.stride).within(latent_box(ctx, self.stride))
        return y[..., rows, cols]

    def _synthesize(self, network: ImageModel, grid: np.ndarray, box: Box, quality_index: int) -> np.ndarray:
        """The pixels of ``box``, synthesised with its neighbours' symbols in view (sccodec.tiling)."""
        ctx, symbols = self._synthesis_context(grid, box)
        x_hat = network.decode_symbols(symbols, quality_index)
        rows, cols = box.within(ctx.scaled(self.stride))
        return from_planes(x_hat[..., rows, cols])

    def _synthesis_context(self, grid: np.ndarray, box: Box) -> tuple[Box, np.ndarray]:
        """The latent box the pixels of ``box`` are synthesised from, and its symbols."""
        ctx = latent_box(box, self.stride).grow(self.geometry.synthesis_margin, *grid.shape[1:])
        return ctx, np.ascontiguousarray(grid[(slice(None), *ctx.slices())])

    def _refined(self, tiles: list[np.ndarray], boxes: list[Box], pixels: np.ndarray, quality_index: int,
                 schedule: Schedule) -> list[np.ndarray]:
        """Each tile's symbols refined against the synthesis of the whole image (``sccodec.refine``)."""
        latent = [latent_box(b, self.stride) for b in boxes]
        settings = RefinementSettings(
            tables=self.coder.tables, quality_index=quality_index,
            curvature=self.model_file.curvature.at_level(self.model_file.tensors, quality_index),
            lagrangian=lagrangian(self.model_file.config.lambdas[quality_index]),
            open_atoms=open_atoms(self.model_file.config, quality_index))
        windows = [(box, to_planes(pixels[box.slices()]))  # each window's pixels, once for every gradient
                   for box in tile_boxes(pixels.shape[0], pixels.shape[1], self.synthesis_window)]
        done = itertools.count(1)

        def gradient(grid: np.ndarray) -> tuple[float, np.ndarray]:
            return self._distortion_gradient(grid, quality_index, windows,
                                             lambda: self._report("refining", next(done), schedule.gradients * len(windows)))

        grid = refine(assemble(tiles, latent), gradient, settings, schedule, latent)
        return [grid[(slice(None), *b.slices())] for b in latent]

    def _distortion_gradient(self, grid: np.ndarray, quality_index: int, windows: list[tuple[Box, np.ndarray]],
                             window_done: Callable[[], None]) -> tuple[float, np.ndarray]:
        """Squared error of the image decoded from ``grid`` against each window's pixels (in [0, 1]
        units, (1,3,h,w)), and its gradient with respect to every symbol, window by window as
        decoding runs."""
        model = self._differentiable
        total, gradient = 0.0, np.zeros(grid.shape, np.float32)
        for box, target in windows:
            ctx, symbols = self._synthesis_context(grid, box)
            error, g = model.distortion_gradient(symbols, quality_index, target, box.within(ctx.scaled(self.stride)))
            total += error
            gradient[(slice(None), *ctx.slices())] += g
            window_done()
        return total, gradient

    @functools.cached_property
    def _differentiable(self):  # noqa: ANN202 (a RuntimeModel or TorchModel)
        """The network with a ``distortion_gradient``: the codec's own (the runtime's ``gradient``
        graph, or torch on CUDA), else the torch reference on the CPU."""
        if _has_gradient(self.network):
            return self.network
        try:
            import torch

            from sccodec.model.torch_model import TorchModel
        except ImportError:
            raise ParameterError(_NEEDS_TORCH) from None
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # as the runtime's: workers share the cores
        return TorchModel(self.model_file.build(), "cpu")


def _has_gradient(network: ImageModel) -> bool:
    """Whether a network gives the synthesis' gradient (a runtime model only with its graph)."""
    return hasattr(network, "distortion_gradient") and getattr(network, "gradient_available", True)


def _parsed(data: object, max_pixels: int) -> Container:
    """A file's bytes parsed (chunks and CRCs checked), or a ``Container`` parsed already."""
    return data if isinstance(data, Container) else bitstream.parse(_as_bytes(data), max_pixels)


def _as_bytes(data: object) -> bytes:
    """Any bytes-like object; paths and file objects get a pointer to ``open``."""
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, bytes):
        return data
    if isinstance(data, (str, Path)) or hasattr(data, "read"):
        raise ParameterError("decode() takes the file's bytes; use sccodec.open(path or file) to read a file")
    raise ParameterError(f"decode() takes the .scv file's bytes, got {type(data).__name__}")


@functools.lru_cache(maxsize=4)
def shared_codec(model: str, device: str, max_pixels: int, threads: int | None = None) -> Codec:
    """One loaded ``Codec`` per (model, device, pixel limit, threads) in a process, reused by every
    call that asks for the same: the module shortcuts, the command line's batches and the
    cluster's workers load a model once, not per file."""
    return Codec(model, device, max_pixels, threads=threads)


def encode(image: ImageLike, quality: int | None = None, *, target_bpp: float | None = None,
           target_psnr: float | None = None, effort: int = DEFAULT_EFFORT, device: str = "auto",
           model: str = DEFAULT_MODEL, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Encode an image (PIL image, uint8 HxWx3 array, float tensor, path or bytes) to .scv bytes.

    Give ``quality`` (one of ``QUALITIES``; default ``Codec.default_quality``), ``target_bpp`` (the
    best quality that fits) or ``target_psnr`` (the smallest file whose PSNR-RGB reaches it, in dB).
    ``effort``: one of ``EFFORTS``, higher is slower with fewer bits at the same quality.
    """
    return shared_codec(model, str(resolve_device(device)), max_pixels).encode(image, quality, target_bpp=target_bpp,
                                                                          target_psnr=target_psnr, effort=effort)


def decode(data: bytes | Container, device: str = "auto", *, as_array: bool = False,
           max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image | np.ndarray:
    """Decode .scv bytes (or a parsed ``Container``) to a PIL image (mode RGB, or L for grey
    originals). The file is parsed once, here, and the codec works on the parsed chunks.

    With ``as_array=True``: a uint8 (H,W,3) RGB NumPy array instead. For a path, use ``open``.
    """
    container = _parsed(data, max_pixels)
    codec = shared_codec(container.header.model, str(resolve_device(device)), max_pixels)
    return codec.decode_array(container)[0] if as_array else codec.decode(container)


def open(fp: str | Path | BinaryIO, device: str = "auto", *,  # noqa: A001 (like PIL.Image.open)
         max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read and decode an .scv file (a path or a binary file object)."""
    binary_file = ParameterError(f"open() takes a path or a file opened in binary mode ('rb'), got {fp!r}")
    if not isinstance(fp, (str, Path)) and not hasattr(fp, "read"):
        raise binary_file
    try:
        data = Path(fp).read_bytes() if isinstance(fp, (str, Path)) else fp.read()
    except OSError as e:
        raise ImageInputError(f"cannot read {fp}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise binary_file from None
    if isinstance(data, str):
        raise binary_file
    return decode(data, device, max_pixels=max_pixels)
