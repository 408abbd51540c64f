"""Companion files fitted for a model's weights (block classes, pair weights): written
atomically, and recorded in the model's sidecar when they are the model's own.

    data ─atomic write─▶ target
         └─ target is the model's own companion and NAME.json exists ─▶ NAME.json[key] = {file, hash, how}
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sccodec import atomic


def write_companion(target: Path, data: bytes, own: Path, weights: Path, key: str, how: dict) -> None:
    """Write ``data`` to ``target``; if ``target`` is ``own`` (the path the model reads the
    companion from) and the weights at ``weights`` have a sidecar, record under ``key`` the file
    name, its hash (first 8 bytes of SHA-256, as headers name it) and ``how`` it was fitted."""
    atomic.write_bytes(target, data)
    sidecar = weights.with_suffix(".json")
    if target == own and sidecar.is_file():  # the model's record says how
        record = json.loads(sidecar.read_text()) | {key: {
            "file": target.name, "hash": hashlib.sha256(data).digest()[:8].hex(), **how}}
        atomic.write_text(sidecar, json.dumps(record, indent=2) + "\n")
