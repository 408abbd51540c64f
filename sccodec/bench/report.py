"""What a run leaves behind: terminal table, CompressAI-style JSON, CSV and the RD plot.

JSON: one file per measured codec, ``<out>/<codec>.json``, in CompressAI's results schema
(``name``, ``description``, ``meta``, ``results`` with parallel lists ``bpp``, ``psnr-rgb``,
``ms-ssim-rgb``, ``ms-ssim-db-rgb``, ``encoding_time``, ``decoding_time`` in seconds), so our
curves and CompressAI's published ones load and plot the same way. JSON has no inf/NaN:
an infinite value (lossless PSNR) is written as the string ``"inf"``, an unmeasured one
(MS-SSIM of an image too small for it) as ``null``. ``load_references`` reads these files,
CompressAI's, and the peers file (``{codec: [{"q", "bpp", "psnr", ...}]}``).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from sccodec import atomic
from sccodec.bench.bdrate import BDRate, bd_rate
from sccodec.bench.peers import ANCHOR, Quality
from sccodec.bench.runner import BenchError, BenchResult, Curve, Measurement, RatePoint

NON_FINITE_NOTE = '"inf" = infinite (lossless); null = not measured'
BD_METRICS = (("psnr", "PSNR"), ("ms_ssim_db", "MS-SSIM dB"))


@dataclass(frozen=True)
class CurveSummary:
    """A curve with its BD-rates against the anchor, one per entry of BD_METRICS."""

    curve: Curve
    bd: tuple[BDRate, ...]
    is_anchor: bool = False

    def bd_text(self, index: int) -> str:
        return "anchor" if self.is_anchor else str(self.bd[index])


def summarize(curves: Sequence[Curve]) -> list[CurveSummary]:
    """BD-rates of every curve against the JPEG measured in the same run."""
    anchor = next((c for c in curves if c.name == ANCHOR and not c.reference), None)
    return [
        CurveSummary(curve, tuple(_bd(anchor, curve, m) for m, _ in BD_METRICS), is_anchor=curve is anchor)
        for curve in curves
    ]


def _bd(anchor: Curve | None, curve: Curve, metric: str) -> BDRate:
    """bd_rate with the table's short reasons for the comparisons that cannot be made."""
    if anchor is None:
        return BDRate(math.nan, f"no {ANCHOR} in run")
    if curve.lossless:
        return BDRate(math.nan, "lossless")
    if any(all(math.isnan(v) for v in c.values(metric)) for c in (anchor, curve)):
        return BDRate(math.nan, "not measured")
    return bd_rate(anchor.values("bpp"), anchor.values(metric), curve.values("bpp"), curve.values(metric))


# ---------------------------------------------------------------- table


def _range(values: Iterable[float], fmt: str) -> str:
    values = list(values)
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "lossless" if any(math.isinf(v) for v in values) else "-"
    lo, hi = min(finite), max(finite)
    text = f"{lo:{fmt}}" if lo == hi else f"{lo:{fmt}}-{hi:{fmt}}"
    return text + (" +lossless" if len(finite) < len(values) and any(math.isinf(v) for v in values) else "")


