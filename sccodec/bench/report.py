"""What a run leaves behind: terminal table, CompressAI-style JSON, CSV and the RD plot.

Every BD-rate vs JPEG is shown with the head-to-head figures beside it (sccodec's BD-rate with
each other codec as the anchor, over the range both cover; sccodec.bench.head_to_head): in
the table's "sccodec vs it" columns, in ``meta.bd_rates`` of each JSON, in ``bd_rates.csv`` and
in the plot's legends, so no output suggests a parity that head to head denies.

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
from sccodec.bench.head_to_head import Comparison, compare, is_sccodec
from sccodec.bench.peers import ANCHOR, Quality
from sccodec.bench.runner import BenchError, BenchResult, Curve, Measurement, RatePoint

NON_FINITE_NOTE = '"inf" = infinite (lossless); null = not measured'
#: Quality metrics of the BD-rates: (Curve attribute, name in the table and plot, key in JSON/CSV).
BD_METRICS = (("psnr", "PSNR", "psnr-rgb"), ("ms_ssim_db", "MS-SSIM dB", "ms-ssim-db-rgb"))


@dataclass(frozen=True)
class CurveSummary:
    """A curve with its BD-rates against the anchor and, head to head, every sccodec curve's
    BD-rate against it (one Comparison per entry of BD_METRICS in each).

    ``vs_anchor`` is empty when the run has no anchor or the curve is the anchor;
    ``head_to_head`` has one entry per sccodec curve of the summary (in order), None where
    that sccodec curve is this curve."""

    curve: Curve
    vs_anchor: tuple[Comparison, ...] = ()
    is_anchor: bool = False
    head_to_head: tuple[tuple[Comparison, ...] | None, ...] = ()

    def bd_text(self, index: int) -> str:
        if self.is_anchor:
            return "anchor"
        return str(self.vs_anchor[index].bd) if self.vs_anchor else f"no {ANCHOR} in run"

    def head_to_head_text(self, ours: int, index: int) -> str:
        comparisons = self.head_to_head[ours]
        return "-" if comparisons is None else comparisons[index].text()


def _on_all_metrics(test: Curve, anchor: Curve) -> tuple[Comparison, ...]:
    return tuple(compare(test, anchor, metric) for metric, _, _ in BD_METRICS)


def summarize(curves: Sequence[Curve]) -> list[CurveSummary]:
    """BD-rates of every curve against the JPEG measured in the same run, and head to head
    of every sccodec curve (measured or loaded) against every other curve."""
    anchor = next((c for c in curves if c.name == ANCHOR and not c.reference), None)
    ours = [c for c in curves if is_sccodec(c)]
    return [
        CurveSummary(
            curve,
            vs_anchor=() if anchor is None or curve is anchor else _on_all_metrics(curve, anchor),
            is_anchor=curve is anchor,
            head_to_head=tuple(None if own is curve else _on_all_metrics(own, curve) for own in ours),
        )
        for curve in curves
    ]


def _display_label(curve: Curve) -> str:
    return curve.label + (" (ref)" if curve.reference else "")


def sccodec_curves(summaries: Sequence[CurveSummary]) -> list[Curve]:
    """The curves the head-to-head entries are of, in the order of ``CurveSummary.head_to_head``."""
    return [s.curve for s in summaries if is_sccodec(s.curve)]


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
    """The terminal summary: one row per codec, references after a rule; beside the BD-rates
    vs JPEG, one head-to-head column per sccodec curve and metric."""
    summaries = summarize([*result.curves, *references])
    ours = sccodec_curves(summaries)
    h2h_header = tuple(f"{_display_label(o)} vs it, {name}" for o in ours for _, name, _ in BD_METRICS)
    header = (
        "codec", "pts", "BD-rate PSNR", "BD-rate MS-SSIM", *h2h_header, "bpp", "PSNR dB", "enc ms", "dec ms"
    )  # fmt: skip
    rows = [
        (
            _display_label(s.curve),
            str(len(s.curve.points)),
            s.bd_text(0),
            s.bd_text(1),
            *(s.head_to_head_text(o, m) for o in range(len(ours)) for m in range(len(BD_METRICS))),
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
    if ours:
        own = _display_label(ours[0]) if len(ours) == 1 else "X"
        out += [
            f"{own} vs it: head to head, {own}'s BD-rate with that row's codec as the anchor, over the quality",
            f"range both cover (shown); positive = {own} needs more bits than that codec at equal quality.",
            f"BD-rates vs {ANCHOR} come from each codec's own overlap with {ANCHOR}, so they do not rank codecs;",
            "head to head does.",
        ]
    else:
        out.append("No sccodec curve in this run or its references, so no head-to-head columns.")
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


def _metric_json(comparisons: Sequence[Comparison]) -> dict[str, Any]:
    return {key: c.to_json() for (_, _, key), c in zip(BD_METRICS, comparisons)}


def bd_rates_json(summary: CurveSummary, summaries: Sequence[CurveSummary]) -> dict[str, Any]:
    """A curve's BD-rates for its JSON's ``meta``: vs the anchor and, for a sccodec curve,
    head to head against every other curve of the run (anchor = that curve)."""
    doc: dict[str, Any] = {
        "sign": "bd_rate_percent: this codec's bits against the anchor's at equal quality over overlap_db; "
        "positive = this codec needs more bits. In head_to_head the anchor is the codec named there."
    }
    if summary.is_anchor:
        doc["vs_anchor"] = {"anchor": ANCHOR, "is_anchor": True}
    elif summary.vs_anchor:
        doc["vs_anchor"] = {"anchor": ANCHOR, **_metric_json(summary.vs_anchor)}
    if is_sccodec(summary.curve):
        own = next(i for i, c in enumerate(sccodec_curves(summaries)) if c is summary.curve)
        doc["head_to_head"] = [
            {"anchor": s.curve.name, "anchor_label": _display_label(s.curve), "reference": s.curve.reference,
             **_metric_json(comparisons)}
            for s in summaries
            if (comparisons := s.head_to_head[own]) is not None
        ]  # fmt: skip
    return doc


def curve_to_json(curve: Curve, result: BenchResult, summaries: Sequence[CurveSummary] = ()) -> dict[str, Any]:
    """A measured curve as a CompressAI results document; given the run's summaries, its
    ``meta.bd_rates`` carries its BD-rates (bd_rates_json)."""
    points = curve.points
    config = result.config
    summary = next((s for s in summaries if s.curve is curve), None)

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
            **({"bd_rates": bd_rates_json(summary, summaries)} if summary else {}),
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


BD_RATE_CSV_COLUMNS = (
    "kind",
    "test",
    "test_reference",
    "anchor",
    "anchor_reference",
    "metric",
    "bd_rate_percent",
    "overlap_lo_db",
    "overlap_hi_db",
    "reason",
)


def write_bd_rates_csv(summaries: Sequence[CurveSummary], path: Path) -> None:
    """One row per BD-rate: kind "vs_anchor" (each curve vs JPEG), then "head_to_head" (each
    sccodec curve vs each other curve). Positive = the test codec needs more bits than the anchor."""
    ours = sccodec_curves(summaries)
    comparisons = [("vs_anchor", c) for s in summaries for c in s.vs_anchor] + [
        ("head_to_head", c)
        for own in range(len(ours))
        for s in summaries
        for c in s.head_to_head[own] or ()
    ]
    keys = {metric: key for metric, _, key in BD_METRICS}
    with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=BD_RATE_CSV_COLUMNS)
        writer.writeheader()
        for kind, c in comparisons:
            record = c.to_json()
            lo, hi = record["overlap_db"] or (None, None)
            row = {
                "kind": kind,
                "test": c.test.name,
                "test_reference": int(c.test.reference),
                "anchor": c.anchor.name,
                "anchor_reference": int(c.anchor.reference),
                "metric": keys[c.metric],
                "bd_rate_percent": record["bd_rate_percent"],
                "overlap_lo_db": lo,
                "overlap_hi_db": hi,
                "reason": record["reason"],
            }
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
    """Two panels, PSNR and MS-SSIM (dB) over bpp. Each legend entry carries the codec's BD-rate
    vs JPEG and, head to head, how many more bits each sccodec curve needs than that codec at
    equal quality, so a BD-rate vs JPEG never stands alone."""
    summaries = summarize([*result.curves, *references])
    ours = sccodec_curves(summaries)
    colors = _colors([s.curve for s in summaries])
    lossy_bpp = [b for s in summaries if not s.curve.lossless for b in s.curve.values("bpp") if math.isfinite(b)]
    x_max = 1.05 * max(lossy_bpp) if lossy_bpp else None

    # legends sit under the panels; head-to-head entries are too long to share a row
    columns = 1 if ours and len(summaries) > 1 else 2
    legend_lines = math.ceil(len(summaries) / columns)
    if len(ours) > 1:  # each entry then has a line per sccodec curve it is compared with
        legend_lines += sum(h is not None for s in summaries for h in s.head_to_head)
    fig = Figure(figsize=(15, 6.5 + 0.22 * legend_lines), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (("psnr", "PSNR-RGB (dB)"), ("ms_ssim_db", "MS-SSIM-RGB (dB)  =  -10 log10(1 - MS-SSIM)"))
    for index, (ax, (metric, ylabel)) in enumerate(zip(axes, panels)):
        drawn = 0
        for s, color in zip(summaries, colors):
            drawn += _draw_curve(ax, s, _legend_label(s, ours, index), metric, color, x_max)
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
            title = f"codec: BD-rate vs {ANCHOR} ({BD_METRICS[index][1]})"
            if ours:
                title += f"; head to head: sccodec's bits vs that codec at equal {BD_METRICS[index][1]}"
            ax.legend(
                title=title,
                fontsize=8.5,
                title_fontsize=9,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.11),
                ncol=columns,
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
    notes += f" BD-rate: Bjontegaard delta rate; negative = fewer bits than {ANCHOR} at equal quality."
    if ours:
        notes += (
            f"\nBD-rates vs {ANCHOR} come from each codec's own overlap with {ANCHOR} and do not rank codecs. Head to"
            " head (\"sccodec vs it\"): that codec is the anchor, over the range both cover (in brackets);"
            " positive = sccodec needs more bits."
        )
    fig.text(0.5, -0.01, notes, ha="center", va="top", fontsize=9, color="0.3")
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _legend_label(s: CurveSummary, ours: Sequence[Curve], index: int) -> str:
    """``WebP (method 6): -37.2% vs jpeg | sccodec vs it: +5.8% bits at equal PSNR (28.1–34.5 dB)``;
    with several sccodec curves, one line per sccodec curve under the codec's line."""
    label = f"{_display_label(s.curve)}: {s.bd_text(index)}" + ("" if s.is_anchor else f" vs {ANCHOR}")
    separator = " | " if len(ours) == 1 else "\n    "
    for own, comparisons in zip(ours, s.head_to_head):
        if comparisons is None:
            continue
        comparison = comparisons[index]
        if comparison.defined:
            text = f"{comparison.bd} bits at equal {BD_METRICS[index][1]} ({comparison.overlap_text('–')})"
        else:
            text = comparison.text()
        label += f"{separator}{_display_label(own)} vs it: {text}"
    return label


def _draw_curve(ax: Any, s: CurveSummary, label: str, metric: str, color: str, x_max: float | None) -> int:
    """Draw one curve on one panel under ``label``; returns how many curves were drawn (0 or 1)."""
    curve = s.curve
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
    summaries = summarize([*result.curves, *references])
    written = [out_dir / "summary.txt"]
    atomic.write_text(written[0], format_table(result, references) + "\n")
    for curve in result.curves:
        path = out_dir / f"{curve.name}.json"
        doc = curve_to_json(curve, result, summaries)
        atomic.write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
        written.append(path)
    write_csv(result, out_dir / "results.csv", per_image)
    write_bd_rates_csv(summaries, out_dir / "bd_rates.csv")
    plot_rd(result, references, out_dir / "rd.png")
    return [*written, out_dir / "results.csv", out_dir / "bd_rates.csv", out_dir / "rd.png"]
