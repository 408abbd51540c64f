"""Compressed-domain analysis of .scv files: segmentation, descriptors and search from the sparse codes.

    >>> from sccodec.analysis import read_codes, segment, describe, Index
    >>> codes = read_codes("photo.scv")          # entropy decoding only: no network, no pixels
    >>> labels = segment(codes, k=4)             # (H, W) region labels from K-means over the codes
    >>> index = Index.build(["a.scv", "b.scv"])  # descriptors pooled from the codes
    >>> index.query(codes, k=5)                  # [Match(name, distance), ...], nearest first

Importing this package imports neither scikit-learn nor any network runtime: K-means and the
nearest-neighbour search import scikit-learn (the ``analysis`` extra) when they run.
docs/analysis.md explains the codes and the choices made here.
"""
from sccodec.analysis.describe import describe
from sccodec.analysis.index import Index, Match
from sccodec.analysis.segment import cluster_grid, code_features, segment
from sccodec.codes import Codes, SparseCodes, read_codes

__all__ = ["Codes", "Index", "Match", "SparseCodes", "cluster_grid", "code_features", "describe", "read_codes",
           "segment"]
