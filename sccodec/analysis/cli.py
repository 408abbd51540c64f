"""The analysis commands (``sccodec codes | segment | index | similar``): argument handling only.

The work happens in ``sccodec.codes`` and ``sccodec.analysis``; inputs, atomic outputs and
one-line errors come from ``sccodec.cli``, with its exit codes (``sccodec.cli_errors``): 0 ok,
1 bad input (not an .scv file, a corrupt file, a file of a model not installed, an index that is
not one), 2 usage (a bad option or an out-of-range K), 3 output problem, 130 interrupted.
Only ``segment --overlay`` decodes pixels; everything else reads the codes alone.
"""
from __future__ import annotations

import colorsys
import io
import json
import os
import sys
from pathlib import Path

import click
import numpy as np

from sccodec.analysis.index import Index, scv_files
from sccodec.analysis.segment import segment as segment_codes
from sccodec.cli import (_cached_codec, _device, _finite, _max_pixels, _pil_format,
                         _stdout_is_a_terminal, read_input, write_output)
from sccodec.cli_errors import EXIT_INPUT, InputError, OutputError, UsageProblem, about, fail, one_line
from sccodec.codes import Codes, read_codes
from sccodec.errors import SCVError

#: Atoms listed by ``sccodec codes`` as the most used.
TOP_ATOMS = 10
#: A label image is 8-bit: at most this many segments.
MAX_SEGMENTS = 256
#: Weight of the segment colours in an overlay (the decoded image has the rest).
OVERLAY_OPACITY = 0.45

_overwrite = click.option("--force", "-f", is_flag=True, help="Overwrite existing output files.")


def _codes_of(path: str, max_pixels: int) -> Codes:
    """The codes of the .scv file at ``path`` ('-': stdin), or a one-line error and exit."""
    data = read_input(path)
    try:
        return read_codes(data, max_pixels=max_pixels)
    except Exception as e:  # noqa: BLE001 (one line, never a traceback)
        fail(e, path)


def _refuse_existing(path: str, force: bool) -> None:
    """Fail before any work if ``path`` exists and may not be replaced (the write checks again)."""
    if path != "-" and not force and os.path.lexists(path):
        raise OutputError(f"{path} exists; use --force to overwrite it")


def _binary_output(path: str) -> None:
    if path == "-" and _stdout_is_a_terminal():
        raise UsageProblem("not writing binary data to a terminal: redirect stdout (> FILE or | PROGRAM) or "
                           "give a file name")


# ---------------------------------------------------------------- codes


def summary(codes: Codes) -> dict:
    """What ``sccodec codes`` reports about a file's code (without the code itself)."""
    h = codes.header
    rows, cols = codes.grid_size
    fires = np.count_nonzero(codes.symbols.reshape(codes.atoms, -1), axis=1)
    nonzeros = int(fires.sum())
    entries = codes.atoms * rows * cols
    top = [a for a in np.argsort(-fires, kind="stable")[:TOP_ATOMS] if fires[a] > 0]
    return {"model": h.model, "weights_hash": h.weights_hash.hex(), "quality": h.quality,
            "width": h.width, "height": h.height, "mode": h.mode, "stride": codes.stride,
            "grid": [rows, cols], "atoms": codes.atoms, "nonzeros": nonzeros,
            "sparsity": round(1 - nonzeros / entries, 6), "nonzeros_per_position": round(nonzeros / (rows * cols), 4),
            "atoms_used": int(np.count_nonzero(fires)),
            "top_atoms": [{"atom": int(a), "positions": int(fires[a])} for a in top]}


def _sparse_record(codes: Codes) -> dict:
    """The non-zero entries as JSON lists; values written as the float32 numbers they are."""
    sparse = codes.sparse()
    return {"positions": sparse.positions.tolist(), "atoms": sparse.atoms.tolist(),
            "symbols": sparse.symbols.tolist(), "values": [float(v) for v in sparse.values.astype(str)]}


def _npz_bytes(codes: Codes) -> bytes:
    buf = io.BytesIO()
    step = codes.step if codes.step is not None else np.full(codes.atoms, np.nan, np.float32)
    np.savez(buf, symbols=codes.symbols, values=codes.values, step=step, stride=np.int32(codes.stride),
             image_size=np.array(codes.image_size, np.int32))
    return buf.getvalue()


@click.command()
@click.argument("input_path", metavar="FILE")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary and the sparse code (positions, atoms, symbols, values of the non-zeros).")
@click.option("--npz", "npz_path", metavar="OUT.npz",
              help="Write symbols (K,h,w), values (K,h,w), step (K), stride and image_size to OUT.npz.")
