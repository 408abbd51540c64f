"""The compressed-domain analysis benchmarks' own parts (bench/make_mosaics.py,
bench/segmentation_quality.py, bench/search_quality.py) on tiny synthetic data: the mosaic
generator, the scores and the pixel baselines. No model, no timing."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import gradient_image

REPO = Path(__file__).resolve().parents[1]


def _bench(name: str):  # noqa: ANN202 (a module)
    """A bench script as a module (they import each other by name, so bench/ goes on the path)."""
    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))
    return importlib.import_module(name)


mosaics = _bench("make_mosaics")
seg = _bench("segmentation_quality")
search = _bench("search_quality")


def halves(height: int = 32, width: int = 32) -> np.ndarray:
    truth = np.zeros((height, width), np.int64)
    truth[:, width // 2 :] = 1
    return truth


# ---------------------------------------------------------------- mosaics


def test_warped_voronoi_gives_every_region_its_share_and_repeats_with_the_seed() -> None:
    labels = mosaics.warped_voronoi(np.random.default_rng(3), 64, 96, 5)
    assert labels.shape == (64, 96)
    counts = np.bincount(labels.ravel(), minlength=5)
    assert len(counts) == 5 and counts.min() >= mosaics.MIN_REGION_SHARE * 64 * 96
    again = mosaics.warped_voronoi(np.random.default_rng(3), 64, 96, 5)
    assert np.array_equal(labels, again)


def test_mosaic_fills_each_region_from_its_own_photo() -> None:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]
    flat = [Image.new("RGB", (400, 360), c) for c in colours]
    image, labels, chosen, patches = mosaics.make_mosaic(np.random.default_rng(0), flat, 48, 64, 3)
    assert image.shape == (48, 64, 3) and labels.shape == (48, 64)
    assert len(set(chosen)) == 3 and len(patches) == 3
    for region, photo in enumerate(chosen):
        assert np.all(image[labels == region] == colours[photo])


def test_mirrored_texture_has_no_seams() -> None:
    photo = Image.fromarray(gradient_image(400, 400, seed=1))
    texture, (top, left, side, scale) = mosaics.mirrored_texture(np.random.default_rng(1), photo, 600, 700)
    assert texture.shape == (600, 700, 3) and 128 <= side <= 256
    steps = np.abs(np.diff(texture.astype(np.int16), axis=1)).max(axis=(0, 2))
    assert steps.max() < 40  # a seam between tiles would jump across the gradient


# ---------------------------------------------------------------- scores


def test_scores_ignore_label_names_and_count_missing_regions() -> None:
    truth = halves()
    assert seg.adjusted_rand(truth, 1 - truth) == pytest.approx(1.0)
    assert seg.matched_miou(truth, 1 - truth) == pytest.approx(1.0)
    one_label = np.zeros_like(truth)
    assert seg.matched_miou(truth, one_label) == pytest.approx(0.25)  # 0.5 for one half, 0 for the other
    assert seg.adjusted_rand(truth, one_label) == pytest.approx(0.0)


def test_merged_miou_forgives_over_segmentation_only() -> None:
    truth = halves()
    quarters = truth * 2 + (np.arange(32)[:, None] >= 16)
    assert seg.matched_miou(truth, quarters) == pytest.approx(0.5)
    assert seg.merged_miou(truth, quarters) == pytest.approx(1.0)
    straddling = np.zeros_like(truth)
    straddling[:, 8:] = 1
    assert seg.merged_miou(truth, straddling) < 1.0


def test_grid_oracle_is_exact_on_grid_aligned_regions() -> None:
    truth = np.repeat(np.repeat(np.array([[0, 1], [2, 1]]), 16, axis=0), 16, axis=1)
    assert np.array_equal(seg.grid_oracle(truth), [[0, 1], [2, 1]])


def test_mean_ci_brackets_the_mean() -> None:
    stats = seg.mean_ci([0.2, 0.4, 0.6, 0.8])
    assert stats["mean"] == pytest.approx(0.5) and stats["ci95"][0] < 0.5 < stats["ci95"][1]
    assert seg.mean_ci([0.3] * 5)["ci95"] == [0.3, 0.3]


# ---------------------------------------------------------------- pixel features and variants


def test_srgb_to_lab_matches_the_reference_values() -> None:
    lab = seg.srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.uint8))
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.1)


def test_block_lab_averages_each_block() -> None:
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:16, :16] = 255
    features = seg.block_lab(rgb, with_std=True)
    assert features.shape == (2, 3, 6)
    np.testing.assert_allclose(features[0, 0, :3], [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(features[1, 2], 0, atol=0.05)


def test_thumbnail_descriptor_is_unit_length_and_tells_images_apart() -> None:
    a = search.thumbnail_descriptor(gradient_image(64, 96, seed=0))
    b = search.thumbnail_descriptor(gradient_image(64, 96, seed=0)[:, ::-1].copy())
    assert a.shape == (768,) and np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert np.linalg.norm(a - b) > 0.05


@pytest.mark.parametrize("kind", search.VARIANTS)
def test_variants_stay_near_the_photo(kind: str) -> None:
    photo = Image.fromarray(gradient_image(96, 128, seed=2))
    image, level = search.variant(np.random.default_rng(0), kind, photo)
    area = image.width * image.height / (photo.width * photo.height)
    expected = {"recrop": (0.78, 0.92), "rescale": (0.24, 0.57)}.get(kind, (1.0, 1.0))
    assert expected[0] <= area <= expected[1]
    assert (level in search.REQUALITY_LEVELS) if kind == "requality" else level is None
