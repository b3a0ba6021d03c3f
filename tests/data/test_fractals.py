"""Tests of the FractalDB-style generator (RLGD) against independent numpy implementations."""

import colorsys
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unreal_nas_jax.data import fractals as F
from unreal_nas_jax.files import write_json_atomic

NUM_CATEGORIES = 4
# Small renders keep the tests fast; the behaviour does not depend on the size.
RENDER = dict(image_size=16, num_points=512)


@pytest.fixture(scope='module')
def cats():
  # FractalDB's real measurement settings (512x512, pad 6, 100k points): ~150 candidates.
  return F.search_categories(jax.random.PRNGKey(0), NUM_CATEGORIES, candidates_per_round=64)


def reference_fill_rate(points, resolution=512, pad=6):
  """FractalDB's rescale and pixel count, written literally in float64 numpy."""
  xs, ys = np.asarray(points, np.float64).T
  keep = np.isfinite(xs) & np.isfinite(ys)
  xs, ys = xs[keep], ys[keep]
  if xs.min() < 0:
    xs = xs - xs.min()
  if ys.min() < 0:
    ys = ys - ys.min()
  col = (xs / (xs.max() - xs.min()) * (resolution - 2 * pad) + pad).astype(np.uint16)
  row = (ys / (ys.max() - ys.min()) * (resolution - 2 * pad) + pad).astype(np.uint16)
  image = np.zeros((resolution, resolution), bool)
  image[row, col] = True
  return np.count_nonzero(image) / resolution**2


def numpy_chaos_game(maps, probs, num_points, seed):
  """An independent sequential chaos game (float64, numpy's own RNG), start point kept."""
  rng = np.random.default_rng(seed)
  cum = np.cumsum(probs)
  choice = np.minimum(np.searchsorted(cum, rng.random(num_points - 1)), len(probs) - 1)
  a, b, c, d, e, f = (maps[choice, i].tolist() for i in range(6))
  points = np.zeros((num_points, 2))
  x = y = 0.0
  for t in range(num_points - 1):
    x, y = a[t] * x + b[t] * y + e[t], c[t] * x + d[t] * y + f[t]
    points[t + 1] = x, y
  return points


def real_maps(cats, k):
  n = int(cats.num_maps[k])
  return np.asarray(cats.maps[k, :n], np.float64), np.asarray(cats.probs[k, :n], np.float64)


def test_accepted_fill_rates_hold_under_an_independent_chaos_game(cats):
  stored = np.asarray(cats.fill_rate)
  assert np.all(stored >= 0.2)
  for k in range(NUM_CATEGORIES):
    maps, probs = real_maps(cats, k)
    rate = reference_fill_rate(numpy_chaos_game(maps, probs, 100_000, seed=k))
    # Fill rate is a property of the attractor; runs differ only through the transient from (0, 0)
    # and sampling noise (~0.01 in practice).
    assert rate >= 0.2 - 0.03, (k, rate)
    assert abs(rate - stored[k]) <= 0.03, (k, rate, stored[k])


def test_fill_measurement_matches_fractaldb_rescale_on_the_same_points(cats):
  key = jax.random.PRNGKey(7)
  for k in range(2):
    args = (cats.maps[k], cats.probs[k], cats.num_maps[k])
    points = F.chaos_game(key, *args, 100_000)
    ours = float(F.measure_fill_rate(key, *args))
    # float32 vs float64 rescaling may move a handful of boundary points by one pixel.
    assert abs(ours - reference_fill_rate(points)) < 1e-4


def test_chaos_game_applies_the_maps_with_their_probabilities(cats):
  k = int(np.argmax(np.asarray(cats.num_maps)))
  maps, probs = real_maps(cats, k)
  points = np.asarray(
    F.chaos_game(jax.random.PRNGKey(3), cats.maps[k], cats.probs[k], cats.num_maps[k], 20_000),
    np.float64,
  )
  assert np.all(points[0] == 0)
  prev, nxt = points[:-1], points[1:]
  # (T, n, 2): each step's start point under every real map.
  x, y = prev[:, :1], prev[:, 1:]
  images = np.stack(
    [x * maps[:, 0] + y * maps[:, 1] + maps[:, 4], x * maps[:, 2] + y * maps[:, 3] + maps[:, 5]],
    axis=-1,
  )
  error = np.abs(images - nxt[:, None, :]).max(axis=-1)
  assert np.all(error.min(axis=1) < 1e-4 * (1 + np.abs(nxt).max(axis=1)))
  used = np.bincount(error.argmin(axis=1), minlength=len(probs)) / len(error)
  np.testing.assert_allclose(used, probs, atol=0.02)


def test_categories_have_2_to_7_maps_and_determinant_probabilities(cats):
  num_maps = np.asarray(cats.num_maps)
  assert np.all((num_maps >= 2) & (num_maps <= 7))
  maps, probs = np.asarray(cats.maps), np.asarray(cats.probs)
  for k in range(NUM_CATEGORIES):
    n = num_maps[k]
    assert np.all(maps[k, n:] == 0) and np.all(probs[k, n:] == 0)
    assert np.all(np.abs(maps[k, :n]) <= 1)
    det = np.abs(maps[k, :n, 0] * maps[k, :n, 3] - maps[k, :n, 1] * maps[k, :n, 2])
    np.testing.assert_allclose(probs[k, :n], det / det.sum(), rtol=1e-5)


