"""sccodec: a learned image codec (SC-VAE sparse codes + ANS) with a small, explicit API.

    >>> import sccodec
    >>> data = sccodec.encode(image, quality=5)   # PIL image / uint8 array / tensor / path
    >>> image = sccodec.decode(data)               # PIL image
    >>> image = sccodec.open("photo.scv")          # or PIL.Image.open("photo.scv") (plugin)
    >>> data = sccodec.encode(image, effort=4)     # slower, fewer bits (one of sccodec.EFFORTS)
    >>> codes = sccodec.read_codes(data)            # the sparse code itself, parsing only

Importing the package registers the Pillow plugin and defines the constants; the coding API
(numpy, the coder, the model files) loads on first use of one of its names, so a command that
never codes (``sccodec --help``) never pays for it.
"""
from __future__ import annotations

import importlib
import importlib.util

from sccodec.errors import SCVError
from sccodec.levels import DEFAULT_EFFORT, DEFAULT_QUALITY, EFFORTS, QUALITIES
from sccodec.pillow_plugin import register as _register_pillow_plugin

_register_pillow_plugin()

__version__ = "0.12.2"
#: the API's names, each loaded from its module on first use
_LAZY = {"Codec": "sccodec.api", "Encoded": "sccodec.api", "decode": "sccodec.api", "encode": "sccodec.api",
         "open": "sccodec.api", "read_codes": "sccodec.codes"}
__all__ = ["Codec", "DEFAULT_EFFORT", "DEFAULT_QUALITY", "EFFORTS", "Encoded", "QUALITIES", "SCVError", "decode",
           "encode", "open", "read_codes", "__version__"]


def __getattr__(name: str) -> object:
    """An API name (imported from its module), or a submodule (``sccodec.api``, as an eager
    package would have it)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name.isidentifier() and not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        return importlib.import_module(f"{__name__}.{name}")  # as `import sccodec.NAME` would, errors included
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
