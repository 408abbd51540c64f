"""One exception family for every failure a user can cause (bad files, bad images, limits)."""
from __future__ import annotations


class SCVError(Exception):
    """Base class: catch this to handle any sccodec encoding or decoding failure."""

    exit_code = 1


class FormatError(SCVError):
    """Not an .scv file, or one written by a newer/unknown format version."""


class CorruptFileError(SCVError):
    """Truncated data, CRC mismatch, or a field that cannot be right."""


class ModelMismatchError(SCVError):
    """The file needs a model (name + weights hash) that is not installed."""


class LimitError(SCVError):
    """The image is larger than the configured pixel limit (decompression-bomb guard)."""


class ImageInputError(SCVError):
    """An input image that cannot be read or has a mode sccodec does not code."""


class ParameterError(SCVError, ValueError):
    """An argument out of range (quality level, tile size, device, ...)."""

    exit_code = 2  # a usage error on the command line