def _ms(values: Iterable[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    ms = 1000 * sum(finite) / len(finite)
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def format_table(result: BenchResult, references: Sequence[Curve] = ()) -> str:
    """The terminal summary: one row per codec, references after a rule."""
    summaries = summarize([*result.curves, *references])
    header = ("codec", "pts", "BD-rate PSNR", "BD-rate MS-SSIM", "bpp", "PSNR dB", "enc ms", "dec ms")
    rows = [
        (
            s.curve.label + (" (ref)" if s.curve.reference else ""),
            str(len(s.curve.points)),
            s.bd_text(0),
            s.bd_text(1),
            _range(s.curve.values("bpp"), ".3f"),
            _range(s.curve.values("psnr"), ".2f"),
            _ms(s.curve.values("encode_s")),
            _ms(s.curve.values("decode_s")),
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    config = result.config
    n_measured = len(result.curves)
    out = [
        f"sccodec bench: {config.dataset} ({_count(len(config.images), 'image')}), {_count(n_measured, 'codec')}, "
        f"{_count(config.workers, 'worker')}, {result.wall_s:.1f} s",
        line(header),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows[:n_measured]),
    ]
    if references:
        out += [line(["-" * w for w in widths]), *(line(r) for r in rows[n_measured:])]
    out += [
        f"BD-rate: Bjontegaard delta rate vs {ANCHOR} measured in this run (cubic fit of log bpp over the",
        "overlapping quality range); negative = fewer bits at equal quality. Times: mean per image.",
    ]
    if config.workers > 1:
        out.append("Timings were taken with parallel workers and are less reliable than a --workers 1 run.")
    if references:
        out.append("(ref) curves come from --reference files: their BD-rates mean something only if they were")
        out.append("measured on the same images.")
    return "\n".join(out)


# ---------------------------------------------------------------- JSON


def _to_json_number(value: float) -> float | str | None:
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _from_json_number(value: Any) -> float:
    return math.nan if value is None else float(value)


def curve_to_json(curve: Curve, result: BenchResult) -> dict[str, Any]:
    """A measured curve as a CompressAI results document."""
    points = curve.points
    config = result.config

    def column(metric: str) -> list[float | str | None]:
        return [_to_json_number(v) for v in curve.values(metric)]

    return {
        "name": curve.name,
        "description": f"{curve.label}, measured by sccodec bench on {config.dataset} ({len(config.images)} images)",
        "meta": {
            "source": "sccodec bench",
            "type": "image",
            "dataset": config.dataset,
            "n_images": len(config.images),
            "device": "cpu",
            "codec": curve.label,
            "version": curve.version,
            "settings": dict(curve.settings),
            "quality_param": curve.param,
            "quality": [p.quality for p in points],
            "ms-ssim-db": "computed from the averaged MS-SSIM",
            "non_finite": NON_FINITE_NOTE,
        },
        "results": {
            "bpp": column("bpp"),
            "psnr-rgb": column("psnr"),
            "ms-ssim-rgb": column("ms_ssim"),
            "ms-ssim-db-rgb": column("ms_ssim_db"),
            "encoding_time": column("encode_s"),
            "decoding_time": column("decode_s"),
        },
    }


def _column(results: dict[str, Any], key: str, n: int) -> list[float]:
    values = results.get(key)
    if values is None:
        return [math.nan] * n
    if len(values) != n:
        raise ValueError(f'"{key}" has {len(values)} values, "bpp" has {n}')
    return [_from_json_number(v) for v in values]


def _compressai_curve(doc: dict[str, Any], path: Path) -> Curve:
    results = doc["results"]
    bpp = [_from_json_number(v) for v in results["bpp"]]
    n = len(bpp)
    psnr = _column(results, "psnr-rgb", n)
    ms_ssim = _column(results, "ms-ssim-rgb", n)
    if "ms-ssim-rgb" not in results:  # papers often publish only the dB form
        ms_ssim = [1 - 10 ** (-db / 10) for db in _column(results, "ms-ssim-db-rgb", n)]
    meta = doc.get("meta") or {}
    qualities = meta.get("quality")
    if not isinstance(qualities, list) or len(qualities) != n:
        qualities = [None] * n
    points = [
        RatePoint(q, b, p, m, e, d)
        for q, b, p, m, e, d in zip(
            qualities, bpp, psnr, ms_ssim, _column(results, "encoding_time", n), _column(results, "decoding_time", n)
        )
    ]
    name = str(doc.get("name", path.stem))
    return Curve(
        name=name,
        label=str(meta.get("codec") or name),  # our own files keep the codec's readable label there
        points=tuple(sorted(points, key=lambda p: p.bpp)),
        param=meta.get("quality_param", "quality"),
        lossless=meta.get("quality_param") == "",
        reference=True,
        description=str(doc.get("description", "")),
    )


def _peers_curves(doc: dict[str, list[dict[str, Any]]], path: Path) -> list[Curve]:
    curves = []
    for name, rows in doc.items():
        points = [
            RatePoint(
                row.get("q"),
                _from_json_number(row["bpp"]),
                _from_json_number(row["psnr"]),
                _from_json_number(row.get("ms_ssim")),
                _from_json_number(row.get("enc_s")),
                _from_json_number(row.get("dec_s")),
            )
            for row in rows
        ]
        curves.append(Curve(name, f"{name} [{path.stem}]", tuple(sorted(points, key=lambda p: p.bpp)), reference=True))
    return curves


def load_reference(path: Path) -> list[Curve]:
    """Curves from a CompressAI results JSON (ours included) or a peers file; BenchError if neither."""
    try:
        doc = json.loads(Path(path).read_text())
        if isinstance(doc, dict) and isinstance(doc.get("results"), dict):
            return [_compressai_curve(doc, Path(path))]
        if isinstance(doc, dict) and doc and all(isinstance(v, list) for v in doc.values()):
            return _peers_curves(doc, Path(path))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BenchError(f"cannot read reference {path}: {type(exc).__name__}: {exc}") from None
    raise BenchError(f"cannot read reference {path}: neither a CompressAI results file nor a peers file")


def load_references(paths: Sequence[Path]) -> list[Curve]:
    """All curves of several files; a label seen twice gets its file name appended."""
    loaded = [(Path(p), c) for p in paths for c in load_reference(Path(p))]
    seen: dict[str, int] = {}
    for _, c in loaded:
        seen[c.label] = seen.get(c.label, 0) + 1
    return [
        replace(c, label=f"{c.label} [{p.stem}]") if seen[c.label] > 1 and p.stem not in c.label else c
        for p, c in loaded
    ]


# ---------------------------------------------------------------- CSV

CSV_COLUMNS = (
    "row",
    "codec",
    "param",
    "quality",
    "image",
    "n_images",
    "width",
    "height",
    "bytes",
    "bpp",
    "psnr_rgb",
    "ms_ssim_rgb",
    "ms_ssim_db_rgb",
    "encode_ms",
    "decode_ms",
)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)  # repr keeps full precision; inf -> "inf"
    return "" if value is None else value


def _quality_cell(quality: Quality | None) -> str:
    return "lossless" if quality is None else f"{quality:g}"


def _metric_cells(point: RatePoint | Measurement) -> dict[str, Any]:
    return {
        "bpp": point.bpp,
        "psnr_rgb": point.psnr,
        "ms_ssim_rgb": point.ms_ssim,
        "ms_ssim_db_rgb": point.ms_ssim_db,
        "encode_ms": 1000 * point.encode_s,
        "decode_ms": 1000 * point.decode_s,
    }


def write_csv(result: BenchResult, path: Path, per_image: bool = False) -> None:
    """One "mean" row per codec x sweep point; with per_image also one "image" row per image."""
    rows: list[dict[str, Any]] = []
    for curve in result.curves:
        common = {"codec": curve.name, "param": curve.param}
        rows += [
            {"row": "mean", **common, "quality": _quality_cell(p.quality), "n_images": p.n_images, **_metric_cells(p)}
            for p in curve.points
        ]
        if per_image:
            rows += [
                {
                    "row": "image",
                    **common,
                    "quality": _quality_cell(m.quality),
                    "image": m.image,
                    "n_images": 1,
                    "width": m.width,
                    "height": m.height,
                    "bytes": m.n_bytes,
                    **_metric_cells(m),
                }
                for m in result.measurements
                if m.codec == curve.name
            ]
    with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})


