"""Registry of the codecs the benchmark can run: sccodec itself and the peer codecs.

Peer settings and default sweeps are those of the project's benchmark definition
(docs/design.md), so BD-rates measured here reproduce the reference ones. Every option not
listed in an adapter's ``settings`` is the library default.
"""

from __future__ import annotations

import functools
import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image, features

Quality = int | float
#: The single "quality" a lossless codec is run at.
LOSSLESS = None


class CodecAdapter(ABC):
    """One codec as the benchmark sees it: bytes out, RGB image back, and a quality sweep."""

    name: str
    label: str
    #: What the sweep value means ("quality", "distance", ...); "" for a lossless codec.
    param: str

    @property
    def lossless(self) -> bool:
        return not self.param

    @abstractmethod
    def encode(self, image: Image.Image, quality: Quality | None) -> bytes: ...

    @abstractmethod
    def decode(self, data: bytes) -> Image.Image: ...

    @abstractmethod
    def sweep(self) -> tuple[Quality | None, ...]:
        """Default sweep values, worst quality first."""

    @abstractmethod
    def unavailable(self) -> str | None:
        """Why the codec cannot run here (missing library), or None."""

    @abstractmethod
    def check_quality(self, quality: Quality) -> None:
        """Raise ValueError for a sweep value the codec does not accept."""

    def settings(self) -> dict[str, Any]:
        """Fixed encoder options, recorded next to the results."""
        return {}

    def version(self) -> str:
        return ""


def _pil_decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # Pillow decodes lazily; force it inside the timed section
    return image if image.mode == "RGB" else image.convert("RGB")


def _lossy(quality: Quality | None) -> Quality:
    if quality is None:
        raise ValueError("a lossy codec needs a sweep value")
    return quality


def _check_range(adapter: CodecAdapter, quality: Quality, lo: float, hi: float) -> None:
    if not lo <= quality <= hi:
        raise ValueError(f"{adapter.param} {quality:g} is out of range for {adapter.name} ({lo:g}..{hi:g})")


@dataclass(frozen=True)
class PillowCodec(CodecAdapter):
    """A codec reached through ``Image.save(format=...)``."""

    name: str
    label: str
    format: str
    feature: str  # PIL.features name telling whether Pillow was built with the codec
    param: str = "quality"
    values: tuple[Quality, ...] = ()
    bounds: tuple[float, float] = (0, 100)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    #: Turns a sweep value into save() keywords; the default passes it as ``quality``.
    quality_kwargs: Callable[[Quality], dict[str, Any]] = lambda q: {"quality": int(q)}

    def encode(self, image: Image.Image, quality: Quality | None) -> bytes:
        kwargs = dict(self.fixed)
        if quality is not None:
            kwargs.update(self.quality_kwargs(quality))
        buffer = io.BytesIO()
        image.save(buffer, format=self.format, **kwargs)
        return buffer.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        return _pil_decode(data)

    def sweep(self) -> tuple[Quality | None, ...]:
        return self.values if self.param else (LOSSLESS,)

    def unavailable(self) -> str | None:
        return None if features.check(self.feature) else f"Pillow was built without {self.feature}"

    def check_quality(self, quality: Quality) -> None:
        _check_range(self, quality, *self.bounds)

    def settings(self) -> dict[str, Any]:
        return {"library": "Pillow", **self.fixed}

    def version(self) -> str:
        import PIL

        # Pillow reports libjpeg's API level (6.2) for "jpg"; the turbo version says more
        library = "libjpeg_turbo" if self.feature == "jpg" and features.check("libjpeg_turbo") else self.feature
        return f"Pillow {PIL.__version__}, {library} {features.version(library)}"


@dataclass(frozen=True)
class HeicCodec(CodecAdapter):
    """HEIC (libheif + x265) through pillow-heif's own API, leaving Pillow's plugins alone."""

    name: str = "heic"
    label: str = "HEIC (x265)"
    chroma: int = 420
    values: tuple[Quality, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    param: str = "quality"

    def encode(self, image: Image.Image, quality: Quality | None) -> bytes:
        import pillow_heif

        buffer = io.BytesIO()
        pillow_heif.from_pillow(image).save(buffer, quality=int(_lossy(quality)), chroma=self.chroma)
        return buffer.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        import pillow_heif

        image = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True).to_pillow()
        return image if image.mode == "RGB" else image.convert("RGB")

    def sweep(self) -> tuple[Quality | None, ...]:
        return self.values

    def unavailable(self) -> str | None:
        try:
            import pillow_heif  # noqa: F401
        except ImportError:
            return "pillow-heif is not installed"
        return None

    def check_quality(self, quality: Quality) -> None:
        _check_range(self, quality, 0, 100)

    def settings(self) -> dict[str, Any]:
        return {"library": "pillow-heif", "chroma": self.chroma}

    def version(self) -> str:
        import pillow_heif

        return f"pillow-heif {pillow_heif.__version__}, libheif {pillow_heif.libheif_version()}"