@_overwrite
@_max_pixels
def codes(input_path: str, as_json: bool, npz_path: str | None, force: bool, max_pixels: int) -> None:
    """Show the sparse code of an .scv file: parsing only, no network, no pixels.

    Each position of the latent grid codes a 16x16 pixel block as a few of the model's K
    dictionary atoms; values are the integer symbols times each atom's quantiser step.

    \b
    Examples:
      sccodec codes photo.scv
      sccodec codes photo.scv --json > photo.codes.json
      sccodec codes photo.scv --npz photo.codes.npz
    """
    if as_json and npz_path is not None:
        raise UsageProblem("give --json or --npz, not both")
    if npz_path is not None:
        _binary_output(npz_path)
        _refuse_existing(npz_path, force)
    found = _codes_of(input_path, max_pixels)
    info = summary(found)
    if npz_path is not None:
        write_output(npz_path, _npz_bytes(found), overwrite=force, source=input_path)
        if npz_path != "-":
            click.echo(f"{input_path} -> {npz_path}: {info['grid'][0]}x{info['grid'][1]} positions, "
                       f"{info['atoms']} atoms, {info['nonzeros']} non-zeros", err=True)
        return
    if as_json:
        click.echo(json.dumps({"file": input_path, **info, "codes": _sparse_record(found)}))
        return
    rows, cols = info["grid"]
    click.echo(f"{input_path}: {info['width']}x{info['height']} {info['mode']}, model {info['model']}, "
               f"quality {info['quality']}")
    click.echo(f"grid: {rows}x{cols} positions of {info['stride']}x{info['stride']} px, {info['atoms']} atoms")
    click.echo(f"non-zeros: {info['nonzeros']} of {rows * cols * info['atoms']} "
               f"(sparsity {100 * info['sparsity']:.2f}%), {info['nonzeros_per_position']:.2f} per position")
    click.echo(f"atoms used: {info['atoms_used']} of {info['atoms']}")
    top = ", ".join(f"{t['atom']} ({t['positions']})" for t in info["top_atoms"]) or "none"
    click.echo(f"top atoms (positions where they fire): {top}")


# ---------------------------------------------------------------- segment


def palette(count: int) -> np.ndarray:
    """(count, 3) uint8 distinct colours: hues a golden-ratio turn apart, so neighbours in
    label order differ strongly, whatever the count."""
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb((0.61803398875 * i) % 1.0, 0.8, 1.0)]
                     for i in range(count)], dtype=np.uint8)