# ---------------------------------------------------------------- plot

_OWN_COLOR = "#d62728"  # sccodec: the curve the reader is looking for
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
_MORE = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194")


def _colors(curves: Sequence[Curve]) -> list[str]:
    """Measured codecs get distinct colours; a reference of the same codec name reuses its colour."""
    own: dict[str, str] = {}
    measured, others = itertools.cycle(_PALETTE), itertools.cycle(_MORE)
    for c in curves:
        if not c.reference and c.name not in own:
            own[c.name] = _OWN_COLOR if c.name == "sccodec" else next(measured)
    return [own.get(c.name) or next(others) for c in curves]


def plot_rd(result: BenchResult, references: Sequence[Curve], path: Path) -> None:
    """Two panels, PSNR and MS-SSIM (dB) over bpp; legends carry each codec's BD-rate."""
    summaries = summarize([*result.curves, *references])
    colors = _colors([s.curve for s in summaries])
    lossy_bpp = [b for s in summaries if not s.curve.lossless for b in s.curve.values("bpp") if math.isfinite(b)]
    x_max = 1.05 * max(lossy_bpp) if lossy_bpp else None

    legend_rows = math.ceil(len(summaries) / 2)  # legends sit under the panels, two columns each
    fig = Figure(figsize=(15, 6.5 + 0.22 * legend_rows), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (("psnr", "PSNR-RGB (dB)"), ("ms_ssim_db", "MS-SSIM-RGB (dB)  =  -10 log10(1 - MS-SSIM)"))
    for index, (ax, (metric, ylabel)) in enumerate(zip(axes, panels)):
        drawn = 0
        for s, color in zip(summaries, colors):
            drawn += _draw_curve(ax, s, index, metric, color, x_max)
        if not drawn:
            ax.text(
                0.5,
                0.5,
                "not measured\n(MS-SSIM needs images of at least 161 px per side)",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="0.4",
            )
            ax.set_yticks([])
        ax.set_xlabel("rate (bits per pixel)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{BD_METRICS[index][1]} vs rate  (up and to the left is better)")
        ax.grid(True, alpha=0.3)
        if x_max:
            ax.set_xlim(0, x_max)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(
                title=f"codec: BD-rate vs {ANCHOR} ({BD_METRICS[index][1]})",
                fontsize=8.5,
                title_fontsize=9,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.11),
                ncol=2,
                frameon=False,
            )

    config = result.config
    fig.suptitle(
        f"Rate-distortion on {config.dataset} ({len(config.images)} images, RGB; metrics averaged per rate point)",
        fontsize=14,
    )
    notes = "Solid lines: measured in this run."
    if references:
        notes += " Dashed: reference curves from files (their BD-rates are meaningful only on the same image set)."
    notes += " BD-rate: Bjontegaard delta rate; negative = fewer bits than JPEG at equal quality."
    fig.text(0.5, -0.01, notes, ha="center", va="top", fontsize=9, color="0.3")
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _draw_curve(ax: Any, s: CurveSummary, index: int, metric: str, color: str, x_max: float | None) -> int:
    """Draw one curve on one panel; returns how many curves were drawn (0 or 1)."""
    curve = s.curve
    label = f"{curve.label}{' (ref)' if curve.reference else ''}: {s.bd_text(index)}"
    if curve.lossless:  # infinite quality: a vertical marker at its rate instead of a point
        bpp = curve.points[0].bpp
        if x_max is not None and bpp > x_max:
            ax.plot([], [], ":", color=color, label=f"{curve.label}: {bpp:.2f} bpp (off scale)")
        else:
            ax.axvline(bpp, linestyle=":", color=color, label=f"{curve.label}: {bpp:.2f} bpp")
        return 0
    x, y = curve.values("bpp"), curve.values(metric)
    keep = [i for i in range(len(x)) if math.isfinite(x[i]) and math.isfinite(y[i])]
    if not keep:
        return 0
    own = curve.name == "sccodec" and not curve.reference
    ax.plot(
        x[keep],
        y[keep],
        label=label,
        color=color,
        linestyle="--" if curve.reference else "-",
        marker="o" if not curve.reference else ".",
        markersize=4 if curve.reference else 5,
        linewidth=2.6 if own else 1.5,
        alpha=0.8 if curve.reference else 1.0,
        zorder=3 if own else 2,
    )
    return 1


# ---------------------------------------------------------------- all outputs


def write_outputs(result: BenchResult, references: Sequence[Curve], out_dir: Path, per_image: bool) -> list[Path]:
    """Everything a run writes; returns the paths, table first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "summary.txt"]
    atomic.write_text(written[0], format_table(result, references) + "\n")
    for curve in result.curves:
        path = out_dir / f"{curve.name}.json"
        atomic.write_text(path, json.dumps(curve_to_json(curve, result), indent=2, allow_nan=False) + "\n")
        written.append(path)
    write_csv(result, out_dir / "results.csv", per_image)
    plot_rd(result, references, out_dir / "rd.png")
    return [*written, out_dir / "results.csv", out_dir / "rd.png"]
