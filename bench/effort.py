"""Encoder effort: bits at equal PSNR and encode time of each effort level, and of the rounding
rules tried for a higher one.

    python bench/effort.py [--images 4] [--skip 4] [--model scvae-gdn]

Held-out training photos (``split_holdout``, 512×768 crops, after the ``--skip`` first ones, which
``bench/curvature.py`` measures on; never Kodak). Rules, each at every quality level:

- efforts 1 to 4 (``sccodec.levels.EFFORTS``): the fixed dead zone; rate-aware zeroing of ±1s;
  that refined against the synthesis (``sccodec.refine``) on the schedules of efforts 3 and 4.
- other refinement schedules (passes, and a fresh gradient every how many), among them 0.9.0's
  efforts 3 and 4, which measured a gradient before every pass.
- rate-aware zeroing with 4 context passes instead of 2.
- rate-distortion optimised rounding (``rd_quantize`` below): a rounded value v steps towards zero
  when ``lagrangian`` × the bits it saves (static tables, contexts of the previous pass) exceeds
  the distortion it adds, modelled in code space as ``energy · (2·(|s| − |v|) + 1)`` with each
  atom's image-space energy per step (the diagonal of the model's curvature) or one energy per level
  (their median), and the Lagrangian a multiple of the slope the model was trained at,
  3 / (λ_q·255²) (its loss is bits + λ_q·255²·MSE over 3 channels).

Writes bench/results/effort.json: per rule, bpp and PSNR per level, the change in bits at equal
PSNR against effort 2 per level, BD-rate against effort 2, and median encode time per photo and
level (the model loaded).
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
from dead_zone import coder_fields, curve
from speed import cpu_model

import sccodec.api
from sccodec import rdo
from sccodec.api import Codec
from sccodec.bench.bdrate import bd_rate
from sccodec.coder import ContextCoder
from sccodec.entropy import SymbolTables
from sccodec.refine import SCHEDULES, Schedule
from sccodec.train.data import list_images, load_rgb, split_holdout

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "train"


def rd_quantize(s: np.ndarray, tables: SymbolTables, quality_index: int, energy: np.ndarray, lagrangian: float,
                zeroing_only: bool, passes: int = 2) -> np.ndarray:
    """Rounded values step one towards zero where ``lagrangian`` × the bits saved exceed the
    modelled distortion added (``zeroing_only``: only ±1s may move)."""
    r = tables.value_range
    rounded = np.rint(s).astype(np.int32)
    magnitude = np.abs(rounded)
    candidates = (magnitude >= 1) & (magnitude < (2 if zeroing_only else r))
    lowered = (rounded - np.sign(rounded))[candidates]
    added = np.broadcast_to(energy[:, None, None], s.shape)[candidates] * (2 * (np.abs(s[candidates])
                                                                                 - magnitude[candidates]) + 1)
    symbols = rounded
    for _ in range(passes):
        now, after = rdo.value_bits(symbols, candidates, tables, quality_index, (rounded[candidates], lowered))
        move = np.zeros_like(candidates)
        move[candidates] = added < lagrangian * (now - after)
        symbols = np.where(move, rounded - np.sign(rounded), rounded).astype(np.int32)
    return symbols



@dataclass(frozen=True)
class RateAwarePasses(ContextCoder):
    """Effort 2's rule with more context passes."""

    passes: int = 4

    def quantize(self, s: np.ndarray, quality_index: int, effort: int = 2) -> np.ndarray:
        return rdo.quantize(s, self.tables, quality_index, self.bits_weight(quality_index), self.passes)


@dataclass(frozen=True)
class RDRounding(ContextCoder):
    """Rate-distortion optimised rounding with a code-space distortion model."""

    energy: np.ndarray | None = None  # (Q, K)
    slopes: tuple[float, ...] = ()
    multiple: float = 0.25
    per_atom: bool = True
    zeroing_only: bool = False

    def quantize(self, s: np.ndarray, quality_index: int, effort: int = 2) -> np.ndarray:
        energy = self.energy[quality_index]
        if not self.per_atom:
            energy = np.full_like(energy, np.median(energy))
        return rd_quantize(s, self.tables, quality_index, energy, self.multiple * self.slopes[quality_index],
                           self.zeroing_only)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--skip", type=int, default=4, help="held-out photos the curvature was measured on")
    ap.add_argument("--model", default="scvae-gdn")
    ap.add_argument("--multiple", type=float, default=0.25, help="of the trained slope, for the RD rules")
    args = ap.parse_args()
    _, held = split_holdout(list_images(args.data))
    photos = [load_rgb(p)[:, :512, :768].permute(1, 2, 0).numpy() for p in held[args.skip : args.skip + args.images]]
    codec = Codec(args.model, device="cpu")
    own = codec.coder
    curvature, tensors = codec.model_file.curvature, codec.model_file.tensors
    energy = np.stack([curvature.at_level(tensors, q).energy for q in range(len(codec.qualities))]).astype(np.float32)
    slopes = tuple(3 / (np.array(codec.model_file.config.lambdas) * 255.0**2))
    rd = {**coder_fields(own), "energy": energy,
          "slopes": slopes,
          "multiple": args.multiple}
    rules = {  # name -> (coder, effort, the refinement schedule that effort 3 takes instead of its own)
        "effort 2 (default)": (own, 2, None),
        "effort 1": (own, 1, None),
        "effort 3": (own, 3, None),
        "effort 4": (own, 4, None),
        **{f"refinement: {s.passes} passes, a gradient every {s.gradient_every}": (own, 3, s) for s in (
            Schedule(2, 1), Schedule(6, 1), Schedule(2, 2), Schedule(6, 3), Schedule(8, 2))},
        "rate-aware zeroing, 4 passes": (RateAwarePasses(**coder_fields(own)), 2, None),
        "RD rounding, atom energies, zeroing only": (RDRounding(**rd, zeroing_only=True), 2, None),
        "RD rounding, atom energies, every magnitude": (RDRounding(**rd), 2, None),
        "RD rounding, one energy per level, every magnitude": (RDRounding(**rd, per_atom=False), 2, None),
    }
    out = {"model": args.model, "cpu": cpu_model(), "load": os.getloadavg()[0], "images": [p.name for p in
           held[args.skip : args.skip + args.images]], "rd_multiple": args.multiple, "rules": {}}
    anchor = None
    for name, (coder, effort, schedule) in rules.items():
        seconds: list[float] = []
        with mock.patch.dict(sccodec.api.SCHEDULES, {effort: schedule or SCHEDULES[effort]} if effort in SCHEDULES else {}):
            bpp, psnr = curve(codec, photos, coder, effort, seconds)
        anchor = anchor or (bpp, psnr)
        change = 100 * (bpp / np.exp(np.interp(psnr, anchor[1], np.log(anchor[0]))) - 1)
        bd = bd_rate(*anchor, bpp, psnr).percent
        ms = 1000 * float(np.median(seconds))
        out["rules"][name] = {"bpp": bpp.tolist(), "psnr": psnr.tolist(), "change_at_equal_psnr": change.tolist(),
                              "bd_rate_vs_effort_2": bd, "encode_ms_median": ms}
        print(f"{name}: BD {bd:+.2f}% vs effort 2, encode {ms:.0f} ms; per level "
              + " ".join(f"{c:+.1f}" for c in change), flush=True)
        (HERE / "results" / "effort.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
