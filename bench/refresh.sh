#!/usr/bin/env bash
# Re-measure every committed result that depends on the shipped weights (run after an export).
#   bash bench/refresh.sh [KODAK_DIR]        # about 65 minutes on the 2-core machine (efforts 3-4: 48)
set -euo pipefail
KODAK=${1:-../shared/data/kodak}
cd "$(dirname "$0")/.."
REFS=()
for f in bench/results/peers/{webp,avif,jpegxl,heic,jpeg2000,jpeg444}.json \
         ../shared/reference/compressai_kodak/compressai-bmshj2018-factorized_mse_cpu.json; do
    REFS+=(--reference "$f")
done
sccodec bench --images "$KODAK" --codecs sccodec,jpeg --out bench/results/kodak "${REFS[@]}"
python bench/record_rd.py bench/results/kodak
python bench/curvature.py --write               # the synthesis' curvature (efforts 3 and 4)
sccodec bench --images "$KODAK" --codecs sccodec-effort3,sccodec-effort4,jpeg --out bench/results/kodak-effort \
    --reference bench/results/kodak/sccodec.json "${REFS[@]}"
python bench/effort.py
sccodec bench --images "$KODAK" --codecs sccodec@scvae-base,jpeg --out bench/results/kodak-scvae-base
python bench/record_rd.py bench/results/kodak-scvae-base
python bench/head_to_head.py
python bench/speed.py
python bench/memory.py --kodak "$KODAK"
python bench/determinism.py
python bench/determinism.py --effort 4
python bench/target_bpp.py --targets 0.15,0.25,0.5
python bench/adaptation.py --images "$KODAK"
python bench/dead_zone.py --images 4 --thresholds 0.5,0.58 --bits-weights 0.035
python bench/formats.py --versions 5,6          # block classes (format 6) against format 5
python bench/formats.py --versions 6,7          # pair weights (format 7) against format 6
python bench/fuzz.py --cases 100000
