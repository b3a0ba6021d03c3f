"""Evaluation networks: published parameter counts, every published op, drop path, auxiliary head."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unreal_nas_jax.models import eval_network as en
from unreal_nas_jax.space import genotypes, published

RNGS = {'params': jax.random.PRNGKey(0), 'drop_path': jax.random.PRNGKey(1)}


def _shapes(model, image_shape):
  images = jnp.zeros((2, *image_shape), jnp.float32)
  return jax.eval_shape(lambda: model.init(RNGS, images, 0.2, train=True))


# Parameters (auxiliary head excluded) of every published cell's standard networks, (cifar10,
# cifar100, imagenet), as the networks had them before identical cells were scanned: made with
# a throwaway script that ran `jax.eval_shape(model.init)` and `count_params` on
# `standard_network` at commit fa28592^ (whose cells were all unrolled). DARTS_V2's are the
# reference's published 3,349,342 and 4,718,752.
PUBLISHED_PARAMS = {
  'NASNet': (3_830_950, 3_895_840, 5_564_320),
  'AmoebaNet': (3_145_078, 3_184_048, 4_627_360),
  'DARTS_V1': (3_169_414, 3_221_344, 4_510_432),
  'DARTS_V2': (3_349_342, 3_401_272, 4_718_752),
  'PC_DARTS_cifar': (3_634_678, 3_686_608, 5_270_560),
  'PC_DARTS_image': (3_721_510, 3_773_440, 5_342_464),
  'Cri1_CIFAR_1': (3_750_238, 3_802_168, 5_247_040),
  'Cri1_CIFAR_2': (3_729_502, 3_781_432, 5_230_144),
  'Cri1_CIFAR_3': (3_795_166, 3_847_096, 5_285_440),
  'Cri1_CIFAR_4': (3_320_614, 3_372_544, 4_747_360),
  'Cri1_CIFAR_5': (3_449_782, 3_501_712, 4_910_368),
  'Cri1_CIFAR_6': (3_465_334, 3_517_264, 4_897_216),
  'Cri1_CIFAR_7': (3_830_374, 3_882_304, 5_343_904),
  'Cri1_CIFAR_8': (3_662_110, 3_714_040, 5_195_680),
  'Cri1_CIFAR_9': (3_975_094, 4_027_024, 5_493_760),
  'Cri1_CIFAR_10': (3_606_814, 3_658_744, 5_143_456),
  'Cri2_CIFAR_1': (4_143_574, 4_195_504, 5_742_976),
  'Cri2_CIFAR_2': (3_877_030, 3_928_960, 5_361_472),
  'Cri2_CIFAR_3': (4_094_110, 4_146_040, 5_697_664),
  'Cri2_CIFAR_4': (3_909_430, 3_961_360, 5_438_464),
  'Cri2_CIFAR_5': (3_687_166, 3_739_096, 5_196_064),
  'Cri2_CIFAR_6': (3_948_094, 4_000_024, 5_501_536),
  'Cri2_CIFAR_7': (3_690_190, 3_742_120, 5_143_936),
  'Cri2_CIFAR_8': (4_328_254, 4_380_184, 5_856_928),
  'Cri2_CIFAR_9': (3_734_686, 3_786_616, 5_260_192),
  'Cri2_CIFAR_10': (3_676_150, 3_728_080, 5_159_104),
  'DARTS': (3_349_342, 3_401_272, 4_718_752),
  'PCDARTS': (3_634_678, 3_686_608, 5_270_560),
  'Cri1_CIFAR_Best': (3_795_166, 3_847_096, 5_285_440),
  'Cri2_CIFAR_Best': (4_094_110, 4_146_040, 5_697_664),
  'Cri1_ImageNet_1': (3_750_238, 3_802_168, 5_247_040),
  'Cri1_ImageNet_2': (3_729_502, 3_781_432, 5_230_144),
  'Cri1_ImageNet_3': (3_795_166, 3_847_096, 5_285_440),
  'Cri2_ImageNet_1': (4_094_110, 4_146_040, 5_697_664),
  'Cri2_ImageNet_2': (3_909_430, 3_961_360, 5_438_464),
  'Cri2_ImageNet_3': (3_687_166, 3_739_096, 5_196_064),
}


def _same_genotype_names():
  groups = {}
  for name in published.genotype_names():
    groups.setdefault(published.get_genotype(name), []).append(name)
  return list(groups.values())


def test_the_parameter_table_names_every_published_cell():
  assert list(PUBLISHED_PARAMS) == published.genotype_names()


# Names of one genotype (aliases such as DARTS = DARTS_V2) are built once. Tracing a standard
# network takes about a second, so each genotype traces two: CIFAR-10 and ImageNet; the CIFAR-100
# network is the CIFAR-10 one with a 100-way classifier (num_classes reaches nothing else).
@pytest.mark.parametrize('names', _same_genotype_names(), ids=lambda names: names[0])
def test_every_published_cell_builds_with_its_parameter_count(names):
  def params(dataset):
    model = en.standard_network(dataset, published.get_genotype(names[0]))
    images = jnp.zeros((1, *en.DATASETS[dataset].image_shape), jnp.float32)
    return jax.eval_shape(lambda: model.init(RNGS, images, train=False))['params']

  cifar = params('cifar10')
  features = cifar['classifier']['kernel'].shape[0]
  cifar100 = en.count_params(cifar) + (features + 1) * (100 - 10)
  counts = (en.count_params(cifar), cifar100, en.count_params(params('imagenet')))
  for name in names:
    assert counts == PUBLISHED_PARAMS[name], name


def test_auxiliary_head_is_excluded_from_the_count_but_present():
  darts_v2 = published.get_genotype('DARTS_V2')
  params = _shapes(en.NetworkCIFAR(darts_v2, 10, 36, 20), (32, 32, 3))['params']
  aux = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params[en.AUXILIARY]))
  # 1x1 conv C_aux -> 128, BN 128, 2x2 conv 128 -> 768, BN 768, dense 768 -> 10.
  c_aux = 4 * 4 * 36
  assert aux == c_aux * 128 + 2 * 128 + 4 * 128 * 768 + 2 * 768 + 768 * 10 + 10
  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  assert en.count_params(params) == total - aux
  # No auxiliary head at all when it is switched off.
  no_aux = _shapes(en.NetworkCIFAR(darts_v2, 10, 36, 20, auxiliary=False), (32, 32, 3))['params']
  assert en.AUXILIARY not in no_aux and en.count_params(no_aux) == 3_349_342


def test_darts_v2_cifar_madds_is_the_published_528m():
  darts_v2 = published.get_genotype('DARTS_V2')
  madds = en.count_madds(en.NetworkCIFAR(darts_v2, 10, 36, 20), (32, 32, 3))
  assert madds == pytest.approx(528e6, rel=0.002)


@pytest.mark.parametrize('name', ['NASNet', 'AmoebaNet', 'DARTS_V1', 'PC_DARTS_image'])
def test_every_published_cell_runs_with_its_ops(name):
  model = en.NetworkCIFAR(published.get_genotype(name), num_classes=7, channels=8, layers=5)
  images = jax.random.normal(jax.random.PRNGKey(2), (4, 32, 32, 3))
  variables = model.init(RNGS, images, 0.1, train=True)
  (logits, aux), _ = model.apply(
    variables,
    images,
    0.1,
    train=True,
    rngs={'drop_path': RNGS['drop_path']},
    mutable=['batch_stats'],
  )
  assert logits.shape == (4, 7) and aux.shape == (4, 7)
  assert np.isfinite(logits).all() and np.isfinite(aux).all()


def test_too_small_images_for_the_auxiliary_head_are_a_clear_error():
  model = en.NetworkCIFAR(published.get_genotype('DARTS_V2'), num_classes=3, channels=4, layers=3)
  with pytest.raises(
    ValueError, match='auxiliary head needs a feature map of at least 5x5, got 4x4'
  ):
    model.init(RNGS, jnp.zeros((2, 16, 16, 3)), 0.0, train=True)


def test_auxiliary_logits_only_in_training():
  model = en.NetworkImageNet(
    published.get_genotype('DARTS_V2'), num_classes=5, channels=8, layers=5
  )
  images = jax.random.normal(jax.random.PRNGKey(3), (2, 224, 224, 3))
  variables = model.init(RNGS, images, 0.0, train=True)
  (logits, aux), _ = model.apply(
    variables,
    images,
    0.0,
    train=True,
    rngs={'drop_path': RNGS['drop_path']},
    mutable=['batch_stats'],
  )
  assert aux.shape == (2, 5)
  eval_logits = model.apply(variables, images, train=False)
  assert eval_logits.shape == (2, 5) and not isinstance(eval_logits, tuple)


def test_drop_path_keeps_the_expectation_and_drops_whole_examples():
  x = jnp.ones((20_000, 2, 2, 3))
  y = np.asarray(en.drop_path(x, jnp.float32(0.3), jax.random.PRNGKey(0)))
  per_example = y.reshape(20_000, -1)
  # Every example is either dropped whole or kept whole and scaled by 1/keep.
  assert set(np.unique(per_example)) <= {0.0, np.float32(1 / 0.7)}
  assert (per_example.min(axis=1) == per_example.max(axis=1)).all()
  assert abs((per_example[:, 0] == 0).mean() - 0.3) < 0.015
  assert abs(per_example.mean() - 1.0) < 0.02
  # Probability 0 leaves the values as they are, bit for bit.
  z = jax.random.normal(jax.random.PRNGKey(1), (8, 4, 4, 3))
  np.testing.assert_array_equal(en.drop_path(z, jnp.float32(0.0), jax.random.PRNGKey(2)), z)


def _cell_output(genes, drop_prob, key=1):
  genotype = genotypes.Genotype(genes, (2, 3, 4, 5), genes, (2, 3, 4, 5))
  cell = en.EvalCell(genotype, features=4, reduction=False, reduction_prev=False)
  s = jax.random.normal(jax.random.PRNGKey(0), (6, 8, 8, 4))
  variables = cell.init(RNGS, s, s, 0.0, True)
  out, _ = cell.apply(
    variables, s, s, drop_prob, True, rngs={'drop_path': jax.random.PRNGKey(key)}, mutable=True
  )
  return np.asarray(out)


def test_drop_path_never_touches_identity_ops():
  skips = tuple(('skip_connect', i % 2) for i in range(8))
  np.testing.assert_array_equal(_cell_output(skips, 0.6), _cell_output(skips, 0.0))
  convs = tuple(('sep_conv_3x3', i % 2) for i in range(8))
  dropped = _cell_output(convs, 0.6)
  assert not np.allclose(dropped, _cell_output(convs, 0.0))
  # Node 2 = op0(s0) + op1(s1): where both paths of an example drop, that node is exactly zero.
  node2 = dropped[..., :4].reshape(6, -1)
  zeroed = np.abs(node2).max(axis=1) == 0
  assert zeroed.any() and not zeroed.all(), zeroed


def _unrolled_variables(variables, layers):
  """Scanned-cell variables laid out as the unrolled network's `cell_<i>` entries."""
  out = {}
  for collection, tree in variables.items():
    out[collection] = {}
    for name, value in tree.items():
      if name.startswith('cells_'):
        start, end = map(int, name.split('_')[1:])
        for k, i in enumerate(range(start, end + 1)):
          out[collection][f'cell_{i}'] = jax.tree.map(lambda x, k=k: x[k], value['cell'])
      else:
        out[collection][name] = value
  return out


