"""Pillow plugin: ``Image.open("x.scv")`` decodes and ``img.save("y.scv", quality=5)`` encodes
(or ``target_bpp=``, ``target_psnr=`` instead of ``quality``).

Registered on ``import sccodec`` the way Pillow's own format plugins register themselves
(open/save/extension/MIME). Decoding is deferred to ``load()``, so ``Image.open`` only
parses the header (cheap: size and mode are known without running the model).
"""
from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

from sccodec.bitstream import MAGIC, parse_header

FORMAT = "SCV"
MIME = "image/x-scv"


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


class SCVImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "sccodec learned image (.scv)"

    def _open(self) -> None:
        self._scv_data = self.fp.read()
        header, _ = parse_header(self._scv_data)
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.info["quality"] = header.quality
        self.info["model"] = header.model
        self.tile = []

    def load(self):  # type: ignore[override]
        if self._scv_data is not None:
            from sccodec.api import decode

            decoded = decode(self._scv_data)
            self.load_prepare()
            self.im.paste(decoded.im, (0, 0, *decoded.size))
            self._scv_data = None
        return super().load()


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from sccodec.api import encode

    options = im.encoderinfo
    fp.write(encode(im, options.get("quality"), target_bpp=options.get("target_bpp"),
                    target_psnr=options.get("target_psnr")))


def register() -> None:
    Image.register_open(FORMAT, SCVImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".scv")
    Image.register_mime(FORMAT, MIME)
