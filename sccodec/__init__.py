"""sccodec: a learned image codec (SC-VAE sparse codes + ANS) with a small, explicit API.

    >>> import sccodec
    >>> data = sccodec.encode(image, quality=5)   # PIL image / uint8 array / tensor / path
    >>> image = sccodec.decode(data)               # PIL image
    >>> image = sccodec.open("photo.scv")          # or PIL.Image.open("photo.scv") (plugin)
    >>> data = sccodec.encode(image, effort=4)     # slower, fewer bits (one of sccodec.EFFORTS)
    >>> codes = sccodec.read_codes(data)            # the sparse code itself, parsing only
"""
from sccodec.api import DEFAULT_QUALITY, QUALITIES, Codec, Encoded, decode, encode, open
from sccodec.codes import read_codes
from sccodec.coder import DEFAULT_EFFORT, EFFORTS
from sccodec.errors import SCVError
from sccodec.pillow_plugin import register as _register_pillow_plugin

_register_pillow_plugin()

__version__ = "0.12.1"
__all__ = ["Codec", "DEFAULT_EFFORT", "DEFAULT_QUALITY", "EFFORTS", "Encoded", "QUALITIES", "SCVError", "decode",
           "encode", "open", "read_codes", "__version__"]