def overlay_image(pixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the image with each segment's colour blended in."""
    colours = palette(int(labels.max()) + 1)[labels].astype(np.float32)
    return np.round((1 - OVERLAY_OPACITY) * pixels + OVERLAY_OPACITY * colours).astype(np.uint8)


def _image_bytes(pixels: np.ndarray, path: str, mode: str | None = None) -> bytes:
    from PIL import Image

    from sccodec.image_io import image_file_bytes

    kind = _pil_format(Path(path).suffix.lower()) if path != "-" else "PNG"
    try:
        return image_file_bytes(Image.fromarray(pixels, mode), kind)
    except (KeyError, ValueError, OSError) as e:
        raise OutputError(f"cannot write {path}: {e}") from None


@click.command()
@click.argument("input_path", metavar="FILE")
@click.option("-k", "k", type=int, required=True, metavar="K",
              help=f"Number of segments (1 to {MAX_SEGMENTS}, and at most the grid's positions).")
@click.option("-o", "--output", required=True, metavar="LABELS.png",
              help="Label image: 8-bit PNG at image size, pixel value = segment 0..K-1.")
@click.option("--overlay", metavar="IMAGE",
              help="Also decode the image and write it with a colour per segment blended in "
                   "(format from the extension).")
@click.option("--position-weight", type=click.FloatRange(min=0), default=0.0, show_default=True, callback=_finite,
              metavar="W",
              help="Weight of each position's (row, col) against its code: 0 ignores position, 1 makes "
                   "crossing the image cost about a typical code difference (compact regions).")
@click.option("--smooth", type=click.IntRange(min=0), default=1, show_default=True, metavar="N",
              help="Passes of a 3x3 majority filter over the grid's labels (0: none).")
@click.option("--seed", type=int, default=0, show_default=True, metavar="S", help="K-means' random seed.")
@_device
@_overwrite
@_max_pixels
def segment(input_path: str, k: int, output: str, overlay: str | None, position_weight: float, smooth: int,
            seed: int, device: str, force: bool, max_pixels: int) -> None:
    """Segment an image from its sparse codes: K-means over the code of each 16x16 block.

    The labels come from the codes alone; only --overlay decodes the pixels.

    \b
    Examples:
      sccodec segment photo.scv -k 4 -o labels.png
      sccodec segment photo.scv -k 6 -o labels.png --overlay overlay.jpg --position-weight 0.5
    """
    if not 1 <= k <= MAX_SEGMENTS:
        raise UsageProblem(f"-k must be from 1 to {MAX_SEGMENTS} (an 8-bit label image), got {k}")
    if Path(output).suffix.lower() != ".png" and output != "-":
        raise UsageProblem(f"the label image is written as PNG (lossless): name it .png, not {output}")
    if overlay is not None:
        if overlay == output:
            raise UsageProblem(f"-o and --overlay both name {output}")
        if overlay != "-":
            _pil_format(Path(overlay).suffix.lower())  # an unknown extension fails before any work
    for path in (output, overlay):
        if path is not None:
            _binary_output(path)
            _refuse_existing(path, force)
    data = read_input(input_path)
    try:
        found = read_codes(data, max_pixels=max_pixels)
        labels = segment_codes(found, k, position_weight=position_weight, smooth=smooth, seed=seed)
        pixels = None
        if overlay is not None:
            pixels, _ = _cached_codec(found.header.model, device, max_pixels).decode_array(data)
    except Exception as e:  # noqa: BLE001 (one line, never a traceback)
        fail(e, input_path)
    write_output(output, _image_bytes(labels.astype(np.uint8), output, "L"), overwrite=force, source=input_path)
    if pixels is not None:
        write_output(overlay, _image_bytes(overlay_image(pixels, labels), overlay), overwrite=force,
                     source=input_path)
    rows, cols = found.grid_size
    shown = f" and {overlay}" if overlay is not None else ""
    click.echo(f"{input_path} -> {output}{shown}: {int(labels.max()) + 1} segments over {rows}x{cols} positions",
               err=True)


# ---------------------------------------------------------------- index / similar


@click.command()
@click.argument("inputs", metavar="DIR_OR_FILE...", nargs=-1, required=True)
@click.option("-o", "--output", required=True, metavar="INDEX.npz", help="Index file to write.")
@_overwrite
@_max_pixels
def index(inputs: tuple[str, ...], output: str, force: bool, max_pixels: int) -> None:
    """Index .scv files (folders: every *.scv under them) by descriptors pooled from their codes.

    A file that cannot be read is skipped and named at the end; the index holds the others and
    the command exits 1. Query the index with 'sccodec similar'.

    \b
    Examples:
      sccodec index photos/ -o photos.index.npz
      sccodec index a.scv b.scv c.scv -o small.index.npz
    """
    _binary_output(output)
    _refuse_existing(output, force)
    files = scv_files(inputs)
    if not files:
        raise InputError(f"no .scv files in {', '.join(inputs)}")
    failed: list[tuple[str, str]] = []

    def skip(name: str, error: SCVError) -> None:
        failed.append((name, one_line(error)[0]))

    with click.progressbar(files, label="indexing", file=sys.stderr, hidden=not sys.stderr.isatty()) as bar:
        try:
            built = Index.build(bar, on_error=skip, max_pixels=max_pixels)
        except SCVError:  # nothing could be read: every file is in ``failed``
            built = None
    if built is not None:
        write_output(output, built.to_bytes(), overwrite=force)
    for name, message in failed:
        click.echo(f"sccodec: warning: skipped {about(name, message)}", err=True)
    if built is None:
        click.echo(f"sccodec: error: none of the {len(files)} files could be indexed; {output} not written", err=True)
        sys.exit(EXIT_INPUT)
    click.echo(f"{len(built)} of {len(files)} files indexed -> {output}"
               + (f"; {len(failed)} skipped" if failed else ""), err=True)
    if failed:
        sys.exit(EXIT_INPUT)


@click.command()
@click.argument("query_path", metavar="QUERY")
@click.option("--index", "index_path", required=True, metavar="INDEX.npz", help="Index written by 'sccodec index'.")
@click.option("-k", "k", type=int, default=10, show_default=True, help="Number of results.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_max_pixels
def similar(query_path: str, index_path: str, k: int, as_json: bool, max_pixels: int) -> None:
    """Find the indexed files most similar to an .scv file, nearest first.

    Prints rank, distance (0: the same descriptor; at most 2) and name.

    \b
    Examples:
      sccodec similar photo.scv --index photos.index.npz -k 5
      sccodec similar photo.scv --index photos.index.npz --json
    """
    if k < 1:
        raise UsageProblem(f"-k must be at least 1, got {k}")
    try:
        loaded = Index.load(index_path)
    except SCVError as e:
        fail(e)
    found = _codes_of(query_path, max_pixels)
    try:
        matches = loaded.query(found, k)
    except SCVError as e:
        fail(e, query_path)
    if as_json:
        click.echo(json.dumps([{"rank": rank, "distance": round(m.distance, 6), "name": m.name}
                               for rank, m in enumerate(matches, 1)], indent=2))
        return
    for rank, m in enumerate(matches, 1):
        click.echo(f"{rank:>4}  {m.distance:.4f}  {m.name}")
