"""Tests of the benchmark subsystem: BD-rate, metrics, outputs, and `bench` end to end."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure
from PIL import Image

from sccodec import metrics
from sccodec.bench import peers
from sccodec.bench.bdrate import bd_rate
from sccodec.bench.cli import bench
from sccodec.bench.head_to_head import MIN_OVERLAP_DB, compare, head_to_head
from sccodec.bench.report import format_table, load_reference, write_outputs
from sccodec.bench.runner import BenchConfig, BenchResult, Curve, RatePoint, run_bench, select_codecs
from sccodec.weights import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO.parent / "shared" / "reference"
JPEG_POINTS = "jpeg=10,30,50,70,90"

# A JPEG-like curve: PSNR rises with log(bpp), not a polynomial the fit reproduces exactly.
ANCHOR_BPP = np.array([0.2, 0.35, 0.5, 0.8, 1.2, 2.0])
ANCHOR_PSNR = 26 + 4.5 * np.log2(ANCHOR_BPP / 0.2) - 0.3 * np.log2(ANCHOR_BPP / 0.2) ** 2


# ---------------------------------------------------------------- BD-rate


def test_bd_rate_identical_curves_is_zero() -> None:
    result = bd_rate(ANCHOR_BPP, ANCHOR_PSNR, ANCHOR_BPP, ANCHOR_PSNR)
    assert result.percent == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_halved_rate_is_minus_fifty_percent() -> None:
    result = bd_rate(ANCHOR_BPP, ANCHOR_PSNR, ANCHOR_BPP / 2, ANCHOR_PSNR)
    assert result.percent == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(ANCHOR_BPP / 2, ANCHOR_PSNR, ANCHOR_BPP, ANCHOR_PSNR).percent == pytest.approx(100.0)


def test_bd_rate_uses_only_the_overlapping_range() -> None:
    # log(bpp) exactly cubic in PSNR, so any sub-range fits exactly; the test curve spans
    # 30..44 dB against the anchor's 26..38 dB, with half the anchor's rate where they overlap
    def log_bpp(psnr: np.ndarray) -> np.ndarray:
        t = (psnr - 32) / 6
        return -0.2 + 0.9 * t + 0.15 * t**2 + 0.05 * t**3

    anchor_psnr, test_psnr = np.linspace(26, 38, 6), np.linspace(30, 44, 7)
    result = bd_rate(np.exp(log_bpp(anchor_psnr)), anchor_psnr, np.exp(log_bpp(test_psnr)) / 2, test_psnr)
    assert result.percent == pytest.approx(-50.0, abs=1e-9)


def test_bd_rate_without_overlap_is_nan() -> None:
    result = bd_rate(ANCHOR_BPP, ANCHOR_PSNR, ANCHOR_BPP, ANCHOR_PSNR + 20)
    assert math.isnan(result.percent)
    assert str(result) == "no overlap"


@pytest.mark.parametrize("n", [0, 3])
def test_bd_rate_needs_four_points(n: int) -> None:
    result = bd_rate(ANCHOR_BPP, ANCHOR_PSNR, ANCHOR_BPP[:n], ANCHOR_PSNR[:n])
    assert math.isnan(result.percent)
    assert "< 4" in result.reason


def test_bd_rate_ignores_non_finite_points() -> None:
    bpp = np.append(ANCHOR_BPP, 12.0)
    psnr = np.append(ANCHOR_PSNR, math.inf)  # a lossless point cannot be fitted
    assert bd_rate(ANCHOR_BPP, ANCHOR_PSNR, bpp, psnr).percent == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_reproduces_benchmark_md() -> None:
    """The BD-rates BENCHMARK.md publishes, recomputed from the shared reference curves."""
    if not REFERENCE_DIR.exists():
        pytest.skip("shared/reference is not present")
    peer = {c.name: c for c in load_reference(REFERENCE_DIR / "peers_kodak_measured.json")}
    for name, published in (("webp", -37.2), ("jpeg444", 11.5), ("jpeg2000", -47.1)):
        result = bd_rate(*_rd(peer["jpeg"]), *_rd(peer[name]))
        assert result.percent == pytest.approx(published, abs=0.05), name
    # the learned codecs' figures there use CompressAI's own JPEG curve as the anchor
    (jpeg,) = load_reference(REFERENCE_DIR / "compressai_kodak" / "jpeg.json")
    (hyperprior,) = load_reference(REFERENCE_DIR / "compressai_kodak" / "compressai-bmshj2018-hyperprior_mse_cuda.json")
    assert bd_rate(*_rd(jpeg), *_rd(hyperprior)).percent == pytest.approx(-55, abs=0.5)


def _rd(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    return curve.values("bpp"), curve.values("psnr")


# ---------------------------------------------------------------- head to head


def _curve(name: str, bpp: np.ndarray, psnr: np.ndarray, reference: bool = False) -> Curve:
    """A synthetic curve (MS-SSIM not measured, as on images too small for it)."""
    points = tuple(RatePoint(i, float(b), float(q), math.nan) for i, (b, q) in enumerate(zip(bpp, psnr)))
    return Curve(name, name, points, reference=reference)


def test_head_to_head_known_answer_in_both_directions() -> None:
    """A peer that needs 1.25x sccodec's bits at every PSNR: sccodec needs 20% fewer than it,
    it needs 25% more than sccodec; the anchor is the peer, the overlap the common range."""
    ours = _curve("sccodec", ANCHOR_BPP, ANCHOR_PSNR)
    peer = _curve("webp", ANCHOR_BPP * 1.25, ANCHOR_PSNR)
    (comparison,) = head_to_head(ours, [ours, peer])  # a curve is never compared with itself
    assert comparison.anchor is peer and comparison.test is ours
    assert comparison.bd.percent == pytest.approx(-20.0, abs=1e-9)
    assert comparison.overlap == pytest.approx((ANCHOR_PSNR.min(), ANCHOR_PSNR.max()))
    assert comparison.text() == f"-20.0% ({ANCHOR_PSNR.min():.1f}-{ANCHOR_PSNR.max():.1f} dB)"
    assert compare(peer, ours).bd.percent == pytest.approx(25.0, abs=1e-9)


def test_head_to_head_over_the_common_range_only() -> None:
    """The peer's curve goes on 6 dB above sccodec's; the figure and its range stop where sccodec stops."""
    ours = _curve("sccodec", ANCHOR_BPP, ANCHOR_PSNR)
    higher = ANCHOR_BPP * 2.5
    peer = _curve("avif", np.append(ANCHOR_BPP, higher) * 0.8, np.append(ANCHOR_PSNR, ANCHOR_PSNR + 6))
    comparison = compare(ours, peer)
    assert comparison.overlap == pytest.approx((ANCHOR_PSNR.min(), ANCHOR_PSNR.max()))
    assert comparison.bd.percent > 0  # sccodec needs more bits than a peer that spends 0.8x
    assert comparison.to_json() == {
        "bd_rate_percent": round(comparison.bd.percent, 1),
        "overlap_db": [round(v, 2) for v in comparison.overlap],
        "reason": None,
    }


@pytest.mark.parametrize(
    ("peer_psnr_shift", "n_points", "reason"),
    [
        (20.0, 6, f"no overlap: {ANCHOR_PSNR.min():.1f}-{ANCHOR_PSNR.max():.1f} vs "
                   f"{ANCHOR_PSNR.min() + 20:.1f}-{ANCHOR_PSNR.max() + 20:.1f} dB"),
        (ANCHOR_PSNR.max() - ANCHOR_PSNR.min() - MIN_OVERLAP_DB / 2, 6, f"only (< {MIN_OVERLAP_DB:g} dB)"),
        (0.0, 3, "webp: 3 points (< 4)"),
    ],
)
def test_head_to_head_says_why_it_is_undefined(peer_psnr_shift: float, n_points: int, reason: str) -> None:
    ours = _curve("sccodec", ANCHOR_BPP, ANCHOR_PSNR)
    peer = _curve("webp", ANCHOR_BPP[:n_points], ANCHOR_PSNR[:n_points] + peer_psnr_shift)
    comparison = compare(ours, peer)
    assert not comparison.defined and math.isnan(comparison.bd.percent)
    assert reason in comparison.text()
    assert comparison.to_json()["bd_rate_percent"] is None and reason in comparison.to_json()["reason"]


def test_head_to_head_of_a_lossless_or_unmeasured_curve() -> None:
    ours = _curve("sccodec", ANCHOR_BPP, ANCHOR_PSNR)
    png = Curve("png", "PNG", (RatePoint(None, 13.5, math.inf, 1.0),), param="", lossless=True)
    assert str(compare(ours, png).bd) == "lossless"
    assert str(compare(ours, _curve("jpeg", ANCHOR_BPP, ANCHOR_PSNR), "ms_ssim_db").bd) == "not measured"


def test_report_puts_head_to_head_beside_bd_vs_jpeg(tmp_path: Path) -> None:
    """Table, sccodec's JSON, bd_rates.csv and the plot: sccodec vs each codec of the run and of
    its references, anchor = that codec, with the range; the BD vs JPEG column stays."""
    sccodec, webp = _curve("sccodec", ANCHOR_BPP, ANCHOR_PSNR), _curve("webp", ANCHOR_BPP * 1.25, ANCHOR_PSNR)
    jpeg = _curve("jpeg", ANCHOR_BPP * 2, ANCHOR_PSNR)
    avif = _curve("avif", ANCHOR_BPP[:3], ANCHOR_PSNR[:3] + 20, reference=True)  # cannot be compared
    config = BenchConfig(images=(Path("a.png"),), sweeps={}, dataset="synthetic")
    result = BenchResult(config, (sccodec, jpeg, webp), (), 1.0)
    written = write_outputs(result, [avif], tmp_path, per_image=False)
    assert tmp_path / "bd_rates.csv" in written

    table = format_table(result, [avif])
    assert "sccodec vs it, PSNR" in table and "positive = sccodec needs more bits" in table
    rows = {line.split("  ")[0]: line for line in table.splitlines()}
    assert "-50.0% (" in rows["jpeg"] and "-20.0% (" in rows["webp"] and "+25.0%" not in rows["webp"]
    assert "no overlap" in rows["avif (ref)"]
    assert (tmp_path / "summary.txt").read_text().strip() == table

    bd_rates = json.loads((tmp_path / "sccodec.json").read_text())["meta"]["bd_rates"]
    assert bd_rates["vs_anchor"]["psnr-rgb"]["bd_rate_percent"] == -50.0
    by_anchor = {e["anchor"]: e for e in bd_rates["head_to_head"]}
    assert set(by_anchor) == {"jpeg", "webp", "avif"}
    assert by_anchor["webp"]["psnr-rgb"]["bd_rate_percent"] == -20.0
    assert by_anchor["webp"]["ms-ssim-db-rgb"]["reason"] == "not measured"
    assert by_anchor["avif"]["reference"] and by_anchor["avif"]["psnr-rgb"]["reason"].startswith("no overlap")
    assert "head_to_head" not in json.loads((tmp_path / "webp.json").read_text())["meta"]["bd_rates"]

    with open(tmp_path / "bd_rates.csv", newline="") as f:
        csv_rows = [r for r in csv.DictReader(f) if r["metric"] == "psnr-rgb"]
    assert {(r["kind"], r["test"], r["anchor"], r["bd_rate_percent"]) for r in csv_rows} >= {
        ("vs_anchor", "webp", "jpeg", "-37.5"),
        ("head_to_head", "sccodec", "webp", "-20.0"),
        ("head_to_head", "sccodec", "jpeg", "-50.0"),
    }


def test_head_to_head_script_reproduces_the_committed_figures(tmp_path: Path) -> None:
    """bench/head_to_head.py over the committed Kodak curves gives bench/results/head_to_head.json."""
    spec = importlib.util.spec_from_file_location("head_to_head_script", REPO / "bench" / "head_to_head.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(out=str(tmp_path / "head_to_head.json"))
    committed = REPO / "bench" / "results" / "head_to_head.json"
    assert (tmp_path / "head_to_head.json").read_text() == committed.read_text()
    figures = json.loads(committed.read_text())
    assert {k: figures[k]["bd_rate_percent"] for k in ("jpegxl", "webp", "jpeg2000", "avif", "heic")} == {
        "jpegxl": -9.2, "webp": 1.0, "jpeg2000": 17.3, "avif": 27.0, "heic": 34.2
    }


# ---------------------------------------------------------------- metrics


def _textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((height // 8, width // 8, 3)) * 255).astype(np.uint8))
    return np.asarray(small.resize((width, height), Image.Resampling.BICUBIC))


def test_psnr_rgb() -> None:
    a = np.full((8, 8, 3), 100, np.uint8)
    assert metrics.psnr_rgb(a, a) == math.inf
    assert metrics.psnr_rgb(a, a + 1) == pytest.approx(10 * math.log10(255**2))


def test_ms_ssim_rgb() -> None:
    a = _textured(176, 200)
    noisy = np.clip(a + np.random.default_rng(1).normal(0, 6, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ms_ssim_rgb(a, a) == pytest.approx(1.0)
    assert 0.8 < metrics.ms_ssim_rgb(a, noisy) < 1.0
    assert math.isnan(metrics.ms_ssim_rgb(a[:64, :64], noisy[:64, :64]))  # too small for 5 scales
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)


def test_ms_ssim_matches_pytorch_msssim() -> None:
    import pytorch_msssim  # the `test` extra (pyproject.toml): a missing one is a broken test setup, not a skip
    import torch

    a = _textured(171, 193)  # odd sizes exercise the pooling's padding
    b = np.clip(a + np.random.default_rng(2).normal(0, 6, a.shape), 0, 255).astype(np.uint8)

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.copy()).permute(2, 0, 1)[None].double()

    expected = pytorch_msssim.ms_ssim(tensor(a), tensor(b), data_range=255).item()
    assert metrics.ms_ssim_rgb(a, b) == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------- peers


def test_missing_library_skips_codec_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers.features, "check", lambda name: name != "webp")
    adapters, notes = select_codecs(["jpeg", "webp"])
    assert [a.name for a in adapters] == ["jpeg"]
    assert notes == ["skipping webp: Pillow was built without webp"]


# ---------------------------------------------------------------- bench end to end


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for seed in range(2):
        Image.fromarray(_textured(48, 64, seed)).save(folder / f"img{seed}.png")
    return folder


def assert_clean_exit(result) -> None:
    """The command ended through sys.exit (click's own exits included), not by an exception
    escaping it. CliRunner catches such an exception (exit code 1, nothing printed), so a check
    for "Traceback" in the output could never fail; ``result.exception`` tells."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"an exception escaped `sccodec bench`: {result.exception!r}\n{result.output}"


def _invoke(*args: str) -> tuple[int, str]:
    """Run `sccodec bench`; every run, failing or not, must end cleanly (assert_clean_exit)."""
    result = CliRunner().invoke(bench, list(args))
    assert_clean_exit(result)
    return result.exit_code, result.output


def test_bench_jpeg_png(image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = _invoke(
        "--images", str(image_dir), "--codecs", "jpeg,png", "--qualities", JPEG_POINTS, "--out", str(out), "--per-image"
    )
    assert code == 0, output
    assert "JPEG (4:2:0)" in output and "anchor" in output and "lossless" in output

    # JSON: CompressAI's schema, strict JSON (no NaN/Infinity tokens), parallel lists
    for name, n_points in (("jpeg", 5), ("png", 1)):
        doc = json.loads((out / f"{name}.json").read_text(), parse_constant=pytest.fail)
        assert {"name", "description", "results"} <= set(doc)
        results = doc["results"]
        assert {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"} <= set(results)
        assert {len(v) for v in results.values()} == {n_points}
    jpeg = json.loads((out / "jpeg.json").read_text())["results"]
    assert jpeg["bpp"] == sorted(jpeg["bpp"])
    assert jpeg["ms-ssim-rgb"] == [None] * 5  # 64x48 is too small for MS-SSIM: null, not NaN
    assert json.loads((out / "png.json").read_text())["results"]["psnr-rgb"] == ["inf"]

    # our JSON loads back as a reference curve with the same numbers
    (curve,) = load_reference(out / "jpeg.json")
    assert list(curve.values("bpp")) == pytest.approx(jpeg["bpp"])
    assert list(curve.values("psnr")) == pytest.approx(jpeg["psnr-rgb"])
    assert load_reference(out / "png.json")[0].lossless

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sum(r["row"] == "mean" for r in rows) == 6
    assert sum(r["row"] == "image" for r in rows) == 6 * 2
    assert {r["quality"] for r in rows if r["codec"] == "png"} == {"lossless"}

    with Image.open(out / "rd.png") as plot:
        assert plot.width > 1000
    assert (out / "summary.txt").read_text().startswith("sccodec bench")
    assert sorted(p.name for p in out.iterdir()) == [
        "bd_rates.csv", "jpeg.json", "png.json", "rd.png", "results.csv", "summary.txt"
    ]
    assert "No sccodec curve in this run" in output  # so no head-to-head columns


def test_interrupted_report_keeps_the_previous_files_whole(image_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """A run killed while writing its plot leaves the last run's plot, not half a PNG, and no temp file."""
    config = BenchConfig(images=tuple(sorted(image_dir.iterdir())), sweeps={"jpeg": (20, 80)})
    result, out = run_bench(config), tmp_path / "out"
    write_outputs(result, [], out, per_image=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def killed_mid_write(self, path, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        write_outputs(result, [], out, per_image=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()}.keys() == before.keys()
    assert (out / "rd.png").read_bytes() == before["rd.png"]


def test_unwritable_out_is_exit_3_before_the_sweep(image_dir: Path, tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr("sccodec.bench.cli._run_with_progress", lambda *a, **k: pytest.fail("swept first"))
    code, output = _invoke("--images", str(image_dir), "--codecs", "jpeg", "--out", str(blocker / "out"))
    assert code == 3 and "cannot write the report" in output
    assert len(output.strip().splitlines()) == 1


def test_bench_workers_match_serial(image_dir: Path) -> None:
    config = BenchConfig(images=tuple(sorted(image_dir.iterdir())), sweeps={"jpeg": (20, 80), "png": (None,)})
    serial = run_bench(config)
    parallel = run_bench(BenchConfig(config.images, config.sweeps, workers=2))
    key = [(m.codec, m.quality, m.image, m.n_bytes, m.psnr) for m in serial.measurements]
    assert [(m.codec, m.quality, m.image, m.n_bytes, m.psnr) for m in parallel.measurements] == key


def test_bench_with_compressai_reference(image_dir: Path, tmp_path: Path) -> None:
    reference = REFERENCE_DIR / "compressai_kodak" / "compressai-bmshj2018-hyperprior_mse_cpu.json"
    if not reference.exists():
        pytest.skip("shared/reference is not present")
    code, output = _invoke(
        "--images",
        str(image_dir),
        "--codecs",
        "jpeg",
        "--qualities",
        JPEG_POINTS,
        "--out",
        str(tmp_path / "out"),
        "--reference",
        str(reference),
    )
    assert code == 0, output
    assert "bmshj2018-hyperprior (ref)" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "/nonexistent/folder", "--codecs", "jpeg"], "does not exist"),
        (["--codecs", "jpeg,foo"], "unknown codec 'foo'"),
        (["--codecs", "jpeg", "--qualities", "jpeg=500"], "out of range"),
        (["--codecs", "jpeg", "--qualities", "jpeg=ten"], "not a comma-separated list"),
    ],
)
def test_bad_input_is_a_one_line_error(image_dir: Path, args: list[str], message: str) -> None:
    if "--images" not in args:
        args = ["--images", str(image_dir), *args]
    code, output = _invoke(*args)
    assert code != 0
    assert message in output


def test_bad_reference_and_empty_folder(image_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"}')
    code, output = _invoke(
        "--images", str(image_dir), "--codecs", "png", "--reference", str(bad), "--out", str(tmp_path / "out")
    )
    assert code != 0 and "cannot read reference" in output
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output = _invoke("--images", str(empty), "--codecs", "png")
    assert code != 0 and "no images" in output


# ---------------------------------------------------------------- the sccodec adapter


class _JpegStandIn:
    """Stands in for sccodec.api.Codec so the adapter's plumbing is tested before the model lands."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def encode(self, image: Image.Image, quality: int) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=10 * quality)
        return buffer.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data)).convert("RGB")


def test_sccodec_adapter_with_stand_in(monkeypatch: pytest.MonkeyPatch, image_dir: Path, tmp_path: Path) -> None:
    import sccodec

    monkeypatch.setitem(sys.modules, "sccodec.api", types.SimpleNamespace(Codec=_JpegStandIn))
    monkeypatch.setattr(sccodec, "QUALITIES", (1, 2, 3, 4, 5, 6, 7, 8), raising=False)
    code, output = _invoke(
        "--images",
        str(image_dir),
        "--codecs",
        "sccodec,jpeg",
        "--qualities",
        JPEG_POINTS,
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0, output
    assert json.loads((tmp_path / "out" / "sccodec.json").read_text())["meta"]["quality"] == list(range(1, 9))
    code, output = _invoke("--images", str(image_dir), "--codecs", "sccodec", "--qualities", "sccodec=99")
    assert code != 0 and "not one of sccodec.QUALITIES" in output


def test_bench_sccodec(image_dir: Path, tmp_path: Path) -> None:
    import sccodec

    code, output = _invoke("--images", str(image_dir), "--codecs", "sccodec,jpeg", "--out", str(tmp_path / "out"))
    assert code == 0, output
    doc = json.loads((tmp_path / "out" / "sccodec.json").read_text())
    assert len(doc["results"]["bpp"]) == len(sccodec.QUALITIES)  # type: ignore[attr-defined]
    assert all(b > 0 for b in doc["results"]["bpp"])


def test_bench_named_model_runs_beside_the_default(image_dir: Path, tmp_path: Path) -> None:
    """``sccodec@MODEL`` codes with that shipped model: the default's own name gives its exact files."""
    out = tmp_path / "out"
    code, output = _invoke("--images", str(image_dir), "--codecs", f"sccodec,sccodec@{DEFAULT_MODEL}",
                           "--qualities", "1,6", "--out", str(out), "--quiet")
    assert code == 0, output
    default, named = (json.loads((out / f"{n}.json").read_text()) for n in ("sccodec", f"sccodec@{DEFAULT_MODEL}"))
    assert named["results"]["bpp"] == default["results"]["bpp"] and len(named["results"]["bpp"]) == 2
    code, output = _invoke("--images", str(image_dir), "--codecs", "sccodec@no-such-model", "--out", str(out))
    assert code != 0 and "no shipped model 'no-such-model'" in output


def test_bench_runs_sccodec_at_another_effort_beside_the_default(image_dir: Path, tmp_path: Path) -> None:
    """``sccodec-effortN`` encodes at effort N; it is a sccodec curve, so it gets head-to-head columns."""
    import sccodec
    from sccodec.bench.peers import OTHER_EFFORTS

    assert OTHER_EFFORTS == tuple(e for e in sccodec.EFFORTS if e != sccodec.DEFAULT_EFFORT)
    out = tmp_path / "out"
    code, output = _invoke("--images", str(image_dir), "--codecs", "sccodec,sccodec-effort4,jpeg",
                           "--qualities", "sccodec=2,6", "--qualities", "sccodec-effort4=2,6", "--qualities",
                           JPEG_POINTS, "--out", str(out), "--quiet")
    assert code == 0, output
    default, higher = (json.loads((out / f"{n}.json").read_text()) for n in ("sccodec", "sccodec-effort4"))
    assert higher["meta"]["settings"]["effort"] == 4
    assert higher["results"]["bpp"] != default["results"]["bpp"]
    assert "sccodec (effort 4) vs it" in (out / "summary.txt").read_text()


def test_a_higher_effort_is_skipped_only_when_the_codec_cannot_run_it(monkeypatch) -> None:
    """The adapter asks the codec: without torch the shipped model still refines (its gradient
    graph); a model without a curvature for its weights is reported, not run."""
    import sccodec.api
    from sccodec.bench.peers import SccodecAdapter

    real_find_spec = sccodec.api.importlib.util.find_spec
    monkeypatch.setattr(sccodec.api.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    adapter = SccodecAdapter(effort=4)
    assert adapter.unavailable() is None
    monkeypatch.setitem(adapter._loaded().model_file.__dict__, "curvature", None)  # no curvature file beside it
    assert "needs the synthesis' curvature" in adapter.unavailable()


def test_codec_names_fold_case_but_model_names_keep_it(image_dir: Path, tmp_path: Path) -> None:
    """Model names are file names (case-sensitive): ``SCCODEC@My-Model`` looks for My-Model."""
    code, output = _invoke("--images", str(image_dir), "--codecs", "SCCODEC@My-Model", "--out",
                           str(tmp_path / "out"))
    assert code != 0 and "no shipped model 'My-Model'" in output