def test_cell_runs_hold_only_cells_whose_inputs_and_output_have_one_shape():
  darts_v2 = published.get_genotype('DARTS_V2')
  assert en.cell_runs(darts_v2, 20, 13) == [
    (0, 1), (1, 2), (2, 6), (6, 7), (7, 8), (8, 13), (13, 14), (14, 15), (15, 20)
  ]  # fmt: skip
  # NASNet's normal cell concatenates 5 nodes and its reduction cell 3: the cell two after a
  # reduction reads a narrower s0 than its output, so it stays outside the run.
  assert en.cell_runs(published.get_genotype('NASNet'), 20, 13) == [
    (0, 1), (1, 2), (2, 6), (6, 7), (7, 8), (8, 9), (9, 13), (13, 14), (14, 15), (15, 16),
    (16, 20),
  ]  # fmt: skip


@pytest.mark.parametrize(
  'network,layers,size', [(en.NetworkCIFAR, 11, 32), (en.NetworkImageNet, 10, 224)]
)
def test_scanned_cells_equal_the_unrolled_network(network, layers, size):
  """Identical cells share one traced body (nn.scan): the same function, fewer traced cells."""
  darts_v2 = published.get_genotype('DARTS_V2')
  scanned = network(darts_v2, num_classes=5, channels=8, layers=layers)
  unrolled = scanned.clone(scan_cells=False)
  images = jax.random.normal(jax.random.PRNGKey(3), (2, size, size, 3))
  variables = jax.jit(lambda: scanned.init(RNGS, images, 0.0, train=True))()
  assert any(k.startswith('cells_') for k in variables['params'])
  flat = _unrolled_variables(variables, layers)
  expected = jax.eval_shape(lambda: unrolled.init(RNGS, images, 0.0, train=True))
  assert jax.tree.structure(flat) == jax.tree.structure(expected)

  def run(model, v):
    # drop_prob 0: drop path keeps everything, so training mode is deterministic too.
    (logits, aux), updates = model.apply(
      v, images, 0.0, train=True, rngs={'drop_path': RNGS['drop_path']}, mutable=['batch_stats']
    )
    return logits, aux, updates['batch_stats'], model.apply(v, images, train=False)

  got, want = jax.jit(lambda: run(scanned, variables))(), jax.jit(lambda: run(unrolled, flat))()
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)
  stats = _unrolled_variables({'batch_stats': got[2]}, layers)['batch_stats']
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(want[2]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[3], want[3], rtol=1e-5, atol=1e-5)
