"""Segmentation quality from the sparse codes beside dense latents and pixels, on mosaics with known regions.

    python bench/make_mosaics.py --out /tmp/mosaics
    python bench/segmentation_quality.py --mosaics /tmp/mosaics [--levels 2,6,10 --fixed-k 8 --count 40]

Each mosaic (bench/make_mosaics.py: textures from the held-out photos only) is encoded at each
level in ``--levels``; every representation is then clustered by the same ``cluster_grid``
(K-means, same options, same seed) on the same 16-px grid and upsampled the same way
(``sccodec.analysis.segment.upsample``):

- ``codes``: ``segment(read_codes(file), k)``, the sparse code of each position (the API's
  features: signed square root, L2 per position);
- ``codes_sqrt_no_l2``: an ablation of those features: the signed square root without the L2
  normalisation (which discards each block's energy, i.e. its contrast), at ``--ablation-level``;
- ``latent_y``, ``latent_y_l2``: the encoder's dense latent y (``Codec().network.analyze``, one per
  mosaic, before any quantisation), as it is and L2-normalised per position;
- ``decoded_lab``, ``decoded_lab_std``: the decoded pixels in CIE Lab, mean (3-d) and mean plus
  standard deviation (6-d) per 16×16 block;
- ``original_lab``, ``original_lab_std``: the same on the mosaic's own pixels (no coding at all);
- ``grid_oracle``: the true labels' majority per 16×16 block, upsampled: the best any method on
  this grid can score, since true boundaries do not follow it.

K is the mosaic's number of regions, and also ``--fixed-k`` (over-segmentation, scored one-to-one
and after merging each cluster into the true region it overlaps most). Scores at image size:
adjusted Rand index (scikit-learn) and mean IoU over the true regions after a one-to-one
Hungarian matching (scipy); means with 95% bootstrap intervals over mosaics, and paired
differences against ``codes``. Writes ``--out`` (JSON) and prints a Markdown table.

Several feature variants per representation are reported side by side; they were all chosen
before any result was seen, and the mosaics come from the held-out slice, so nothing here is
tuned on evaluation images. No human-labelled public segmentation set is on this machine (and it
has no internet), so there is no such score here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
STRIDE = 16
BOOTSTRAP_SAMPLES = 2000
#: sRGB (D65) linear RGB -> CIE XYZ, and the D65 white point (IEC 61966-2-1, CIE 15).
RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]], np.float32)
WHITE_D65 = np.array([0.95047, 1.0, 1.08883], np.float32)


# ---------------------------------------------------------------- machine


def machine() -> dict[str, object]:
    """Which machine and how busy it was (speeds depend on both)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # bench/speed.py, also when this file is loaded by its path
    from speed import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "loadavg": Path("/proc/loadavg").read_text().strip(),
            "python": platform.python_version()}


# ---------------------------------------------------------------- pixel features


def _srgb_decoding_table() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