def test_search_is_deterministic_in_the_key_only(cats):
  again = F.search_categories(jax.random.PRNGKey(0), NUM_CATEGORIES, candidates_per_round=64)
  for a, b in zip(jax.tree.leaves(cats), jax.tree.leaves(again), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Candidate g comes from fold_in(key, g): the round size does not change the result.
  other_rounds = F.search_categories(
    jax.random.PRNGKey(0), NUM_CATEGORIES, candidates_per_round=48, fill_batch_size=16
  )
  np.testing.assert_array_equal(np.asarray(cats.maps), np.asarray(other_rounds.maps))
  other_key = F.search_categories(jax.random.PRNGKey(1), NUM_CATEGORIES, candidates_per_round=64)
  assert not np.array_equal(np.asarray(cats.maps), np.asarray(other_key.maps))


def test_search_reports_when_too_few_systems_pass():
  with pytest.raises(ValueError, match='only 0 of'):
    F.search_categories(
      jax.random.PRNGKey(0),
      NUM_CATEGORIES,
      candidates_per_round=64,
      fill_threshold=1.01,
      max_candidates=64,
    )


def test_variants_use_fractaldb_scale_factors(cats):
  # FractalDB's weights_0.4.csv, row by row.
  expected = np.ones((25, 6), np.float32)
  expected[:5, 0] = [0.2, 0.6, 1.0, 1.4, 1.8]
  for p in range(1, 6):
    expected[5 + 4 * (p - 1) : 9 + 4 * (p - 1), p] = [0.2, 0.6, 1.4, 1.8]
  np.testing.assert_allclose(np.asarray(F.variant_factors(0.4)), expected, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(F.variant_factors(0.1))[:5, 0], [0.8, 0.9, 1, 1.1, 1.2])
  variants = np.asarray(F.variant_params(cats, 0.4))
  assert variants.shape == (NUM_CATEGORIES, 25, 7, 6)
  np.testing.assert_array_equal(variants[:, F.IDENTITY_VARIANT], np.asarray(cats.maps))
  np.testing.assert_allclose(
    variants, np.asarray(cats.maps)[:, None] * expected[None, :, None, :], rtol=1e-6
  )


def test_example_layout_cycles_variants_then_flips():
  k = 4
  index = np.arange(1000)
  category, variant, flip = (np.asarray(v) for v in F.example_layout(index, k))
  np.testing.assert_array_equal(category, index % k)
  # The first 100 instances of a category are all 25 variants x 4 flips.
  for c in range(k):
    pairs = {(variant[i], flip[i]) for i in range(c, 100 * k, k)}
    assert len(pairs) == 100
  # Example i + 25 K is the same category and variant with the next flip.
  i = np.arange(75 * k)
  np.testing.assert_array_equal(category[i + 25 * k], category[i])
  np.testing.assert_array_equal(variant[i + 25 * k], variant[i])
  np.testing.assert_array_equal(flip[i + 25 * k], flip[i] + 1)


def test_flips_are_exact_flips_of_one_render(cats):
  key = jax.random.PRNGKey(5)
  args = (key, cats.maps[0], cats.probs[0], cats.num_maps[0])
  images = [np.asarray(F.render_instance(*args, flip, **RENDER)) for flip in range(4)]
  assert images[0].any()
  np.testing.assert_array_equal(images[1], images[0][::-1])  # vertical
  np.testing.assert_array_equal(images[2], images[0][:, ::-1])  # horizontal
  np.testing.assert_array_equal(images[3], images[0][::-1, ::-1])  # both


def test_rendered_images_shape_categories_and_normalisation(cats):
  key = jax.random.PRNGKey(1)
  images, category = F.render_images(key, cats, num_examples=16, **RENDER)
  images = np.asarray(images)
  assert images.shape == (16, 16, 16, 3) and images.dtype == np.float32
  assert np.all(np.isfinite(images))
  np.testing.assert_array_equal(np.asarray(category), np.arange(16) % NUM_CATEGORIES)
  assert np.asarray(category).dtype == np.int32
  np.testing.assert_allclose(images.mean(axis=(0, 1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(images.std(axis=(0, 1, 2)), 1, atol=1e-4)
  raw, _ = F.render_images(key, cats, num_examples=16, normalize=False, **RENDER)
  raw = np.asarray(raw)
  assert raw.min() >= 0 and raw.max() <= 1 and raw.mean() > 0.01
  normed, mean, std = F.normalize_images(jnp.asarray(raw))
  np.testing.assert_allclose(np.asarray(normed), images, atol=1e-5)
  np.testing.assert_allclose(np.asarray(mean), raw.mean(axis=(0, 1, 2)), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(std), raw.std(axis=(0, 1, 2)), rtol=1e-4)


def test_example_images_do_not_depend_on_num_examples_or_chunking(cats):
  key = jax.random.PRNGKey(1)
  small, _ = F.render_images(key, cats, num_examples=8, normalize=False, **RENDER)
  large, _ = F.render_images(key, cats, num_examples=16, normalize=False, **RENDER)
  chunked, _ = F.render_images(key, cats, num_examples=16, normalize=False, batch_size=3, **RENDER)
  np.testing.assert_array_equal(np.asarray(small), np.asarray(large)[:8])
  np.testing.assert_array_equal(np.asarray(chunked), np.asarray(large))


def test_render_is_deterministic_in_the_key(cats):
  first, _ = F.render_images(jax.random.PRNGKey(1), cats, num_examples=16, **RENDER)
  again, _ = F.render_images(jax.random.PRNGKey(1), cats, num_examples=16, **RENDER)
  other, _ = F.render_images(jax.random.PRNGKey(2), cats, num_examples=16, **RENDER)
  np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
  assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_gray_mode(cats):
  key = jax.random.PRNGKey(1)
  rgb, _ = F.render_images(key, cats, num_examples=8, color_mode='gray', normalize=False, **RENDER)
  rgb = np.asarray(rgb)
  np.testing.assert_array_equal(rgb[..., 0], rgb[..., 1])
  np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
  # Internal pixels are 0 or 127; an output pixel averages 4 x 4 of them.
  levels = rgb * 255 * 16 / 127
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
  assert levels.max() > 0
  one, _ = F.render_images(
    key, cats, num_examples=8, color_mode='gray', channels=1, normalize=False, **RENDER
  )
  assert one.shape == (8, 16, 16, 1)
  np.testing.assert_array_equal(np.asarray(one)[..., 0], rgb[..., 0])
  with pytest.raises(ValueError):
    F.render_images(key, cats, num_examples=8, color_mode='color', channels=1)


def test_colour_table_is_fractaldb_hsv():
  for i in range(F.HUE_PERIOD):
    rgb = np.array(colorsys.hsv_to_rgb(i / F.HUE_PERIOD, 0.75, 0.75)) * 255
    # FractalDB's tuples are (B, G, R) written into RGB images, each component truncated.
    np.testing.assert_allclose(F.HSV_COLORS[i], rgb[::-1], atol=1.0)
    np.testing.assert_array_equal(F.HSV_COLORS[i], np.floor(F.HSV_COLORS[i]))


@pytest.mark.parametrize('color_mode', ['gray', 'color'])
def test_patches_are_pasted_in_order_like_fractaldb(color_mode):
  rng = np.random.default_rng(0)
  size, n = 12, 60
  col, row = rng.integers(0, size, n), rng.integers(0, size, n)
  valid = rng.random(n) > 0.1
  masks = rng.integers(1, 512, n)
  # Sequential paste: every cell of the patch overwrites the image, black cells included.
  channels = 3 if color_mode == 'color' else 1
  expected = np.zeros((size, size, channels), np.float32)
  for i in range(n):
    if not valid[i]:
      continue
    bits = f'{masks[i]:09b}'
    color = F.HSV_COLORS[i % 128] if color_mode == 'color' else [127]
    for cell in range(9):
      y, x = row[i] + cell // 3 - 1, col[i] + cell % 3 - 1
      if 0 <= y < size and 0 <= x < size:
        expected[y, x] = np.asarray(color) * int(bits[cell])
  ours = F.paint_patches(
    jnp.asarray(col, jnp.int32),
    jnp.asarray(row, jnp.int32),
    jnp.asarray(valid),
    jnp.asarray(masks, jnp.int32),
    size,
    color_mode,
  )
  np.testing.assert_array_equal(np.asarray(ours), expected)


def test_json_round_trip(cats, tmp_path):
  data = F.categories_to_json(cats)
  assert set(data) == {'categories'} and len(data['categories']) == NUM_CATEGORIES
  for k, entry in enumerate(data['categories']):
    assert set(entry) == {'maps', 'probs', 'fill_rate'}
    n = int(cats.num_maps[k])
    assert len(entry['maps']) == n and len(entry['probs']) == n
    assert all(len(row) == 6 for row in entry['maps'])
  back = F.categories_from_json(json.loads(json.dumps(data)))
  path = tmp_path / 'fractal_categories.json'
  write_json_atomic(path, F.categories_to_json(cats), indent=1)
  loaded = F.load_categories(path)
  for restored in (back, loaded):
    for a, b in zip(jax.tree.leaves(cats), jax.tree.leaves(restored), strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Probabilities may be left out: they are recomputed from the determinants.
  del data['categories'][0]['probs']
  np.testing.assert_allclose(
    np.asarray(F.categories_from_json(data).probs), np.asarray(cats.probs), rtol=1e-6
  )


def test_render_images_of_given_categories(cats):
  images, category = F.render_images(
    jax.random.PRNGKey(3), cats, num_examples=16, num_points=512, image_size=16
  )
  assert images.shape == (16, 16, 16, 3) and category.shape == (16,)
  assert set(np.unique(np.asarray(category))) <= set(range(len(cats.num_maps)))
