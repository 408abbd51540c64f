"""An image descriptor pooled from its sparse code: the mean and spread of each latent channel.

    Codes ─dictionary · values × inverse gain (Codes.latent: linear, no network)─▶ ŷ (M, h, w)
          ─per channel over all positions: mean (M), standard deviation (M)─▶ unit length (D = 2M)

Each position's code is a few atoms of the dictionary; the dictionary maps it back to the latent
the synthesis network reads, where the analysis network has put what the image looks like (its
colours, textures, edges) into M = 160 channels. The first two moments of each channel over the
image summarise that content, the way colour and texture statistics describe a photo, and they
do not depend on the image's size or on where things are in it, so a crop or a flip of an image
stays near it. They do not know layout.

Why pool the latent rather than the atoms themselves (the atom-usage histogram, a bag of visual
words): the quality levels code the same latent with different atoms. Level q may use only the
first ⌈K·q/Q⌉ atoms (the nested ladder, ``sccodec.model.scvae.SCVAE.atom_mask``) and a low level
codes with fewer, larger coefficients, so atom histograms of one photo at levels 1 and 8 are far
apart: on the held-out training photos (docs/analysis.md) a file at level 1 or 3 found its own
photo at level 8 among 11 for 1 of 11 queries with the histogram, and for all 11 with these moments.
"""
from __future__ import annotations

import numpy as np

from sccodec.codes import Codes

#: Latent positions projected through the dictionary at a time: bounds the working memory
#: (160 channels × 65,536 positions × 4 bytes = 40 MB) whatever the image size.
CHUNK_POSITIONS = 1 << 16


def descriptor_size(latent_channels: int) -> int:
    """D of the descriptor of a model with ``latent_channels`` (M) latent channels."""
    return 2 * latent_channels


def describe(codes: Codes) -> np.ndarray:
    """(2M,) float32, unit length: [mean, standard deviation] of each latent channel of ŷ.

    ŷ is the latent the decoder rebuilds from the code (``Codes.latent``), on the same scale at
    every quality level. The two halves are concatenated as they are, then scaled to unit
    length, so the Euclidean distance between two descriptors is a function of their cosine
    similarity (0 for the same statistics, at most 2) and an image's overall contrast, which
    scales both halves alike, does not count. A file whose code is all zero gives the zero vector.
    """
    dictionary, gain = codes.dictionary, codes.inverse_gain
    k = codes.values.shape[0]
    values = codes.values.reshape(k, -1)
    positions = values.shape[1]
    total = np.zeros(len(gain), np.float64)
    squares = np.zeros(len(gain), np.float64)
    for start in range(0, positions, CHUNK_POSITIONS):
        latent = (dictionary @ values[:, start : start + CHUNK_POSITIONS]) * gain[:, None]
        total += latent.sum(axis=1, dtype=np.float64)
        squares += np.square(latent, dtype=np.float64).sum(axis=1)
    mean = total / positions
    std = np.sqrt(np.maximum(squares / positions - mean**2, 0.0))
    descriptor = np.concatenate([mean, std])
    norm = np.linalg.norm(descriptor)
    return (descriptor / norm if norm > 0 else descriptor).astype(np.float32)