SRGB_TO_LINEAR = _srgb_decoding_table()


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> (..., 3) float32 CIE L*a*b* (D65; L in 0..100)."""
    xyz = SRGB_TO_LINEAR[np.asarray(rgb, np.uint8)] @ (RGB_TO_XYZ / WHITE_D65[:, None]).T
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(np.maximum(xyz, eps)), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
                    axis=-1).astype(np.float32)


def blocks(image: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """(H, W, c) -> (h, w, stride*stride, c): the image's stride×stride blocks, edge-padded."""
    height, width, channels = image.shape
    h, w = -(-height // stride), -(-width // stride)
    padded = np.pad(image, ((0, h * stride - height), (0, w * stride - width), (0, 0)), mode="edge")
    return padded.reshape(h, stride, w, stride, channels).transpose(0, 2, 1, 3, 4).reshape(h, w, -1, channels)


def block_lab(rgb: np.ndarray, with_std: bool = False, stride: int = STRIDE) -> np.ndarray:
    """(h, w, 3) Lab mean per block, or (h, w, 6) mean and standard deviation: pixel features
    on the codes' grid."""
    b = blocks(srgb_to_lab(rgb), stride)
    mean = b.mean(axis=2)
    return np.concatenate([mean, b.std(axis=2)], axis=-1) if with_std else mean


def l2_rows(features: np.ndarray) -> np.ndarray:
    """Each position's vector divided by its L2 norm (zero vectors stay zero)."""
    norm = np.linalg.norm(features, axis=-1, keepdims=True)
    return np.divide(features, norm, out=np.zeros_like(features), where=norm > 0)


def dense_latent(codec, rgb: np.ndarray) -> np.ndarray:  # noqa: ANN001 (sccodec.Codec)
    """(h, w, M) float32: the encoder's latent y of the whole image, one position per block."""
    from sccodec.image_io import pad_to_multiple, to_planes

    y = codec.network.analyze(to_planes(pad_to_multiple(rgb, codec.stride)))
    return np.moveaxis(y[0], 0, -1)


# ---------------------------------------------------------------- scores


def adjusted_rand(truth: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(truth.ravel(), labels.ravel()))


def overlaps(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(true regions, labels) pixel counts of each pair."""
    n, k = int(truth.max()) + 1, int(labels.max()) + 1
    return np.bincount(truth.ravel().astype(np.int64) * k + labels.ravel(), minlength=n * k).reshape(n, k)


def iou_table(inter: np.ndarray) -> np.ndarray:
    union = inter.sum(axis=1, keepdims=True) + inter.sum(axis=0, keepdims=True) - inter
    return inter / np.maximum(union, 1)


def matched_miou(truth: np.ndarray, labels: np.ndarray) -> float:
    """Mean IoU over the true regions, each matched one-to-one to a label (Hungarian, maximal
    total IoU); a region left without a label (fewer labels than regions) scores 0."""
    from scipy.optimize import linear_sum_assignment

    iou = iou_table(overlaps(truth, labels))
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return float(iou[rows, cols].sum() / iou.shape[0])


def merged_miou(truth: np.ndarray, labels: np.ndarray) -> float:
    """Mean IoU over the true regions after giving each label to the region it overlaps most:
    over-segmentation is not punished, labels that straddle regions are."""
    inter = overlaps(truth, labels)
    merged = np.zeros((inter.shape[0], inter.shape[0]), np.int64)
    np.add.at(merged, (slice(None), inter.argmax(axis=0)), inter)
    return float(np.diag(iou_table(merged)).mean())


def grid_oracle(truth: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """The true labels' majority per block, on the grid: what a perfect grid method outputs."""
    b = blocks(truth[..., None], stride)[..., 0]
    counts = (b[..., None] == np.arange(int(truth.max()) + 1)).sum(axis=2)
    return counts.argmax(axis=-1).astype(np.int32)


def mean_ci(values: list[float] | np.ndarray, seed: int = 0) -> dict[str, float]:
    """Mean, standard deviation and 95% percentile-bootstrap interval of the mean."""
    v = np.asarray(values, np.float64)
    means = np.random.default_rng(seed).choice(v, (BOOTSTRAP_SAMPLES, len(v))).mean(axis=1)
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4),
            "ci95": [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)],
            "n": len(v)}


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class Method:
    """One representation at one level: how to get labels at image size for K clusters."""

    name: str
    level: int | None  # None: does not depend on the coding level
    labels: Callable[[int], np.ndarray]  # k -> (H, W) labels


