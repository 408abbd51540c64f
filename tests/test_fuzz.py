"""A few hundred mutated files (the full 100k-case run is bench/fuzz.py): only SCVErrors."""
from __future__ import annotations

import sccodec
from sccodec.bench.fuzz import repair_crcs, run_fuzz


def test_mutated_files_fail_only_with_scverror():
    codec = sccodec.Codec(device="cpu", max_pixels=1 << 16)
    report = run_fuzz(codec, cases=300, seed=1)
    assert report.cases == 300
    assert report.other_exceptions == []
    assert report.hangs == 0
    assert report.scv_errors + report.decoded == 300


def test_repair_crcs_lets_a_valid_file_through_unchanged(small_scv):
    assert repair_crcs(small_scv) == small_scv
