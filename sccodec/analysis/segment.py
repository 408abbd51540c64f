"""Segmentation in the compressed domain: K-means over the sparse code of each latent position.

    Codes ─code_features: signed sqrt, L2 per position─▶ (h, w, K) ─cluster_grid: K-means
          (+ optional scaled (row, col)), majority smoothing─▶ labels (h, w) ─nearest upsampling─▶ (H, W)

This is the SC-VAE paper's patch clustering: each position of the grid codes a 16×16 pixel
block as a few atoms of a learned dictionary, and blocks of the same texture or colour fire the
same atoms in similar proportions, so clustering the code vectors groups the blocks into regions
without decoding a pixel. ``cluster_grid`` is separate from the code features so that the same
clustering runs on any per-position features (codes, latents, pooled pixels) and can be compared.

scikit-learn is imported only inside the functions that run K-means (the ``analysis`` extra).
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from sccodec.codes import Codes
from sccodec.errors import ParameterError

#: K-means restarts from different k-means++ seeds; the best (lowest inertia) run is kept.
N_INIT = 4
#: K-means is fitted on at most this many positions (a seeded sample; a 12-Mpx photo has about
#: 47,000) and then assigns every position to its nearest centre: the clusters of a large image
#: are as well defined from a sample (still 78 positions a cluster at K = 256), and the time stays
#: bounded.
MAX_FIT_POSITIONS = 20_000


def code_features(codes: Codes) -> np.ndarray:
    """(h, w, K) float32: each position's code vector, signed-square-rooted and L2-normalised.

    Why these two steps: the code values are heavy-tailed (a few large coefficients and many
    small ones), so plain Euclidean distances would follow the one or two largest atoms of each
    position; the signed square root (the power normalisation of Fisher vectors, a Hellinger
    kernel on magnitudes) lets the smaller atoms count too. Dividing by the L2 norm makes two
    positions alike when the same atoms fire in the same proportions, whatever their overall
    energy: that is the block's pattern rather than its contrast, and the quality level's gain on
    the latent (which scales a level's whole code) drops out. Euclidean K-means on unit vectors
    clusters by cosine similarity (spherical K-means). A position with no non-zero atom (a flat
    block at a low rate) stays the zero vector and ends up with other flat blocks.
    """
    f = np.array(np.moveaxis(codes.values, 0, -1), dtype=np.float32, order="C")  # a copy, worked in place
    negative = np.signbit(f)
    np.sqrt(np.abs(f, out=f), out=f)
    np.negative(f, out=f, where=negative)
    norm = np.sqrt(np.einsum("...k,...k->...", f, f))[..., None]
    np.divide(f, norm, out=f, where=norm > 0)
    return f


def cluster_grid(features: np.ndarray, k: int, *, position_weight: float = 0.0, smooth: int = 1,
                 seed: int = 0) -> np.ndarray:
    """Cluster a grid of feature vectors: (h, w, d) float -> labels (h, w) int32 in 0..k-1.

    The features are clustered as given (scale and normalise them first, as ``code_features``
    does for codes). ``position_weight`` > 0 appends each position's (row, col), scaled to
    [0, 1] along the grid's longer side and multiplied by ``position_weight`` times the
    features' spread (their RMS distance to their mean): 0 ignores where a position is, 1 makes
    crossing the whole grid cost about as much as a typical difference in features, so that
    clusters become compact regions. ``smooth`` passes of a 3×3 majority filter then remove
    isolated labels. Labels are numbered in the order they first occur in raster order (the
    top-left region is 0), so the numbering does not depend on K-means' internal order; a label
    that smoothing removes, or that K-means could not fill (fewer distinct vectors than ``k``),
    leaves the labels 0..k'-1 with k' < k.

    Deterministic for a given ``seed`` (K-means' ``random_state``, and the sample it is fitted
    on when the grid has more than ``MAX_FIT_POSITIONS`` positions).
    """
    features = np.asarray(features)
    if features.ndim != 3 or features.shape[0] < 1 or features.shape[1] < 1 or features.shape[2] < 1:
        raise ParameterError(f"features must be an (h, w, d) array, got shape {features.shape}")
    h, w, d = features.shape
    _check_clusters(k, h * w)
    if isinstance(position_weight, bool) or not isinstance(position_weight, numbers.Real) \
            or not 0 <= position_weight < math.inf:
        raise ParameterError(f"position_weight must be a finite number >= 0, got {position_weight!r}")
    if isinstance(smooth, bool) or not isinstance(smooth, numbers.Integral) or smooth < 0:
        raise ParameterError(f"smooth must be a whole number of passes >= 0, got {smooth!r}")
    x = np.asarray(features.reshape(h * w, d), dtype=np.float32)
    if position_weight > 0:
        x = np.concatenate([x, _position_columns(h, w, position_weight * _spread(x))], axis=1)
    labels = _kmeans(x, int(k), seed).reshape(h, w)
    for _ in range(smooth):
        labels = majority_filter(labels)
    return _in_order_of_appearance(labels)


def segment(codes: Codes, k: int, *, position_weight: float = 0.0, smooth: int = 1, seed: int = 0) -> np.ndarray:
    """Labels (H, W) at image size, from K-means over the code of each latent position.

    Each position's label covers its ``stride``×``stride`` block (nearest upsampling, cropped to
    the image), so region edges fall on the 16-px grid. uint8 when ``k`` <= 256 (the label image
    a PNG holds; small for large images), else int32. See ``cluster_grid`` for the options.
    """
    grid = cluster_grid(code_features(codes), k, position_weight=position_weight, smooth=smooth, seed=seed)
    return upsample(grid, codes.stride, codes.image_size).astype(np.uint8 if k <= 256 else np.int32)


def upsample(grid: np.ndarray, stride: int, size: tuple[int, int]) -> np.ndarray:
    """Grid labels (h, w) -> (H, W): each position's label over its stride×stride block."""
    height, width = size
    rows = np.arange(height) // stride
    cols = np.arange(width) // stride
    return grid[rows[:, None], cols[None, :]]


