"""Pillow plugin: ``Image.open("x.scv")`` decodes and ``img.save("y.scv", quality=5)`` encodes
(or ``target_bpp=``, ``target_psnr=`` instead of ``quality``; ``effort=`` as ``sccodec.encode``).

Registered on ``import sccodec`` the way Pillow's own format plugins register themselves
(open/save/extension/MIME). Decoding is deferred to ``load()``, so ``Image.open`` only
parses the header (cheap: size and mode are known without running the model).
"""
from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

from sccodec.bitstream import ICC_CHUNK, MAGIC, parse
from sccodec.errors import SCVError

FORMAT = "SCV"
MIME = "image/x-scv"


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


class SCVImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "sccodec learned image (.scv)"

    def _open(self) -> None:
        from sccodec.image_io import validate_icc  # deferred: registering the plugin imports no numpy

        try:
            container = parse(self.fp.read())  # checks every chunk's CRC; decodes nothing
        except SCVError as e:
            raise SyntaxError(f"not a valid .scv file: {e}") from None  # Pillow: "cannot identify image file"
        header = container.header
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.info["quality"] = header.quality
        self.info["model"] = header.model
        profile = validate_icc(container.ancillary.get(ICC_CHUNK))  # broken or too large: dropped
        if profile:
            self.info["icc_profile"] = profile
        self._scv_container = container  # decoded in load(), without parsing again
        self.tile = []

    def load(self):  # type: ignore[override]
        if self._scv_container is not None:
            from sccodec.api import decode

            try:
                decoded = decode(self._scv_container)
            except SCVError as e:  # e.g. the model it needs is not installed
                raise OSError(f"cannot decode .scv image: {e}") from None
            self.load_prepare()
            self.im.paste(decoded.im, (0, 0, *decoded.size))
            self._scv_container = None
            # Every byte was read in _open; like Pillow's own formats, close a file we opened.
            if self._exclusive_fp and self._close_exclusive_fp_after_loading and self.fp is not None:
                self.fp.close()
            self.fp = None
        return super().load()


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from sccodec.api import encode
    from sccodec.levels import DEFAULT_EFFORT

    options = im.encoderinfo
    fp.write(encode(im, options.get("quality"), target_bpp=options.get("target_bpp"),
                    target_psnr=options.get("target_psnr"), effort=options.get("effort", DEFAULT_EFFORT)))


def register() -> None:
    Image.register_open(FORMAT, SCVImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".scv")
    Image.register_mime(FORMAT, MIME)