def methods_for(mosaic: np.ndarray, codec, levels: list[int], options: dict, cache: Path,  # noqa: ANN001
                ablation_level: int) -> tuple[list[Method], dict[int, float]]:
    """Every representation of one mosaic, and the rate (bpp) of each level's file (encoded
    into ``cache`` once, reused by later runs); the codes' ablation at ``ablation_level`` only."""
    from sccodec.analysis.segment import cluster_grid, segment, upsample
    from sccodec.codes import read_codes

    size = mosaic.shape[:2]

    def on_grid(features: np.ndarray) -> Callable[[int], np.ndarray]:
        return lambda k: upsample(cluster_grid(features, k, **options), STRIDE, size)

    y = dense_latent(codec, mosaic)
    out = [Method("latent_y", None, on_grid(y)), Method("latent_y_l2", None, on_grid(l2_rows(y))),
           Method("original_lab", None, on_grid(block_lab(mosaic))),
           Method("original_lab_std", None, on_grid(block_lab(mosaic, True)))]
    rates = {}
    for q in levels:
        path = cache / f"q{q}.scv"
        if not path.is_file():
            path.write_bytes(codec.encode(mosaic, q))
        data = path.read_bytes()
        rates[q] = len(data) * 8 / (size[0] * size[1])
        codes = read_codes(data)
        decoded = codec.decode_array(data)[0]
        out += [Method("codes", q, lambda k, c=codes: segment(c, k, **options)),
                Method("decoded_lab", q, on_grid(block_lab(decoded))),
                Method("decoded_lab_std", q, on_grid(block_lab(decoded, True)))]
        if q == ablation_level:
            v = np.moveaxis(codes.values, 0, -1)
            out.append(Method("codes_sqrt_no_l2", q, on_grid(np.sign(v) * np.sqrt(np.abs(v)))))
    return out, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mosaics", type=Path, required=True, help="folder written by bench/make_mosaics.py")
    parser.add_argument("--levels", default="2,6,10", help="quality levels to encode the mosaics at")
    parser.add_argument("--fixed-k", type=int, default=8, help="the fixed K scored beside K = number of regions")
    parser.add_argument("--position-weight", type=float, default=0.0, help="cluster_grid's option, for every method")
    parser.add_argument("--smooth", type=int, default=1, help="cluster_grid's option, for every method")
    parser.add_argument("--ablation-level", type=int, default=6, help="the level of the codes' feature ablation")
    parser.add_argument("--count", type=int, default=None, help="only the first COUNT mosaics")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="the codec's runtime threads (1: on shared cores more threads only contend)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "analysis_segmentation.json")
    args = parser.parse_args()

    from sccodec.analysis.segment import upsample
    from sccodec.api import Codec

    started, load_before = time.perf_counter(), machine()
    manifest = json.loads((args.mosaics / "manifest.json").read_text())
    records = manifest["mosaics"][: args.count]
    levels = [int(q) for q in args.levels.split(",")]
    codec = Codec(device="cpu", threads=args.threads)
    options = {"position_weight": args.position_weight, "smooth": args.smooth, "seed": args.seed}

    # One BLAS/OpenMP thread for K-means: on a grid of a few thousand positions the threads only
    # wait for each other (several times slower on 2 shared cores); the clusters do not depend on it.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    rows = []
    for record in records:
        name = record["name"]
        mosaic = np.asarray(Image.open(args.mosaics / f"{name}.png").convert("RGB"))
        truth = np.asarray(Image.open(args.mosaics / f"{name}.labels.png")).astype(np.int64)
        cache = args.mosaics / "scv" / name
        cache.mkdir(parents=True, exist_ok=True)
        methods, rates = methods_for(mosaic, codec, levels, options, cache, args.ablation_level)
        oracle = upsample(grid_oracle(truth), STRIDE, truth.shape)
        methods.append(Method("grid_oracle", None, lambda k: oracle))
        for method in methods:
            for k_mode, k in (("k_regions", record["regions"]), ("k_fixed", args.fixed_k)):
                t0 = time.perf_counter()
                labels = method.labels(k).astype(np.int64)
                seconds = time.perf_counter() - t0
                rows.append({"mosaic": name, "regions": record["regions"], "method": method.name,
                             "level": method.level, "bpp": None if method.level is None else round(rates[method.level], 4),
                             "k_mode": k_mode, "k": k, "ari": round(adjusted_rand(truth, labels), 4),
                             "miou": round(matched_miou(truth, labels), 4),
                             "miou_merged": round(merged_miou(truth, labels), 4),
                             "cluster_ms": round(1000 * seconds, 1)})
        print(f"{name}: {record['regions']} regions, {len(methods)} methods, "
              f"{time.perf_counter() - started:.0f} s", flush=True)

    result = {"command": "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:]),
              "machine": load_before, "loadavg_after": Path("/proc/loadavg").read_text().strip(),
              "seconds": round(time.perf_counter() - started, 1),
              "mosaics": {"folder_manifest_seed": manifest["seed"], "size": manifest["size"], "count": len(records),
                          "held_out_photos": manifest["held_out_photos"]},
              "levels": levels, "fixed_k": args.fixed_k, "cluster_options": options,
              "human_labelled_set": "none: no public human-labelled segmentation set is on this machine "
                                    "and it has no internet",
              "summary": summarise(rows, args.seed), "per_mosaic": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result["summary"]))


def summarise(rows: list[dict], seed: int) -> list[dict]:
    """Per (method, level, K mode): mean/CI of each score, and the paired difference to ``codes``
    at the same level (at every level for level-free methods)."""
    keys = sorted({(r["method"], r["level"] or 0, r["k_mode"]) for r in rows})
    by_key = {key: sorted((r for r in rows if (r["method"], r["level"] or 0, r["k_mode"]) == key),
                          key=lambda r: r["mosaic"]) for key in keys}
    levels = sorted({r["level"] for r in rows if r["level"] is not None})
    summary = []
    for (method, level, k_mode), group in by_key.items():
        entry = {"method": method, "level": level or None, "k_mode": k_mode,
                 "bpp": round(float(np.mean([r["bpp"] for r in group])), 3) if level else None,
                 "cluster_ms_median": round(float(np.median([r["cluster_ms"] for r in group])), 1)}
        for score in ("ari", "miou", "miou_merged"):
            entry[score] = mean_ci([r[score] for r in group], seed)
        if method != "codes":
            for q in ([level] if level else levels):
                codes = by_key.get(("codes", q, k_mode))
                if codes:
                    entry[f"codes_q{q}_minus_this"] = {score: mean_ci([c[score] - r[score] for c, r in zip(codes, group)], seed)
                                                       for score in ("ari", "miou")}
        summary.append(entry)
    return summary


def markdown(summary: list[dict]) -> str:
    lines = ["| method | level | bpp | K | ARI (95% CI) | mIoU (95% CI) | mIoU merged | cluster ms |",
             "|---|---|---|---|---|---|---|---|"]
    for e in sorted(summary, key=lambda e: (e["k_mode"], e["level"] or 0, e["method"])):
        def cell(s: dict) -> str:
            return f"{s['mean']:.3f} ({s['ci95'][0]:.3f}–{s['ci95'][1]:.3f})"
        lines.append(f"| {e['method']} | {e['level'] or '–'} | {e['bpp'] if e['bpp'] is not None else '–'} | "
                     f"{e['k_mode']} | {cell(e['ari'])} | {cell(e['miou'])} | {e['miou_merged']['mean']:.3f} | "
                     f"{e['cluster_ms_median']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
