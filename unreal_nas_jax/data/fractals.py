"""FractalDB-style fractal images (RLGD), searched and rendered on device in JAX.

This reimplements the behaviour of the FractalDB generator (Kataoka et al.; the reference is
hirokatsukataoka16/FractalDB-Pretrained-ResNet-PyTorch) as pure, jit-friendly JAX:

* Category search (`search_categories`): an iterated function system (IFS) of 2-7 affine maps
  x' = a x + b y + e, y' = c x + d y + f with every parameter ~ U(-1, 1) and map probabilities
  p_i = |a_i d_i - b_i c_i| / sum_j |a_j d_j - b_j c_j|. A system is kept as a category when its
  filling rate is >= 0.2, measured as FractalDB does: a chaos game of 100k points from (0, 0) (the
  start point kept), NaN/inf points dropped, min-max rescaled into a 512x512 image with a 6-pixel
  margin, and the fraction of the 512^2 pixels that hold at least one point. Candidates are drawn
  and measured in vectorised rounds inside a `lax.while_loop`; candidate g is a pure function of
  `fold_in(key, g)` and the first accepted candidates in g order are kept, so the result depends
  on the key only (not on the round or chunk sizes).
* Instances (`render_images`): the 25 parameter-scaling variants of a category (`variant_params`),
  each point of the chaos game drawn as a random non-empty 3x3 binary patch (grey 127 or a colour
  whose hue cycles with the point index), and the 4 flips (none, vertical, horizontal, both).

Everything is vectorised over systems / examples (`vmap`, `lax.map` in chunks) and sequential only
over the points of one chaos game (`lax.scan`), which is inherently sequential.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from unreal_nas_jax import files

MAX_MAPS = 7
NUM_PARAMS = 6  # (a, b, c, d, e, f)
NUM_VARIANTS = 25
NUM_FLIPS = 4  # 0: none, 1: vertical (top-bottom), 2: horizontal (left-right), 3: both
GRAY_VALUE = 127
HUE_PERIOD = 128

# Offsets of the 9 cells of a 3x3 patch in row-major order; cell k is bit (8 - k) of the 9-bit
# mask, i.e. the mask's binary string read left to right, as in FractalDB's '{:09b}' patterns.
_PATCH_DY = np.repeat(np.arange(-1, 2), 3).astype(np.int32)
_PATCH_DX = np.tile(np.arange(-1, 2), 3).astype(np.int32)


@flax.struct.dataclass
class FractalCategories:
  """Accepted IFS systems as fixed-shape arrays (a pytree; K categories, padded to 7 maps).

  Attributes:
    maps: (K, 7, 6) float32, map j of category k is (a, b, c, d, e, f); rows >= num_maps are 0.
    num_maps: (K,) int32, the number of real maps (2..7).
    probs: (K, 7) float32, map probabilities |ad - bc| normalised; 0 for padding rows.
    fill_rate: (K,) float32, the filling rate measured when the category was accepted (NaN when
      unknown, e.g. categories loaded from JSON without it).
  """

  maps: jax.Array
  num_maps: jax.Array
  probs: jax.Array
  fill_rate: jax.Array

  @property
  def num_categories(self) -> int:
    return self.maps.shape[0]


# ---------------------------------------------------------------------------------------------
# IFS systems and the chaos game.


def map_probabilities(maps: jax.Array, num_maps: jax.Array) -> jax.Array:
  """FractalDB's map probabilities |a d - b c| / sum |a d - b c| over the real maps.

  Args:
    maps: (..., 7, 6) map parameters.
    num_maps: (...) number of real maps; padding rows get probability 0.

  Returns:
    (..., 7) float32 probabilities. A system whose determinants are all 0 (probability zero under
    U(-1, 1)) gets uniform probabilities instead of NaN.
  """
  valid = jnp.arange(MAX_MAPS) < jnp.asarray(num_maps)[..., None]
  det = jnp.abs(maps[..., 0] * maps[..., 3] - maps[..., 1] * maps[..., 2])
  det = jnp.where(valid, det, 0.0)
  total = jnp.sum(det, axis=-1, keepdims=True)
  uniform = valid / jnp.sum(valid, axis=-1, keepdims=True)
  return jnp.where(total > 0, det / jnp.where(total > 0, total, 1.0), uniform).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=('num_points',))
def chaos_game(
  key: jax.Array, maps: jax.Array, probs: jax.Array, num_maps: jax.Array, num_points: int
) -> jax.Array:
  """The points of one chaos game, FractalDB style.

  Starts at (0, 0) and keeps that start point; each of the `num_points - 1` steps draws u ~ U[0, 1)
  and applies the first map j with u <= cumsum(probs)[j] (FractalDB's selection rule).

  Args:
    key: PRNG key of this chaos game.
    maps: (7, 6) map parameters (padding rows ignored).
    probs: (7,) map probabilities (0 for padding rows).
    num_maps: scalar int, the number of real maps.
    num_points: static number of points, start point included.

  Returns:
    (num_points, 2) float32 points (x, y); divergent systems can produce inf / NaN.
  """
  u = jax.random.uniform(key, (num_points - 1,), jnp.float32)
  cum = jnp.cumsum(probs)
  # Index of the first cumulative probability >= u; the clamp catches float round-off where the
  # last cumulative sum is slightly below 1 (FractalDB would reuse the previous point there).
  choice = jnp.sum(u[:, None] > cum[None, :], axis=1)
  choice = jnp.minimum(choice, num_maps - 1).astype(jnp.int32)

  def step(p, j):
    m = maps[j]
    q = jnp.stack([m[0] * p[0] + m[1] * p[1] + m[4], m[2] * p[0] + m[3] * p[1] + m[5]])
    return q, q

  start = jnp.zeros((2,), jnp.float32)
  _, points = lax.scan(step, start, choice, unroll=8)
  return jnp.concatenate([start[None], points], axis=0)


def points_to_pixels(
  points: jax.Array, resolution: int, pad: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """FractalDB's rescaling of chaos-game points into a `resolution` x `resolution` image.

  Non-finite points are dropped; x and y are min-max rescaled independently onto
  [pad, resolution - pad] and truncated to integers (FractalDB's uint16 cast). The start point
  (0, 0) is kept, so FractalDB's "shift by the minimum if it is negative" is exactly a min-max
  rescale.

  Args:
    points: (N, 2) points (x, y).
    resolution: image side in pixels.
    pad: margin in pixels.

  Returns:
    (col, row, valid): int32 (N,) pixel coordinates (row = y, before FractalDB's top-bottom flip)
    and a bool (N,) mask of the finite points.
  """
  valid = jnp.all(jnp.isfinite(points), axis=1)
  lo = jnp.min(jnp.where(valid[:, None], points, jnp.inf), axis=0)
  hi = jnp.max(jnp.where(valid[:, None], points, -jnp.inf), axis=0)
  # Degenerate ranges (a single point, or a range that overflows) put everything on the margin,
  # which is what FractalDB's NaN -> 0 cast does as well.
  t = jnp.clip(jnp.nan_to_num((points - lo) / (hi - lo), nan=0.0, posinf=0.0, neginf=0.0), 0, 1)
  pix = jnp.floor(t * (resolution - 2 * pad) + pad).astype(jnp.int32)
  return pix[:, 0], pix[:, 1], valid


@functools.partial(
  jax.jit,
  static_argnames=(
    'resolution',
    'pad',
    'num_points',
  ),
)
def measure_fill_rate(
  key: jax.Array,
  maps: jax.Array,
  probs: jax.Array,
  num_maps: jax.Array,
  *,
  resolution: int = 512,
  pad: int = 6,
  num_points: int = 100_000,
) -> jax.Array:
  """Filling rate of one system: distinct pixels hit by the chaos game / resolution^2.

  Args:
    key: PRNG key of the chaos game.
    maps: (7, 6) map parameters.
    probs: (7,) map probabilities.
    num_maps: scalar int, the number of real maps.
    resolution: side of the square image the points are drawn on (FractalDB: 512).
    pad: margin in pixels (FractalDB: 6).
    num_points: chaos-game points, start point included (FractalDB: 100k).

  Returns:
    Scalar float32 in [0, 1].
  """
  points = chaos_game(key, maps, probs, num_maps, num_points)
  col, row, valid = points_to_pixels(points, resolution, pad)
  size = resolution * resolution
  index = jnp.where(valid, row * resolution + col, size)
  # One boolean buffer per system (256 KiB at 512^2): memory stays bounded under lax.map.
  hit = jnp.zeros((size,), jnp.bool_).at[index].set(True, mode='drop')
  return (jnp.sum(hit, dtype=jnp.int32) / size).astype(jnp.float32)


# ---------------------------------------------------------------------------------------------
# Category search.


def _draw_candidate(key: jax.Array, min_maps: int, max_maps: int):
  """Candidate system for one key: (maps (7, 6), num_maps, probs (7,), chaos-game key)."""
  k_num, k_params, k_chaos = jax.random.split(key, 3)
  num_maps = jax.random.randint(k_num, (), min_maps, max_maps + 1, jnp.int32)
  maps = jax.random.uniform(k_params, (MAX_MAPS, NUM_PARAMS), jnp.float32, -1.0, 1.0)
  maps = jnp.where((jnp.arange(MAX_MAPS) < num_maps)[:, None], maps, 0.0)
  return maps, num_maps, map_probabilities(maps, num_maps), k_chaos


@functools.partial(
  jax.jit,
  static_argnames=(
    'num_categories',
    'min_maps',
    'max_maps',
    'fill_resolution',
    'fill_pad',
    'fill_points',
    'candidates_per_round',
    'fill_batch_size',
  ),
)
def _search(
  key,
  fill_threshold,
  max_rounds,
  *,
  num_categories,
  min_maps,
  max_maps,
  fill_resolution,
  fill_pad,
  fill_points,
  candidates_per_round,
  fill_batch_size,
):
  k = num_categories

  def measure(candidate):
    maps, num_maps, probs, k_chaos = candidate
    return measure_fill_rate(
      k_chaos,
      maps,
      probs,
      num_maps,
      resolution=fill_resolution,
      pad=fill_pad,
      num_points=fill_points,
    )

  def body(state):
    round_, count, cats = state
    ids = round_ * candidates_per_round + jnp.arange(candidates_per_round, dtype=jnp.int32)
    keys = jax.vmap(lambda g: jax.random.fold_in(key, g))(ids)
    candidates = jax.vmap(lambda kk: _draw_candidate(kk, min_maps, max_maps))(keys)
    fill = lax.map(measure, candidates, batch_size=fill_batch_size)
    accept = fill >= fill_threshold
    # Accepted candidates go to the next free slots in draw order; those past K are dropped.
    slot = jnp.where(accept, count + jnp.cumsum(accept) - 1, k)
    maps, num_maps, probs, _ = candidates
    cats = FractalCategories(
      maps=cats.maps.at[slot].set(maps, mode='drop'),
      num_maps=cats.num_maps.at[slot].set(num_maps, mode='drop'),
      probs=cats.probs.at[slot].set(probs, mode='drop'),
      fill_rate=cats.fill_rate.at[slot].set(fill, mode='drop'),
    )
    count = jnp.minimum(count + jnp.sum(accept, dtype=jnp.int32), k)
    return round_ + 1, count, cats

  def cond(state):
    round_, count, _ = state
    return (count < k) & (round_ < max_rounds)

  empty = FractalCategories(
    maps=jnp.zeros((k, MAX_MAPS, NUM_PARAMS), jnp.float32),
    num_maps=jnp.zeros((k,), jnp.int32),
    probs=jnp.zeros((k, MAX_MAPS), jnp.float32),
    fill_rate=jnp.zeros((k,), jnp.float32),
  )
  init = (jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), empty)
  rounds, count, cats = lax.while_loop(cond, body, init)
  return cats, count, rounds


def search_categories(
  key: jax.Array,
  num_categories: int,
  *,
  min_maps: int = 2,
  max_maps: int = MAX_MAPS,
  fill_threshold: float = 0.2,
  fill_resolution: int = 512,
  fill_pad: int = 6,
  fill_points: int = 100_000,
  candidates_per_round: int = 256,
  fill_batch_size: int = 64,
  max_candidates: int | None = None,
) -> FractalCategories:
  """FractalDB's category search as vectorised rejection sampling on device.

  Candidate g (g = 0, 1, ...) is a pure function of `fold_in(key, g)`: a number of maps uniform in
  [min_maps, max_maps], parameters U(-1, 1), probabilities |ad - bc| normalised, and its own
  chaos-game key. Candidates are measured `candidates_per_round` at a time and the first
  `num_categories` with fill rate >= `fill_threshold`, in g order, are returned, so the result
  depends on the key and the search settings, not on `candidates_per_round` or
  `fill_batch_size`. About 3% of candidates pass the default 0.2 threshold.

  Args:
    key: PRNG key of the search.
    num_categories: number of categories K to accept.
    min_maps: fewest affine maps in a system (FractalDB: 2).
    max_maps: most affine maps in a system (FractalDB: 7; at most 7).
    fill_threshold: minimum filling rate to accept a system (FractalDB: 0.2).
    fill_resolution: side of the image the filling rate is measured on (FractalDB: 512).
    fill_pad: margin of that image in pixels (FractalDB: 6).
    fill_points: chaos-game points of the measurement, start point included (FractalDB: 100k).
    candidates_per_round: candidates drawn and measured per round of the on-device loop.
    fill_batch_size: candidates measured at once (vmapped) within a round; the peak memory is
      about fill_batch_size * (fill_points * 40 + fill_resolution^2) bytes (~270 MB for the
      defaults).
    max_candidates: give up after this many candidates (default 2000 * num_categories).

  Returns:
    The accepted `FractalCategories` (K of them).

  Raises:
    ValueError: on bad arguments, or when fewer than K systems pass within `max_candidates`.
  """
  if not 1 <= min_maps <= max_maps <= MAX_MAPS:
    raise ValueError(f'need 1 <= min_maps <= max_maps <= {MAX_MAPS}, got {min_maps}, {max_maps}')
  if num_categories < 1:
    raise ValueError(f'num_categories must be >= 1, got {num_categories}')
  if fill_resolution <= 2 * fill_pad:
    raise ValueError(f'fill_pad={fill_pad} leaves no room in fill_resolution={fill_resolution}')
  if max_candidates is None:
    max_candidates = 2000 * num_categories
  max_rounds = max(1, math.ceil(max_candidates / candidates_per_round))
  cats, count, rounds = _search(
    _as_key(key),
    jnp.float32(fill_threshold),
    jnp.int32(max_rounds),
    num_categories=num_categories,
    min_maps=min_maps,
    max_maps=max_maps,
    fill_resolution=fill_resolution,
    fill_pad=fill_pad,
    fill_points=fill_points,
    candidates_per_round=candidates_per_round,
    fill_batch_size=min(fill_batch_size, candidates_per_round),
  )
  if int(count) < num_categories:
    raise ValueError(
      f'only {int(count)} of {num_categories} systems reached fill rate {fill_threshold} in '
      f'{int(rounds) * candidates_per_round} candidates; raise max_candidates or lower the threshold'
    )
  return cats


# ---------------------------------------------------------------------------------------------
# Instances: variants, patches, colours, flips.


def _variant_steps() -> np.ndarray:
  """(25, 6) multiples of s added to 1 in each variant (see `variant_factors`)."""
  rows = []
  for p in range(NUM_PARAMS):
    for step in (-2, -1, 0, 1, 2) if p == 0 else (-2, -1, 1, 2):
      row = np.zeros((NUM_PARAMS,), np.float32)
      row[p] = step
      rows.append(row)
  return np.stack(rows)


def variant_factors(variation_weight: float | jax.Array = 0.4) -> jax.Array:
  """The (25, 6) per-parameter scale factors of FractalDB's instance variants.

  Row order follows FractalDB's weight files (weights_<s>.csv): parameter a scaled by
  1-2s, 1-s, 1 (the identity, row `IDENTITY_VARIANT` = 2), 1+s, 1+2s; then b, c, d, e, f each
  scaled by 1-2s, 1-s, 1+s, 1+2s with the other parameters unchanged.

  Args:
    variation_weight: the step s (FractalDB default 0.1; 0.4 in the recommended setting); may be
      traced.

  Returns:
    (25, 6) float32 factors.
  """
  return 1.0 + jnp.asarray(variation_weight, jnp.float32) * jnp.asarray(_variant_steps())


IDENTITY_VARIANT = 2


def variant_params(categories: FractalCategories, variation_weight: float = 0.4) -> jax.Array:
  """The maps of the 25 instance variants of every category (probabilities are unchanged).

  Args:
    categories: K categories.
    variation_weight: the step s of the scale factors (see `variant_factors`).

  Returns:
    (K, 25, 7, 6) float32 maps; variant v scales every map's parameters by
    `variant_factors(s)[v]` (padding rows stay 0).
  """
  factors = variant_factors(variation_weight)
  return categories.maps[:, None, :, :] * factors[None, :, None, :]


def example_layout(index: jax.Array, num_categories: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Category, variant and flip of example `index` (works on arrays and ints).

  Example i has category i % K; its instance number j = i // K cycles over the 25 variants first
  and the 4 flips second: variant = j % 25, flip = (j // 25) % 4. With 25k examples over 100
  categories each category gets 250 instances: every (variant, flip) pair twice and flips 0 and 1
  of every variant a third time.

  Args:
    index: example index (int or int array).
    num_categories: K.

  Returns:
    (category, variant, flip), each like `index`. Flip 0: none, 1: vertical (top-bottom),
    2: horizontal (left-right), 3: both.
  """
  instance = index // num_categories
  return index % num_categories, instance % NUM_VARIANTS, (instance // NUM_VARIANTS) % NUM_FLIPS


def _hsv_colors() -> np.ndarray:
  """FractalDB's colour table (128, 3): hue 2 pi (i % 128) / 128, saturation and value 0.75.

  Reproduces FractalDB's integer truncations (np.uint8 of each component * 255) and its channel
  order: its tuples are written as (P, T, I), ... into RGB images, so that order is kept here.
  """
  colors = np.zeros((HUE_PERIOD, 3), np.float32)
  sat = val = 0.75
  for i in range(HUE_PERIOD):
    h6 = 6.0 * i / HUE_PERIOD  # (3 / pi) * H with H = 2 pi i / 128
    sector = math.floor(h6)
    frac = h6 - sector
    big = int(val * 255.0)
    p = int(val * (1.0 - sat) * 255.0)
    q = int(val * (1.0 - sat * frac) * 255.0)
    t = int(val * (1.0 - sat * (1.0 - frac)) * 255.0)
    colors[i] = [(p, t, big), (p, big, q), (t, big, p), (big, q, p), (big, p, t), (q, p, big)][
      sector
    ]
  return colors


HSV_COLORS = _hsv_colors()


@functools.partial(
  jax.jit,
  static_argnames=(
    'size',
    'color_mode',
  ),
)
def paint_patches(
  col: jax.Array, row: jax.Array, valid: jax.Array, masks: jax.Array, size: int, color_mode: str
) -> jax.Array:
  """Draws one 3x3 binary patch per point, in point order, FractalDB style.

  FractalDB pastes each point's patch over the image, black cells included, so the last point
  whose patch covers a pixel decides that pixel. A scatter-max of the point index finds that
  point in one vectorised pass; its mask bit at the pixel's offset and its colour give the pixel.
  Patches are centred on their point (FractalDB's top-left-at-(x+1, y+1) is a 2-pixel shift).

  Args:
    col: (N,) int32 point columns.
    row: (N,) int32 point rows.
    valid: (N,) bool, points to draw.
    masks: (N,) int32 in [1, 511]; cell (i, j) of a patch is bit 8 - (3 i + j), i.e. the mask's
      9-character binary string read row by row.
    size: side of the square image.
    color_mode: 'gray' (value 127, one channel) or 'color' (`HSV_COLORS[n % 128]` for point n).

  Returns:
    (size, size, C) float32 with integer values in [0, 255]; C = 1 for 'gray', 3 for 'color'.
  """
  n = col.shape[0]
  dy, dx = jnp.asarray(_PATCH_DY), jnp.asarray(_PATCH_DX)
  cell = (row[:, None] + dy) * size + (col[:, None] + dx)
  inside = (
    valid[:, None]
    & (row[:, None] + dy >= 0)
    & (row[:, None] + dy < size)
    & (col[:, None] + dx >= 0)
    & (col[:, None] + dx < size)
  )
  # Cells outside the image are clipped, as PIL's paste does.
  cell = jnp.where(inside, cell, size * size)
  order = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None], cell.shape)
  last = jnp.full((size * size,), -1, jnp.int32).at[cell.ravel()].max(order.ravel(), mode='drop')
  owner = jnp.maximum(last, 0)
  pixel = jnp.arange(size * size, dtype=jnp.int32)
  k = (pixel // size - row[owner] + 1) * 3 + (pixel % size - col[owner] + 1)
  on = (last >= 0) & (((masks[owner] >> (8 - jnp.clip(k, 0, 8))) & 1) == 1)
  if color_mode == 'color':
    value = jnp.asarray(HSV_COLORS)[owner % HUE_PERIOD]
  else:
    value = jnp.full((size * size, 1), GRAY_VALUE, jnp.float32)
  return jnp.where(on[:, None], value, 0.0).reshape(size, size, -1)


@functools.partial(
  jax.jit,
  static_argnames=(
    'image_size',
    'channels',
    'color_mode',
    'num_points',
    'render_scale',
    'render_pad',
  ),
)
def render_instance(
  key: jax.Array,
  maps: jax.Array,
  probs: jax.Array,
  num_maps: jax.Array,
  flip: jax.Array | int = 0,
  *,
  image_size: int = 32,
  channels: int = 3,
  color_mode: str = 'color',
  num_points: int | None = None,
  render_scale: int = 4,
  render_pad: int = 2,
) -> jax.Array:
  """One raw fractal image, values in [0, 1] (the per-example renderer of `render_images`).

  Args:
    key: PRNG key of this image (chaos game and patch masks).
    maps: (7, 6) maps of the system (a variant from `variant_params`, or a category's own).
    probs: (7,) map probabilities.
    num_maps: scalar int, the number of real maps.
    flip: 0 none, 1 vertical (top-bottom), 2 horizontal (left-right), 3 both; may be traced.
    image_size: output side.
    channels: 3, or 1 with color_mode 'gray'.
    color_mode: 'color' or 'gray'.
    num_points: chaos-game points (default `default_num_points(image_size)`).
    render_scale: internal resolution factor, area-downsampled back to image_size.
    render_pad: margin of the internal image in pixels.

  Returns:
    (image_size, image_size, channels) float32.
  """
  if num_points is None:
    num_points = default_num_points(image_size)
  size = image_size * render_scale
  k_chaos, k_patch = jax.random.split(key)
  points = chaos_game(k_chaos, maps, probs, num_maps, num_points)
  col, row, valid = points_to_pixels(points, size, render_pad)
  masks = jax.random.randint(k_patch, (num_points,), 1, 512, jnp.int32)
  image = paint_patches(col, row, valid, masks, size, color_mode)
  # Area downsampling: each output pixel is the mean of a render_scale^2 block.
  image = image.reshape(image_size, render_scale, image_size, render_scale, -1).mean(axis=(1, 3))
  if color_mode == 'gray' and channels > 1:
    image = jnp.broadcast_to(image, (image_size, image_size, channels))
  # FractalDB flips every image top-bottom (y up), then applies one of the 4 flips.
  flip_rows = (flip == 0) | (flip == 2)
  flip_cols = flip >= 2
  image = jnp.where(flip_rows, image[::-1], image)
  image = jnp.where(flip_cols, image[:, ::-1], image)
  return image / 255.0


def default_num_points(image_size: int) -> int:
  """Chaos-game points per image: 4 per output pixel (4096 at 32x32); see `render_images`."""
  return 4 * image_size * image_size


@functools.partial(
  jax.jit,
  static_argnames=(
    'num_examples',
    'image_size',
    'channels',
    'color_mode',
    'num_points',
    'render_scale',
    'render_pad',
    'batch_size',
  ),
)
def _render(
  key,
  categories,
  variation_weight,
  *,
  num_examples,
  image_size,
  channels,
  color_mode,
  num_points,
  render_scale,
  render_pad,
  batch_size,
):
  k = categories.maps.shape[0]
  variants = variant_params(categories, variation_weight)

  def one(index):
    category, variant, flip = example_layout(index, k)
    return render_instance(
      jax.random.fold_in(key, index),
      variants[category, variant],
      categories.probs[category],
      categories.num_maps[category],
      flip,
      image_size=image_size,
      channels=channels,
      color_mode=color_mode,
      num_points=num_points,
      render_scale=render_scale,
      render_pad=render_pad,
    )

  indices = jnp.arange(num_examples, dtype=jnp.int32)
  images = lax.map(one, indices, batch_size=batch_size)
  return images, indices % k


def render_images(
  key: jax.Array,
  categories: FractalCategories,
  *,
  num_examples: int,
  image_size: int = 32,
  channels: int = 3,
  color_mode: str = 'color',
  variation_weight: float = 0.4,
  num_points: int | None = None,
  render_scale: int = 4,
  render_pad: int = 2,
  normalize: bool = True,
  batch_size: int = 256,
) -> tuple[jax.Array, jax.Array]:
  """Renders `num_examples` fractal instances of `categories` on device.

  Example i has category i % K, variant and flip from `example_layout(i, K)` and all its
  randomness (chaos game and patches) from `fold_in(key, i)`, so its raw image does not depend on
  `num_examples` or `batch_size`. Each image is drawn FractalDB style at an internal resolution of
  size = image_size * render_scale: the chaos-game points min-max rescaled onto
  [render_pad, size - render_pad], each point a random non-empty 3x3 binary patch centred on it
  (the last patch over a pixel wins, as with FractalDB's paste), grey 127 or FractalDB's colour for
  the point's index (hue period 128, saturation and value 0.75); then area downsampling by
  render_scale, FractalDB's top-bottom coordinate flip (y up) and the example's flip.

  Why these defaults: FractalDB draws 100k points on 512x512. Drawn directly at 32x32, every 3x3
  patch spans ~10% of the image side and the attractor becomes a blob of patch texture. Rendering
  at 128x128 with 4 points per output pixel (4096 at 32x32) and averaging 4x4 blocks keeps the
  attractor's structure (dense and sparse parts, holes, thin arms), close to FractalDB's 512x512
  render area-downsampled to 32x32, for ~25x fewer points and 16x fewer pixels; the colours
  average less than from 512 (some colour speckle). `num_points=100_000, render_scale=16,
  render_pad=6` reproduces the 512x512 render itself (accelerator-sized work). The 2-pixel margin
  at 128 matches FractalDB's 6 of 512 (1.5 at 128) and keeps the patches inside the image.

  Like FractalDB, variants that make a system expanding (e.g. a or d scaled by 1 + 2s = 1.8) give
  near-empty images: the chaos game diverges and the min-max rescale collapses the bulk of the
  points (~4% of the images at s = 0.4).

  Args:
    key: PRNG key of the rendering (independent of the search key).
    categories: the K categories to render.
    num_examples: N, number of images.
    image_size: output side H = W (32 for RLGD, like CIFAR).
    channels: output channels (3, or 1 in 'gray' mode; 'gray' with 3 gives identical channels).
    color_mode: 'color' (FractalDB patch_color) or 'gray' (patch_gray, value 127).
    variation_weight: step s of the 25 parameter-scaling variants (0.4 recommended, 0.1 default
      in FractalDB).
    num_points: chaos-game points per image, start point included (default
      `default_num_points(image_size)`).
    render_scale: internal resolution factor (area-downsampled back to image_size).
    render_pad: margin of the internal image in pixels (>= 1 so patches stay inside it).
    normalize: if True, normalise to zero mean / unit std per channel over the whole rendered set
      (see `normalize_images`); if False return raw values in [0, 1].
    batch_size: images rendered at once (vmapped) inside `lax.map`; bounds the memory at about
      batch_size * (num_points * 100 + (image_size * render_scale)^2 * 40) bytes (~300 MB for
      the defaults); raise it on an accelerator.

  Returns:
    (images (N, H, W, channels) float32, category (N,) int32).
  """
  if color_mode not in ('color', 'gray'):
    raise ValueError(f"color_mode must be 'color' or 'gray', got {color_mode!r}")
  if color_mode == 'color' and channels != 3:
    raise ValueError(f"color_mode='color' needs channels=3, got {channels}")
  if channels not in (1, 3):
    raise ValueError(f'channels must be 1 or 3, got {channels}')
  if render_pad < 1 or image_size * render_scale <= 2 * render_pad + 2:
    raise ValueError(f'render_pad={render_pad} does not fit the internal image')
  if num_points is None:
    num_points = default_num_points(image_size)
  images, category = _render(
    _as_key(key),
    categories,
    jnp.float32(variation_weight),
    num_examples=num_examples,
    image_size=image_size,
    channels=channels,
    color_mode=color_mode,
    num_points=num_points,
    render_scale=render_scale,
    render_pad=render_pad,
    batch_size=min(batch_size, num_examples),
  )
  if normalize:
    images, _, _ = normalize_images(images)
  return images, category


@jax.jit
def normalize_images(images: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-channel standardisation over the whole set: (x - mean_c) / std_c.

  Args:
    images: (N, H, W, C) raw images.

  Returns:
    (normalised images, mean (C,), std (C,)); mean and std are taken over all N * H * W values of
    each channel (population std, floored at 1e-6 so a constant channel stays finite).
  """
  mean = jnp.mean(images, axis=(0, 1, 2))
  std = jnp.maximum(jnp.std(images, axis=(0, 1, 2)), 1e-6)
  return (images - mean) / std, mean, std


# ---------------------------------------------------------------------------------------------
# JSON (the workdir's fractal_categories.json) and the one-call convenience.


def categories_to_json(categories: FractalCategories) -> dict[str, Any]:
  """{'categories': [{'maps': [[a, b, c, d, e, f], ...], 'probs': [...], 'fill_rate': r}, ...]}.

  Only the real maps are written (no padding rows); floats are the float32 values, so a round
  trip through `categories_from_json` is exact. An unknown (NaN) fill rate is written as null.
  """
  maps = np.asarray(categories.maps, np.float32)
  num_maps = np.asarray(categories.num_maps)
  probs = np.asarray(categories.probs, np.float32)
  fill = np.asarray(categories.fill_rate, np.float32)
  out = []
  for k in range(maps.shape[0]):
    n = int(num_maps[k])
    out.append(
      {
        'maps': [[float(v) for v in row] for row in maps[k, :n]],
        'probs': [float(v) for v in probs[k, :n]],
        'fill_rate': None if np.isnan(fill[k]) else float(fill[k]),
      }
    )
  return {'categories': out}


def categories_from_json(data: dict[str, Any]) -> FractalCategories:
  """Inverse of `categories_to_json`.

  Args:
    data: the JSON dict; each category needs 'maps' (1 to 7 rows of 6 numbers); 'probs' defaults
      to |ad - bc| normalised and 'fill_rate' to NaN when missing or null.

  Returns:
    The categories as padded arrays.
  """
  entries: Sequence[dict[str, Any]] = data['categories']
  k = len(entries)
  maps = np.zeros((k, MAX_MAPS, NUM_PARAMS), np.float32)
  probs = np.zeros((k, MAX_MAPS), np.float32)
  num_maps = np.zeros((k,), np.int32)
  fill = np.full((k,), np.nan, np.float32)
  for i, entry in enumerate(entries):
    rows = np.asarray(entry['maps'], np.float32)
    if rows.ndim != 2 or rows.shape[1] != NUM_PARAMS or not 1 <= rows.shape[0] <= MAX_MAPS:
      raise ValueError(f'category {i}: maps must be 1..{MAX_MAPS} rows of 6, got {rows.shape}')
    n = rows.shape[0]
    maps[i, :n], num_maps[i] = rows, n
    if entry.get('probs') is not None:
      p = np.asarray(entry['probs'], np.float32)
      if p.shape != (n,):
        raise ValueError(f'category {i}: {n} maps but probs of shape {p.shape}')
      probs[i, :n] = p
    else:
      probs[i] = np.asarray(map_probabilities(jnp.asarray(maps[i]), n))
    if entry.get('fill_rate') is not None:
      fill[i] = entry['fill_rate']
  return FractalCategories(
    maps=jnp.asarray(maps),
    num_maps=jnp.asarray(num_maps),
    probs=jnp.asarray(probs),
    fill_rate=jnp.asarray(fill),
  )


def load_categories(path: str | os.PathLike) -> FractalCategories:
  """Reads a `categories_to_json` file (e.g. a search workdir's fractal_categories.json)."""
  return categories_from_json(files.read_json(path))


def _as_key(seed_or_key: int | jax.Array) -> jax.Array:
  if isinstance(seed_or_key, int | np.integer):
    return jax.random.PRNGKey(int(seed_or_key))
  return seed_or_key