def majority_filter(labels: np.ndarray) -> np.ndarray:
    """One pass of a 3×3 majority vote: each position takes the most common label among itself
    and its (up to 8) neighbours inside the grid; on a tie it keeps its own label if that is
    among the most common, else the smallest of them."""
    h, w = labels.shape
    k = int(labels.max()) + 1
    padded = np.pad(labels, 1, constant_values=-1)[..., None] == np.arange(k)  # (h+2, w+2, k)
    votes = np.zeros((h, w, k), np.uint8)
    for dy in range(3):
        for dx in range(3):
            votes += padded[dy : dy + h, dx : dx + w]
    own = padded[1:-1, 1:-1]
    return np.argmax(2 * votes + own, axis=-1).astype(labels.dtype)  # ties go to the position's own label


def _check_clusters(k: object, positions: int) -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= positions:
        raise ParameterError(f"k must be a whole number from 1 to the {positions} positions of the grid, got {k!r}")


def _spread(x: np.ndarray) -> float:
    """RMS distance of the rows of ``x`` to their mean (1.0 where they are all equal)."""
    spread = float(np.sqrt(np.mean(np.sum((x - x.mean(axis=0)) ** 2, axis=1))))
    return spread if spread > 0 else 1.0


def _position_columns(h: int, w: int, scale: float) -> np.ndarray:
    rows, cols = np.mgrid[0:h, 0:w]
    longer = max(h, w, 2) - 1
    return (np.stack([rows.ravel(), cols.ravel()], axis=1) * (scale / longer)).astype(np.float32)


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Labels of the rows of ``x`` by scikit-learn's K-means (k-means++, ``N_INIT`` restarts)."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    model = KMeans(n_clusters=k, n_init=N_INIT, random_state=seed)
    fit_on = x
    if len(x) > MAX_FIT_POSITIONS:
        fit_on = x[np.sort(np.random.default_rng(seed).choice(len(x), MAX_FIT_POSITIONS, replace=False))]
    # One thread: on a grid of a few thousand positions K-means' threads only contend (768×512:
    # 42 ms on one thread, 184 ms on two, over a second with the cores busy; bench/results/analysis.md).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # fewer distinct vectors than k (a flat image): K-means says so, and the labels are still right
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(fit_on)
        return model.predict(x).astype(np.int32)


def _in_order_of_appearance(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0, 1, ... in the order they first occur in raster order."""
    seen, first = np.unique(labels, return_index=True)
    order = seen[np.argsort(first)]
    renumber = np.zeros(int(labels.max()) + 1, np.int32)
    renumber[order] = np.arange(len(order), dtype=np.int32)
    return renumber[labels]
