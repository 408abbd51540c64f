"""sccodec: a learned image codec (SC-VAE sparse codes + ANS) with a small, explicit API.

    >>> import sccodec
    >>> data = sccodec.encode(image, quality=5)   # PIL image / uint8 array / tensor / path
    >>> image = sccodec.decode(data)               # PIL image
    >>> image = sccodec.open("photo.scv")          # or PIL.Image.open("photo.scv") (plugin)
"""
from sccodec.api import DEFAULT_QUALITY, QUALITIES, Codec, Encoded, decode, encode, open
from sccodec.errors import SCVError
from sccodec.pillow_plugin import register as _register_pillow_plugin

_register_pillow_plugin()

__version__ = "0.6.0"
__all__ = ["Codec", "DEFAULT_QUALITY", "Encoded", "QUALITIES", "SCVError", "decode", "encode", "open", "__version__"]
