"""Coding and indexing a corpus of images on a Dask cluster (the ``cluster`` extra).

    >>> from distributed import Client
    >>> from sccodec.distributed import CorpusJob, local_cluster, run_corpus
    >>> with local_cluster(2) as cluster, Client(cluster) as client:  # or Client("tcp://host:8786")
    ...     report = run_corpus(CorpusJob("encode", "photos", "scv", quality=6), client)
    >>> report.done, report.skipped, report.failed  # failed: [(path, one-line reason), ...]

Importing this package imports no Dask: ``run_corpus`` and ``local_cluster`` import it when they
run. ``sccodec cluster`` is the command line; docs/corpus.md explains the design and its numbers.
"""
from sccodec.distributed.corpus import CorpusJob, CorpusReport, FileResult, load_models, local_cluster, run_corpus

__all__ = ["CorpusJob", "CorpusReport", "FileResult", "load_models", "local_cluster", "run_corpus"]
