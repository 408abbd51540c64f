"""The knobs a user turns, known without loading anything: quality levels and encoder efforts.

The command line builds its options and help from these, so ``sccodec --help`` imports neither
numpy nor a model file. ``QUALITIES`` are the default model's levels (higher = better); a test
holds them equal to the levels its weights file declares.
"""
from __future__ import annotations

QUALITIES: tuple[int, ...] = tuple(range(1, 11))
#: The level used when none is asked for and the model's sidecar names none (the shipped models' own).
DEFAULT_QUALITY = 6
#: Encoder effort levels, fastest first: how hard the encoder works for fewer bits at the same
#: quality (1–2: ``quantize``; 3–4 also ``sccodec.refine``). Files decode the same whatever the
#: effort (docs/design.md, "Encoder effort").
EFFORTS: tuple[int, ...] = (1, 2, 3, 4)
DEFAULT_EFFORT = 2
