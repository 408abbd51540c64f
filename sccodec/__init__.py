"""sccodec: a learned image codec (SC-VAE sparse codes + ANS) with a small, explicit API.

    >>> import sccodec
    >>> data = sccodec.encode(image, quality=5)   # PIL image / uint8 array / tensor / path
    >>> image = sccodec.decode(data)               # PIL image
    >>> image = sccodec.open("photo.scv")          # or PIL.Image.open("photo.scv") (plugin)
    >>> sccodec.reuse_freed_memory()               # optional, glibc: fewer page faults, faster CPU coding
"""
from sccodec.allocator import enable_huge_pages, reuse_freed_memory
from sccodec.api import DEFAULT_QUALITY, QUALITIES, Codec, Encoded, decode, encode, open
from sccodec.errors import SCVError
from sccodec.pillow_plugin import register as _register_pillow_plugin

_register_pillow_plugin()

__version__ = "0.5.10"
__all__ = ["Codec", "DEFAULT_QUALITY", "Encoded", "QUALITIES", "SCVError", "decode", "enable_huge_pages", "encode",
           "open", "reuse_freed_memory", "__version__"]