@dataclass(frozen=True)
class JpegXLCodec(CodecAdapter):
    """JPEG XL (libjxl) through imagecodecs, swept by Butteraugli distance (lower = better)."""

    name: str = "jpegxl"
    label: str = "JPEG XL (effort 7)"
    effort: int = 7
    values: tuple[Quality, ...] = (12.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.7, 0.5)
    param: str = "distance"

    def encode(self, image: Image.Image, quality: Quality | None) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(np.asarray(image), distance=float(_lossy(quality)), effort=self.effort))

    def decode(self, data: bytes) -> Image.Image:
        import imagecodecs

        return Image.fromarray(imagecodecs.jpegxl_decode(data)).convert("RGB")

    def sweep(self) -> tuple[Quality | None, ...]:
        return self.values

    def unavailable(self) -> str | None:
        try:
            import imagecodecs
        except ImportError:
            return "imagecodecs is not installed"
        return None if imagecodecs.JPEGXL.available else "imagecodecs was built without JPEG XL"

    def check_quality(self, quality: Quality) -> None:
        _check_range(self, quality, 0, 25)

    def settings(self) -> dict[str, Any]:
        return {"library": "imagecodecs", "effort": self.effort}

    def version(self) -> str:
        import imagecodecs

        return f"imagecodecs {imagecodecs.__version__}, {imagecodecs.jpegxl_version()}"


class SccodecAdapter(CodecAdapter):
    """This project's codec. ``sccodec.api`` is imported on first use, and the model is
    loaded once per adapter, so the rest of the benchmark works without it."""

    name = "sccodec"
    label = "sccodec"
    param = "quality"

    def __init__(self, device: str = "cpu", model: str | None = None, effort: int | None = None) -> None:
        """``model``: a shipped model other than the default, run as codec ``sccodec@MODEL``;
        ``effort``: an encoder effort other than the default, run as ``sccodec-effortN``."""
        self._device = device
        self._model = model
        self._effort = effort
        self._codec: Any = None
        if model is not None:
            self.name, self.label = f"sccodec{MODEL_SEPARATOR}{model}", f"sccodec ({model})"
        elif effort is not None:
            self.name, self.label = f"{EFFORT_PREFIX}{effort}", f"sccodec (effort {effort})"

    def _loaded(self) -> Any:
        if self._codec is None:
            from sccodec.api import Codec

            self._codec = Codec(device=self._device) if self._model is None else Codec(self._model, self._device)
        return self._codec

    def encode(self, image: Image.Image, quality: Quality | None) -> bytes:
        if self._effort is None:
            return self._loaded().encode(image, int(_lossy(quality)))
        return self._loaded().encode(image, int(_lossy(quality)), effort=self._effort)

    def decode(self, data: bytes) -> Image.Image:
        image = self._loaded().decode(data)
        return image if image.mode == "RGB" else image.convert("RGB")

    def sweep(self) -> tuple[Quality | None, ...]:
        import sccodec

        if self._model is None:
            return tuple(sorted(sccodec.QUALITIES))
        from sccodec.weights import shipped_config

        return tuple(range(1, shipped_config(self._model).qualities + 1))

    def unavailable(self) -> str | None:
        try:
            from sccodec import QUALITIES  # noqa: F401 - probing the interface
            from sccodec.api import Codec  # noqa: F401
            from sccodec.weights import available_models
        except Exception as exc:  # any failure to import means "not ready", not a crash
            return f"sccodec.api is not usable yet ({type(exc).__name__}: {exc})"
        if self._model is not None and self._model not in available_models():
            return f"{self.name}: no shipped model {self._model!r} (shipped: {', '.join(available_models())})"
        if self._effort is not None:
            from sccodec.errors import ParameterError

            try:
                self._loaded().check_effort(self._effort)  # the codec knows what an effort needs
            except ParameterError as e:
                return f"{self.name}: {e}"
        return None

    def check_quality(self, quality: Quality) -> None:
        if quality not in self.sweep():
            raise ValueError(f"quality {quality:g} is not one of sccodec.QUALITIES {self.sweep()}")

    def settings(self) -> dict[str, Any]:
        return {"device": self._device} if self._effort is None else {"device": self._device, "effort": self._effort}

    def version(self) -> str:
        import sccodec

        model = getattr(self._loaded(), "model_file", None)  # absent on test stand-ins
        weights = f", model {model.name} (weights {model.digest.hex()})" if model else ""
        return f"sccodec {sccodec.__version__}{weights}"


