"""``sccodec bench``: measure sccodec and its peers on a folder of images.

The runner and report modules (and so matplotlib) are imported inside the command, so
attaching ``bench`` to the main CLI costs the other subcommands nothing at start-up.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sccodec.bench.peers import DEFAULT_CODECS, Quality, codec_names, is_codec_name
from sccodec.cli_errors import OutputError

if TYPE_CHECKING:
    from sccodec.bench.runner import BenchConfig, BenchResult

DEFAULT_IMAGES = Path(__file__).resolve().parent.parent / "data" / "samples"


def _codec_name(text: str) -> str:
    """Codec names are case-insensitive; a model name after '@' is a file name and keeps its case."""
    codec, at, model = text.strip().partition("@")
    return codec.strip().lower() + at + model.strip()


def _parse_codecs(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(_codec_name(n) for n in value.split(",") if n.strip())
    unknown = [n for n in names if not is_codec_name(n)]
    if unknown:
        raise click.BadParameter(f"unknown codec {unknown[0]!r} (known: {', '.join(codec_names())}, sccodec@MODEL)")
    if not names:
        raise click.BadParameter("no codec given")
    return names


def _number(text: str) -> Quality:
    value = float(text)
    return int(value) if value.is_integer() else value


def _parse_qualities(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> dict[str | None, tuple[Quality, ...]]:
    """``10,50,90`` applies to every codec; ``jpeg=10,50,90`` to one (the option repeats)."""
    overrides: dict[str | None, tuple[Quality, ...]] = {}
    for text in values:
        prefix, _, numbers = text.rpartition("=")
        codec = _codec_name(prefix) or None
        if codec is not None and not is_codec_name(codec):
            raise click.BadParameter(f"unknown codec {codec!r} in {text!r}")
        try:
            overrides[codec] = tuple(_number(n) for n in numbers.split(",") if n.strip())
        except ValueError:
            raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None
        if not overrides[codec]:
            raise click.BadParameter(f"{text!r} lists no values")
    return overrides


@click.command("bench")
@click.option(
    "--images",
    "images_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of test images [default: the bundled sample photos]. The real benchmark: the 24 Kodak images.",
)
@click.option(
    "--codecs",
    default=",".join(DEFAULT_CODECS),
    show_default=True,
    callback=_parse_codecs,
    help=f"Comma-separated codecs to run; also available: "
    f"{', '.join(n for n in codec_names() if n not in DEFAULT_CODECS)}; sccodec@MODEL runs another shipped model.",
)
@click.option(
    "--qualities",
    multiple=True,
    callback=_parse_qualities,
    metavar="[CODEC=]V1,V2,...",
    help="Sweep values instead of each codec's default sweep: for all codecs, or for one with CODEC=. "
    "Repeatable. The value is the codec's own knob (JPEG quality, JPEG XL distance, JPEG 2000 ratio, "
    "sccodec quality level).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench_out"),
    show_default=True,
    help="Where summary.txt, <codec>.json, results.csv, bd_rates.csv and rd.png go.",
)
@click.option(
    "--reference",
    "references",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Results JSON to compare with (CompressAI schema, ours, or peers_kodak_measured.json); "
    "plotted dashed. Repeatable.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes coding images in parallel (timings get noisier).",
)
@click.option("--per-image", is_flag=True, help="Also write one CSV row per image and sweep point.")
@click.option("--quiet", is_flag=True, help="No progress bar and no notes; the summary table is still printed.")
def bench(
    images_dir: Path | None,
    codecs: tuple[str, ...],
    qualities: dict[str | None, tuple[Quality, ...]],
    out_dir: Path,
    references: tuple[Path, ...],
    workers: int,
    per_image: bool,
    quiet: bool,
) -> None:
    """Rate-distortion and speed benchmark of sccodec against JPEG, WebP, JPEG 2000, AVIF,
    HEIC and JPEG XL, with BD-rates against JPEG and, beside them, sccodec's BD-rate against each
    codec head to head (protocol: docs/design.md, "How results are measured").

    \b
    Examples:
      sccodec bench                                   # bundled sample photos, the default codecs
      sccodec bench --images kodak/ --codecs sccodec,jpeg,webp --out results/
      sccodec bench --codecs sccodec,jpeg --reference bench/results/peers/webp.json
    """
    from sccodec.bench.report import format_table, load_references, write_outputs
    from sccodec.bench.runner import BenchConfig, BenchError, find_images, resolve_sweeps, select_codecs

    def note(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    folder = images_dir if images_dir is not None else DEFAULT_IMAGES
    if images_dir is None and not folder.is_dir():
        raise click.ClickException(f"the bundled sample photos are missing ({folder}); pass --images DIR")
    try:
        images = find_images(folder)
        adapters, skipped = select_codecs(codecs)
        for message in skipped:
            note(message)
        if not adapters:
            raise BenchError("none of the requested codecs can run here")
        running = {a.name for a in adapters}
        for name in sorted(n for n in qualities if n is not None and n not in running):
            note(f"ignoring --qualities for {name}: it is not being run")
        config = BenchConfig(
            images=images, sweeps=resolve_sweeps(adapters, qualities), workers=workers, dataset=folder.resolve().name
        )
        reference_curves = load_references(references)
        _check_writable(out_dir)  # before the sweep, which can take hours, not after it
        result = _run_with_progress(config, show=not quiet and sys.stderr.isatty())
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        written = write_outputs(result, reference_curves, out_dir, per_image)
    except OSError as exc:
        _cannot_write(out_dir, exc)
    click.echo(format_table(result, reference_curves))
    note(f"wrote {', '.join(str(p) for p in written)}")


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        _cannot_write(out_dir, exc)


def _cannot_write(out_dir: Path, exc: OSError) -> None:
    """Exit 3 (an output problem), one line, as encode and decode do."""

    raise OutputError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from None


def _run_with_progress(config: BenchConfig, show: bool) -> BenchResult:
    """The run, behind a progress bar with ETA on stderr when a person is watching."""
    from sccodec.bench.runner import run_bench, total_steps

    if not show:
        return run_bench(config)
    with click.progressbar(
        length=total_steps(config), label="bench", file=sys.stderr, show_eta=True, show_pos=True
    ) as bar:
        return run_bench(config, bar.update)


if __name__ == "__main__":
    bench()
