"""Near-duplicate search from the sparse codes beside a pixel thumbnail, on training photos.

    python bench/search_quality.py --work /tmp/search [--queries 200 --distractors 2000 --long-side 384]

The corpus (every image resized to ``--long-side`` px on its long side, encoded with sccodec):

- database: one .scv per query photo (the photo itself, default quality) plus ``--distractors``
  distinct crops (25-60% of the area) of the other training photos, also at default quality;
- queries: variants of each query photo, each coded to its own .scv: ``recrop`` (80-90% of the
  area, no resize), ``rescale`` (0.5-0.75x), ``requality`` (the photo itself at level 2, 4, 8 or
  10), ``colour`` (brightness x0.85-1.15 and hue shifted by 5-15 degrees either way) and ``jpeg``
  (a JPEG round trip at quality 50-80 before encoding).

Query photos are drawn (seeded) from the training photos that are not held out; the distractors
come from the rest of them (``sccodec.train.data.split_holdout``; the held-out slice is not used).
Neither descriptor is trained or tuned on anything here: ``describe`` is used as it ships, and the
pixel baseline is fixed in advance (a 16x16 Lab thumbnail, box-filtered, flattened, L2-normalised),
both searched by the same ``Index`` (exact Euclidean nearest neighbours). The thumbnails are taken
from the decoded pixels of every query and database file (what a user holding .scv files has)
and, to keep the run within its budget, from the pixels given to the encoder for the distractors:
``thumbnail_coding_shift`` reports how far coding moves a thumbnail, against the distances that
decide a search.

Scores: recall@1 and recall@10 (the query's own photo among the first 1 / 10 results), overall and
per variant, with 95% bootstrap intervals over queries. Writes ``--out`` (JSON) and prints a table.
The .scv files go to ``--work`` and are reused by a later run with the same arguments.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the sibling bench scripts, also when loaded by file path

from segmentation_quality import machine, mean_ci, srgb_to_lab  # noqa: E402

REPO = HERE.parent
TRAIN = REPO.parent / "shared" / "data" / "train"
VARIANTS = ("recrop", "rescale", "requality", "colour", "jpeg")
REQUALITY_LEVELS = (2, 4, 8, 10)
THUMBNAIL = 16


# ---------------------------------------------------------------- images


def fit_long_side(image: Image.Image, long_side: int) -> Image.Image:
    scale = long_side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)


def random_crop(rng: np.random.Generator, image: Image.Image, area: tuple[float, float],
                aspect_jitter: float = 0.0) -> Image.Image:
    """A crop covering a random share ``area`` of the image, its aspect ratio changed by up to
    ``aspect_jitter`` (relative), at a random place."""
    share = rng.uniform(*area)
    stretch = np.exp(rng.uniform(-aspect_jitter, aspect_jitter))
    width = min(image.width, max(16, round(image.width * np.sqrt(share) * stretch)))
    height = min(image.height, max(16, round(image.height * np.sqrt(share) / stretch)))
    left = int(rng.integers(0, image.width - width + 1))
    top = int(rng.integers(0, image.height - height + 1))
    return image.crop((left, top, left + width, top + height))


def colour_shift(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Brightness x0.85-1.15, then hue turned by 5-15 degrees in a random direction."""
    brighter = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    hsv = np.asarray(brighter.convert("HSV")).copy()
    turn = round(rng.uniform(5, 15) / 360 * 256) * int(rng.choice([-1, 1]))
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + turn) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def jpeg_round_trip(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=int(rng.integers(50, 81)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def variant(rng: np.random.Generator, kind: str, photo: Image.Image) -> tuple[Image.Image, int | None]:
    """(the variant's pixels, the level to code it at; None: the default)."""
    if kind == "recrop":
        return random_crop(rng, photo, (0.8, 0.9)), None
    if kind == "rescale":
        factor = rng.uniform(0.5, 0.75)
        return photo.resize((round(photo.width * factor), round(photo.height * factor)), Image.LANCZOS), None
    if kind == "requality":
        return photo, int(rng.choice(REQUALITY_LEVELS))
    if kind == "colour":
        return colour_shift(rng, photo), None
    if kind == "jpeg":
        return jpeg_round_trip(rng, photo), None
    raise ValueError(f"unknown variant {kind!r}")


def thumbnail_descriptor(rgb: np.ndarray | Image.Image, side: int = THUMBNAIL) -> np.ndarray:
    """(side*side*3,) float32, unit length: the image box-filtered to side x side, in Lab."""
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    lab = srgb_to_lab(np.asarray(image.convert("RGB").resize((side, side), Image.BOX))).ravel()
    return (lab / max(float(np.linalg.norm(lab)), 1e-12)).astype(np.float32)


# ---------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Entry:
    """One coded file of the corpus."""

    name: str
    role: str  # "database" or "query"
    source: str  # the database name a query should find; for database files their own name
    variant: str  # "original", "distractor" or one of VARIANTS
    image: Image.Image | None  # dropped once coded
    level: int | None  # None: the default quality


def corpus(rng: np.random.Generator, train: Path, queries: int, distractors: int, long_side: int
           ) -> Iterator[Entry]:
    """The corpus's files one at a time (each image is made when it is needed), in a fixed order."""
    from sccodec.train.data import list_images, split_holdout

    photos = split_holdout(list_images(train))[0]
    order = rng.permutation(len(photos))
    query_photos = [photos[i] for i in sorted(order[:queries])]
    other_photos = [photos[i] for i in sorted(order[queries:])]
    if len(query_photos) < queries or not other_photos:
        raise SystemExit(f"{train} has {len(photos)} usable photos: too few for {queries} queries and distractors")
    for i, path in enumerate(query_photos):
        with Image.open(path) as im:
            photo = fit_long_side(im.convert("RGB"), long_side)
        name = f"photo{i:03d}"
        yield Entry(name, "database", name, "original", photo, None)
        for kind in VARIANTS:
            pixels, level = variant(rng, kind, photo)
            yield Entry(f"{name}.{kind}", "query", name, kind, pixels, level)
    per_photo = -(-distractors // len(other_photos))
    made = 0
    for j, path in enumerate(other_photos):
        with Image.open(path) as im:
            photo = im.convert("RGB")
        for c in range(min(per_photo, distractors - made)):
            crop = fit_long_side(random_crop(rng, photo, (0.25, 0.6), aspect_jitter=0.3), long_side)
            name = f"distractor{j:03d}_{c:02d}"
            yield Entry(name, "database", name, "distractor", crop, None)
            made += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the coded corpus (not committed)")
    parser.add_argument("--train", type=Path, default=TRAIN)
    parser.add_argument("--queries", type=int, default=200, help="query photos (each gives one variant per kind)")
    parser.add_argument("--distractors", type=int, default=2000)
    parser.add_argument("--long-side", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="the codec's runtime threads")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "analysis_search.json")
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from sccodec.analysis.describe import describe
    from sccodec.analysis.index import Index
    from sccodec.api import Codec
    from sccodec.codes import read_codes

    threadpool_limits(1)  # small matrix products: threads only contend on shared cores
    started, load_before = time.perf_counter(), machine()
    rng = np.random.default_rng(args.seed)
    codec = Codec(device="cpu", threads=args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    entries, code_vectors, pixel_vectors, shifts = [], [], [], []
    coding_seconds = describe_seconds = 0.0
    for n, entry in enumerate(corpus(rng, args.train, args.queries, args.distractors, args.long_side), 1):
        path = args.work / f"{entry.name}.scv"
        t0 = time.perf_counter()
        if not path.is_file():
            path.write_bytes(codec.encode(entry.image, entry.level))
        data = path.read_bytes()
        coding_seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        code_vectors.append(describe(read_codes(data)))
        describe_seconds += time.perf_counter() - t0
        if entry.variant == "distractor":
            pixel_vectors.append(thumbnail_descriptor(entry.image))
        else:
            pixel_vectors.append(thumbnail_descriptor(codec.decode_array(data)[0]))
            if entry.variant == "original":
                shifts.append(float(np.linalg.norm(pixel_vectors[-1] - thumbnail_descriptor(entry.image))))
        entries.append(replace(entry, image=None))
        if n % 200 == 0:
            print(f"{n} files, {time.perf_counter() - started:.0f} s", flush=True)

    database = [i for i, e in enumerate(entries) if e.role == "database"]
    queries = [i for i, e in enumerate(entries) if e.role == "query"]
    names = [entries[i].name for i in database]
    result_by_method, ranks_by_method = {}, {}
    for method, vectors in (("codes_describe", code_vectors), ("pixels_thumbnail16_lab", pixel_vectors)):
        index = Index.from_descriptors(names, np.stack([vectors[i] for i in database]))
        index.query(vectors[queries[0]], k=10)  # warm-up: scikit-learn's import
        t0 = time.perf_counter()
        ranks = {}
        for i in queries:
            found = [m.name for m in index.query(vectors[i], k=10)]
            ranks[entries[i].name] = found.index(entries[i].source) + 1 if entries[i].source in found else None
        query_ms = 1000 * (time.perf_counter() - t0) / len(queries)
        ranks_by_method[method] = ranks
        result_by_method[method] = {"query_ms_mean": round(query_ms, 2), **recalls(entries, queries, ranks, args.seed)}

    nearest_distractor = nearest_distractor_distances(entries, pixel_vectors)
    result = {"command": "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:]),
              "machine": load_before, "loadavg_after": Path("/proc/loadavg").read_text().strip(),
              "seconds": round(time.perf_counter() - started, 1),
              "corpus": {"query_photos": args.queries, "variants": list(VARIANTS), "queries": len(queries),
                         "database": len(database), "distractors": len(database) - args.queries,
                         "long_side": args.long_side, "requality_levels": list(REQUALITY_LEVELS),
                         "default_quality": codec.default_quality, "seed": args.seed,
                         "photos": "training photos that are not held out (sccodec.train.data.split_holdout)"},
              "seconds_coding": round(coding_seconds, 1), "seconds_describe": round(describe_seconds, 1),
              "thumbnail_coding_shift": {
                  "what": "distance between the thumbnail descriptors of a database photo's decoded file and "
                          "of its pixels before coding, beside the distance from each decoded database photo "
                          "to its nearest distractor (distractor thumbnails are taken before coding)",
                  "coding_shift": mean_ci(shifts, args.seed), "nearest_distractor": mean_ci(nearest_distractor, args.seed)},
              "results": result_by_method,
              "ranks": {m: {"names": list(r), "rank_or_0": [v or 0 for v in r.values()]} for m, r in ranks_by_method.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result_by_method))


def nearest_distractor_distances(entries: list[Entry], vectors: list[np.ndarray]) -> list[float]:
    originals = np.stack([v for e, v in zip(entries, vectors) if e.variant == "original"])
    distractors = np.stack([v for e, v in zip(entries, vectors) if e.variant == "distractor"])
    distances = np.linalg.norm(originals[:, None, :] - distractors[None, :, :], axis=-1)
    return distances.min(axis=1).tolist()


def recalls(entries: list[Entry], queries: list[int], ranks: dict[str, int | None], seed: int) -> dict[str, dict]:
    """recall@1 and @10, overall and per variant, each with a bootstrap interval."""
    out = {}
    for kind in ("all", *VARIANTS):
        chosen = [ranks[entries[i].name] for i in queries if kind in ("all", entries[i].variant)]
        out[kind] = {f"recall@{k}": mean_ci([r is not None and r <= k for r in chosen], seed) for k in (1, 10)}
    return out


def markdown(results: dict[str, dict]) -> str:
    kinds = ("all", *VARIANTS)
    lines = ["| descriptor | " + " | ".join(f"{k} R@1 / R@10" for k in kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    for method, r in results.items():
        lines.append(f"| {method} | " + " | ".join(f"{r[k]['recall@1']['mean']:.3f} / {r[k]['recall@10']['mean']:.3f}"
                                                     for k in kinds) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