#: ``sccodec@MODEL`` runs another shipped model than the default (compare two models in one run).
MODEL_SEPARATOR = "@"
#: ``sccodec-effortN`` runs the default model at encoder effort N instead of the default effort.
EFFORT_PREFIX = "sccodec-effort"
#: The efforts other than the default (sccodec.EFFORTS, which this module does not import).
OTHER_EFFORTS = (1, 3, 4)

_JPEG_SWEEP = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
_QUALITY_10_TO_90 = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def _jpeg(name: str, label: str, subsampling: str) -> PillowCodec:
    return PillowCodec(
        name, label, "JPEG", "jpg", values=_JPEG_SWEEP, bounds=(1, 100), fixed={"subsampling": subsampling}
    )


def _avif(name: str, label: str, subsampling: str) -> PillowCodec:
    return PillowCodec(
        name, label, "AVIF", "avif", values=_QUALITY_10_TO_90, fixed={"speed": 6, "subsampling": subsampling}
    )


_FACTORIES: Mapping[str, Callable[[], CodecAdapter]] = MappingProxyType(
    {
        "sccodec": SccodecAdapter,
        **{f"{EFFORT_PREFIX}{e}": functools.partial(SccodecAdapter, effort=e) for e in OTHER_EFFORTS},
        "jpeg": lambda: _jpeg("jpeg", "JPEG (4:2:0)", "4:2:0"),
        "png": lambda: PillowCodec("png", "PNG (lossless)", "PNG", "zlib", param="", fixed={"compress_level": 6}),
        "webp": lambda: PillowCodec(
            "webp",
            "WebP (method 6)",
            "WEBP",
            "webp",
            values=(5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
            fixed={"method": 6},
        ),
        "jpeg2000": lambda: PillowCodec(
            "jpeg2000",
            "JPEG 2000 (OpenJPEG)",
            "JPEG2000",
            "jpg_2000",
            param="ratio",
            values=(200, 150, 100, 70, 50, 35, 25, 18, 12, 8),
            bounds=(1, 10000),
            fixed={"quality_mode": "rates", "mct": 1, "irreversible": True},  # 9/7 wavelet, as the reference
            quality_kwargs=lambda q: {"quality_layers": [float(q)]},
        ),
        "avif": lambda: _avif("avif", "AVIF (speed 6)", "4:2:0"),
        "heic": HeicCodec,
        "jpegxl": JpegXLCodec,
        # chroma 4:4:4 variants, as in peers_kodak_measured.json; not run by default
        "jpeg444": lambda: _jpeg("jpeg444", "JPEG (4:4:4)", "4:4:4"),
        "avif444": lambda: _avif("avif444", "AVIF (speed 6, 4:4:4)", "4:4:4"),
        "heic444": lambda: HeicCodec(
            "heic444", "HEIC (x265, 4:4:4)", chroma=444, values=(10, 20, 25, 30, 35, 40, 45, 50, 60, 70)
        ),
    }
)

DEFAULT_CODECS: tuple[str, ...] = ("sccodec", "jpeg", "png", "webp", "jpeg2000", "avif", "heic", "jpegxl")
#: BD-rates are reported against this codec, measured in the same run.
ANCHOR = "jpeg"


def codec_names() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def is_codec_name(name: str) -> bool:
    """A registered codec, or ``sccodec@MODEL`` for a named sccodec model."""
    base, sep, model = name.partition(MODEL_SEPARATOR)
    return name in _FACTORIES or (base == SccodecAdapter.name and bool(sep) and bool(model))


def get_codec(name: str) -> CodecAdapter:
    """A fresh adapter; raises ValueError naming the known codecs for an unknown name."""
    if not is_codec_name(name):
        raise ValueError(f"unknown codec {name!r} (known: {', '.join(_FACTORIES)}, sccodec@MODEL)")
    base, _, model = name.partition(MODEL_SEPARATOR)
    return SccodecAdapter(model=model) if model else _FACTORIES[name]()
