"""Benchmark subsystem (``sccodec bench``): rate-distortion and speed of sccodec and its peers.

Modules: ``peers`` (codec adapters), ``metrics`` (PSNR, MS-SSIM), ``runner`` (the sweep and
per-point averages), ``bdrate`` (Bjontegaard delta rate), ``report`` (table, JSON, CSV, plot),
``cli`` (the click command). Nothing heavy is imported here, so the main CLI stays fast.
"""

from sccodec.bench.bdrate import BDRate, bd_rate

__all__ = ["BDRate", "bd_rate"]
