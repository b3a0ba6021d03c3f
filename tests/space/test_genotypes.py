"""Genotypes: the DARTS derivation rule, JSON validation and the published cell library."""

import json
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from unreal_nas_jax.space import derive, published
from unreal_nas_jax.space import genotypes as G
from unreal_nas_jax.space.primitives import NUM_OPS, PRIMITIVES, edge_list, node_edge_ranges

GENOTYPES_MD = Path(__file__).resolve().parents[2] / '..' / 'shared' / 'spec' / 'genotypes.md'
OP = {name: k for k, name in enumerate(PRIMITIVES)}
PUBLISHED = [
  'NASNet',
  'AmoebaNet',
  'DARTS_V1',
  'DARTS_V2',
  'PC_DARTS_cifar',
  'PC_DARTS_image',
  *[f'Cri1_CIFAR_{i}' for i in range(1, 11)],
  *[f'Cri2_CIFAR_{i}' for i in range(1, 11)],
]
ALIASES = {
  'DARTS': 'DARTS_V2',
  'PCDARTS': 'PC_DARTS_cifar',
  'Cri1_CIFAR_Best': 'Cri1_CIFAR_3',
  'Cri2_CIFAR_Best': 'Cri2_CIFAR_3',
  'Cri1_ImageNet_1': 'Cri1_CIFAR_1',
  'Cri1_ImageNet_2': 'Cri1_CIFAR_2',
  'Cri1_ImageNet_3': 'Cri1_CIFAR_3',
  'Cri2_ImageNet_1': 'Cri2_CIFAR_3',
  'Cri2_ImageNet_2': 'Cri2_CIFAR_4',
  'Cri2_ImageNet_3': 'Cri2_CIFAR_5',
}


def zeros(steps=4):
  return np.zeros((sum(2 + i for i in range(steps)), NUM_OPS))


def edge_index(node, source, steps=4):
  """Edge feeding intermediate node `node` (0-based) from state `source`."""
  return edge_list(steps).index((source, node))


def reference_parse(weights, steps=4):
  """The reference repository's `_parse`, transcribed loop for loop as an independent oracle."""
  gene, n, start = [], 2, 0
  none = PRIMITIVES.index('none')
  for i in range(steps):
    end = start + n
    w = weights[start:end].copy()
    edges = sorted(
      range(i + 2), key=lambda x: -max(w[x][k] for k in range(len(w[x])) if k != none)
    )[:2]
    for j in edges:
      k_best = None
      for k in range(len(w[j])):
        if k != none and (k_best is None or w[j][k] > w[j][k_best]):
          k_best = k
      gene.append((PRIMITIVES[k_best], j))
    start = end
    n += 1
  return tuple(gene)


def softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Derivation.
# ----------------------------------------------------------------------------------------------


def test_zero_alphas_take_two_lowest_edges_with_max_pool():
  g = derive.derive_genotype(zeros(), zeros())
  expected = (('max_pool_3x3', 0), ('max_pool_3x3', 1)) * 4
  assert g == G.Genotype(expected, (2, 3, 4, 5), expected, (2, 3, 4, 5))


def test_strength_order_within_node_and_op_argmax():
  a = zeros()
  # Node 2 (edges 5-8): source 2 strongest, then source 0; sources 1 and 3 stay at the 1/8 floor.
  a[edge_index(2, 2), OP['sep_conv_5x5']] = 3.0
  a[edge_index(2, 0), OP['dil_conv_3x3']] = 1.5
  # Node 0: the higher-index edge is stronger, so it must come first.
  a[edge_index(0, 1), OP['avg_pool_3x3']] = 2.0
  a[edge_index(0, 0), OP['skip_connect']] = 1.0
  g = derive.derive_genotype(a, zeros())
  assert g.normal[0:2] == (('avg_pool_3x3', 1), ('skip_connect', 0))
  assert g.normal[2:4] == (('max_pool_3x3', 0), ('max_pool_3x3', 1))
  assert g.normal[4:6] == (('sep_conv_5x5', 2), ('dil_conv_3x3', 0))
  assert g.normal[6:8] == (('max_pool_3x3', 0), ('max_pool_3x3', 1))


def test_none_weight_is_ignored_for_ranking_and_op():
  a = zeros()
  # Node 1 (edges 2-4): edge from source 0 is dominated by `none` (largest weight of any entry),
  # which would rank it first if `none` counted; its best real op is tiny, so it must drop out.
  a[edge_index(1, 0), OP['none']] = 6.0
  a[edge_index(1, 2), OP['sep_conv_3x3']] = 1.0
  # Node 0 keeps both edges regardless; the `none`-dominated one must still name a real op.
  a[edge_index(0, 0), OP['none']] = 8.0
  a[edge_index(0, 0), OP['dil_conv_5x5']] = 1.0
  g = derive.derive_genotype(a, zeros())
  # Node 0: edge from source 0 has non-none max e/(e^8+e+6), far below source 1's 1/8.
  assert g.normal[0:2] == (('max_pool_3x3', 1), ('dil_conv_5x5', 0))
  assert g.normal[2:4] == (('sep_conv_3x3', 2), ('max_pool_3x3', 1))


def test_exact_edge_ties_keep_lower_edge_index():
  a = zeros()
  # Node 3 (edges 9-13): three identical strongest edges from sources 3, 1 and 4.
  for source in (4, 1, 3):
    a[edge_index(3, source), OP['skip_connect']] = 2.0
  g = derive.derive_genotype(a, zeros())
  assert g.normal[6:8] == (('skip_connect', 1), ('skip_connect', 3))


def test_exact_op_ties_pick_lowest_op_index():
  a = zeros()
  a[edge_index(0, 0), [OP['dil_conv_3x3'], OP['sep_conv_5x5']]] = 2.0
  a[edge_index(0, 1), [OP['dil_conv_5x5'], OP['avg_pool_3x3'], OP['skip_connect']]] = 1.0
  g = derive.derive_genotype(a, zeros())
  assert g.normal[0:2] == (('sep_conv_5x5', 0), ('avg_pool_3x3', 1))


def test_reduce_cell_is_derived_independently_of_normal():
  normal, reduce = zeros(), zeros()
  normal[edge_index(1, 2), OP['sep_conv_3x3']] = 2.0
  reduce[edge_index(1, 1), OP['dil_conv_5x5']] = 2.0
  reduce[edge_index(3, 4), OP['avg_pool_3x3']] = 2.0
  g = derive.derive_genotype(normal, reduce)
  assert g.normal[2:4] == (('sep_conv_3x3', 2), ('max_pool_3x3', 0))
  assert g.reduce[2:4] == (('dil_conv_5x5', 1), ('max_pool_3x3', 0))
  assert g.reduce[6:8] == (('avg_pool_3x3', 4), ('max_pool_3x3', 0))
  swapped = derive.derive_genotype(reduce, normal)
  assert (swapped.normal, swapped.reduce) == (g.reduce, g.normal)


def test_pc_darts_edge_weights_change_ranking():
  a = zeros()
  # Node 1 (edges 2-4): without betas source 0 (0.51) beats source 2 (0.28) beats source 1 (0.125).
  a[edge_index(1, 0), OP['sep_conv_3x3']] = 2.0
  a[edge_index(1, 2), OP['dil_conv_5x5']] = 1.0
  plain = derive.derive_genotype(a, zeros())
  assert plain.normal[2:4] == (('sep_conv_3x3', 0), ('dil_conv_5x5', 2))

  def betas(node1):
    b = np.concatenate([np.full(e - s, 1.0 / (e - s)) for s, e in node_edge_ranges(4)])
    b[2:5] = node1
    return b

  # Reordered: 0.51 * 0.1 < 0.28 * 0.6.
  g = derive.derive_genotype(a, zeros(), edge_weights_normal=betas([0.1, 0.3, 0.6]))
  assert g.normal[2:4] == (('dil_conv_5x5', 2), ('sep_conv_3x3', 0))
  # A different edge kept: the 1/8 edge from source 1 wins with beta 0.9.
  g = derive.derive_genotype(a, zeros(), edge_weights_normal=betas([0.05, 0.9, 0.05]))
  assert g.normal[2:4] == (('max_pool_3x3', 1), ('sep_conv_3x3', 0))
  # Betas of one cell do not touch the other cell.
  assert g.reduce == plain.reduce
  g = derive.derive_genotype(a, zeros(), edge_weights_reduce=betas([0.05, 0.9, 0.05]))
  assert g.normal == plain.normal


@pytest.mark.parametrize('seed', range(5))
def test_matches_reference_parse_on_random_alphas(seed):
  rng = np.random.default_rng(seed)
  # Coarse integer logits create many exact ties, the cases where the rule is easiest to get wrong.
  normal = rng.integers(-2, 3, size=(14, NUM_OPS)).astype(np.float64)
  reduce = rng.normal(size=(14, NUM_OPS))
  beta = np.concatenate([softmax(rng.normal(size=e - s)) for s, e in node_edge_ranges(4)])
  g = derive.derive_genotype(normal, reduce, edge_weights_reduce=beta)
  assert g.normal == reference_parse(softmax(normal))
  assert g.reduce == reference_parse(softmax(reduce) * beta[:, None])


def _searchable(g):
  """A cell the DARTS rule can produce: 4 nodes, searched ops, two distinct sources per node."""
  cells = (g.normal, g.reduce)
  return all(
    len(genes) == 8
    and all(op in PRIMITIVES for op, _ in genes)
    and all(genes[k][1] != genes[k + 1][1] for k in range(0, 8, 2))
    for genes in cells
  )


@pytest.mark.parametrize('name', [n for n in PUBLISHED if _searchable(published.GENOTYPES[n])])
def test_derivation_inverts_published_genotypes(name):
  """Alphas that encode a published cell (first listed input strongest) derive it back exactly."""
  g = published.get_genotype(name)

  def encode(genes):
    a = zeros()
    for k, (op, source) in enumerate(genes):
      a[edge_index(k // 2, source), OP[op]] = 3.0 - k % 2
    return a

  assert derive.derive_genotype(encode(g.normal), jnp.asarray(encode(g.reduce))) == g


def test_steps_and_multiplier_set_concat_and_jax_input():
  g = derive.derive_genotype(
    jnp.zeros((5, NUM_OPS)), jnp.zeros((5, NUM_OPS)), steps=2, multiplier=2
  )
  assert g.normal_concat == g.reduce_concat == (2, 3)
  assert len(g.normal) == len(g.reduce) == 4
  assert derive.derive_genotype(zeros(), zeros(), multiplier=3).normal_concat == (3, 4, 5)


def test_derive_cell_on_softmaxed_weights():
  w = softmax(zeros())
  w[edge_index(0, 1), OP['sep_conv_3x3']] = 0.9
  assert derive.derive_cell(w, 4)[0] == ('sep_conv_3x3', 1)


@pytest.mark.parametrize(
  'kwargs, match',
  [
    ({'alphas_normal': np.zeros((14, 7))}, 'alphas_normal has shape'),
    ({'alphas_reduce': np.zeros((9, NUM_OPS))}, 'alphas_reduce has shape'),
    ({'alphas_normal': np.full((14, NUM_OPS), np.nan)}, 'alphas_normal contains NaN'),
    ({'edge_weights_normal': np.ones(13)}, 'edge_weights_normal has shape'),
    ({'edge_weights_reduce': np.ones((14, 1))}, 'edge_weights_reduce has shape'),
    ({'multiplier': 5}, 'multiplier'),
  ],
)
def test_derive_rejects_bad_inputs(kwargs, match):
  args = {'alphas_normal': zeros(), 'alphas_reduce': zeros(), **kwargs}
  with pytest.raises(ValueError, match=match):
    derive.derive_genotype(args.pop('alphas_normal'), args.pop('alphas_reduce'), **args)


# ----------------------------------------------------------------------------------------------
# JSON.
# ----------------------------------------------------------------------------------------------


def test_to_json_layout():
  d = G.genotype_to_json(published.DARTS_V2)
  assert list(d) == ['normal', 'normal_concat', 'reduce', 'reduce_concat']
  assert d['normal'][:2] == [['sep_conv_3x3', 0], ['sep_conv_3x3', 1]]
  assert d['normal'][-1] == ['dil_conv_3x3', 2]
  assert d['normal_concat'] == [2, 3, 4, 5]
  assert all(type(x) is list for x in d['reduce'])


@pytest.mark.parametrize('name', published.genotype_names())
def test_json_round_trip(name):
  g = published.get_genotype(name)
  assert G.genotype_from_json(G.genotype_to_json(g)) == g
  assert G.genotype_from_json(json.loads(json.dumps(G.genotype_to_json(g)))) == g


def test_save_load_round_trip(tmp_path):
  path = tmp_path / 'genotype.json'
  G.save_genotype(path, published.AmoebaNet)
  assert G.load_genotype(path) == published.AmoebaNet
  assert G.load_genotype(str(path)) == published.AmoebaNet


def _mutated(**changes):
  d = G.genotype_to_json(published.DARTS_V2)
  d.update(changes)
  return d


def _without(field):
  d = G.genotype_to_json(published.DARTS_V2)
  del d[field]
  return d


def _replace_gene(k, gene, field='normal'):
  d = G.genotype_to_json(published.DARTS_V2)
  d[field][k] = gene
  return d


@pytest.mark.parametrize(
  'data, fragments',
  [
    (_without('reduce'), ["'reduce'", 'missing']),
    (_without('normal_concat'), ["'normal_concat'", 'missing']),
    (_mutated(extra=1), ["'extra'", 'unknown field']),
    (_replace_gene(3, ['sep_conv_9x9', 1]), ["'normal[3]'", "'sep_conv_9x9'", 'sep_conv_7x7']),
    (_replace_gene(0, ['none', 0], 'reduce'), ["'reduce[0]'", "unknown op 'none'"]),
    (_replace_gene(2, 'sep_conv_3x3@0'), ["'normal[2]'", '[op, source] pair']),
    (_replace_gene(2, ['sep_conv_3x3', 0, 1]), ["'normal[2]'", '[op, source] pair']),
    (_replace_gene(5, ['sep_conv_3x3', 4]), ["'normal[5]'", 'source 4', 'node 4', '[0, 3]']),
    (_replace_gene(0, ['sep_conv_3x3', -1]), ["'normal[0]'", 'out of range']),
    (_replace_gene(1, ['sep_conv_3x3', '1']), ["'normal[1]'", 'integer']),
    (_replace_gene(1, ['sep_conv_3x3', True]), ["'normal[1]'", 'integer']),
    (_mutated(normal=G.genotype_to_json(published.DARTS_V2)['normal'][:7]), ["'normal'", 'even']),
    (_mutated(normal=[]), ["'normal'", 'empty']),
    (_mutated(reduce='oops'), ["'reduce'", 'list']),
    (_mutated(normal_concat=[2, 3, 4, 6]), ["'normal_concat[3]'", 'out of range', '2..5']),
    (_mutated(reduce_concat=[1, 2]), ["'reduce_concat[0]'", 'out of range']),
    (_mutated(reduce_concat=[2, 2]), ["'reduce_concat'", 'duplicate']),
    (_mutated(normal_concat=[]), ["'normal_concat'", 'non-empty']),
    (_mutated(normal_concat=[2.0]), ["'normal_concat[0]'", 'integer']),
  ],
)
def test_from_json_rejects_malformed(data, fragments):
  with pytest.raises(ValueError) as info:
    G.genotype_from_json(data)
  msg = str(info.value)
  assert '\n' not in msg
  for fragment in fragments:
    assert fragment in msg


def test_from_json_rejects_non_object():
  with pytest.raises(ValueError, match='JSON object'):
    G.genotype_from_json([1, 2])


def test_load_errors_name_path_and_field(tmp_path):
  bad = tmp_path / 'bad.json'
  bad.write_text(json.dumps(_replace_gene(4, ['conv_9x9', 0])))
  with pytest.raises(ValueError, match=r"bad\.json: genotype field 'normal\[4\]'"):
    G.load_genotype(bad)
  broken = tmp_path / 'broken.json'
  broken.write_text('{"normal": [')
  with pytest.raises(ValueError, match=r'broken\.json: not valid JSON'):
    G.load_genotype(broken)


# ----------------------------------------------------------------------------------------------
# Library and inspection.
# ----------------------------------------------------------------------------------------------


def test_names_and_aliases():
  assert published.genotype_names() == PUBLISHED + list(ALIASES)
  for alias, target in ALIASES.items():
    assert published.get_genotype(alias) == published.get_genotype(target)
    assert getattr(published, alias) is getattr(published, target)


def test_unknown_name_lists_known_names():
  with pytest.raises(ValueError) as info:
    published.get_genotype('DARTS_V3')
  msg = str(info.value)
  assert '\n' not in msg and "'DARTS_V3'" in msg
  for name in published.genotype_names():
    assert name in msg


def test_published_cells_are_valid_and_distinct():
  for name in PUBLISHED:
    assert G.validate_genotype(published.GENOTYPES[name]) == published.GENOTYPES[name]
  assert len({published.GENOTYPES[n] for n in PUBLISHED}) == len(PUBLISHED)


def test_count_op():
  assert G.count_op(published.DARTS_V2) == 2
  assert G.count_op(published.DARTS_V2, 'skip_connect', 'reduce') == 3
  assert G.count_op(published.DARTS_V2, 'max_pool_3x3', 'reduce') == 5
  assert G.count_op(published.DARTS_V1, cell='normal') == 3
  assert G.count_op(published.AmoebaNet, 'sep_conv_7x7', 'reduce') == 2
  assert G.count_op(published.PC_DARTS_cifar, 'skip_connect', 'reduce') == 0
  with pytest.raises(ValueError, match='cell'):
    G.count_op(published.DARTS_V2, cell='both')


def test_format_genotype():
  assert G.format_genotype(published.DARTS_V2) == (
    'normal: sep_conv_3x3@0 sep_conv_3x3@1 | sep_conv_3x3@0 sep_conv_3x3@1 | '
    'sep_conv_3x3@1 skip_connect@0 | skip_connect@0 dil_conv_3x3@2 (concat [2, 3, 4, 5])\n'
    'reduce: max_pool_3x3@0 max_pool_3x3@1 | skip_connect@2 max_pool_3x3@1 | '
    'max_pool_3x3@0 skip_connect@2 | skip_connect@2 max_pool_3x3@1 (concat [2, 3, 4, 5])'
  )
  assert G.format_genotype(published.NASNet).endswith('(concat [4, 5, 6])')


def _parse_md_cell(text):
  m = re.fullmatch(r'(.*?)(?: \(concat \[([\d, ]+)\]\))?', text.strip())
  genes = tuple(
    (op, int(src)) for op, src in (t.split('@') for t in m[1].replace('|', ' ').split())
  )
  concat = tuple(int(x) for x in m[2].split(',')) if m[2] else (2, 3, 4, 5)
  return genes, concat


@pytest.mark.skipif(not GENOTYPES_MD.exists(), reason='shared/spec/genotypes.md not beside repo')
def test_published_genotypes_match_spec_file():
  text = GENOTYPES_MD.read_text()
  parsed = {}
  for m in re.finditer(r'^- `(\w+)` — N: (.*); R: (.*)$', text, flags=re.M):
    normal, normal_concat = _parse_md_cell(m[2])
    reduce, reduce_concat = _parse_md_cell(m[3])
    parsed[m[1]] = G.Genotype(normal, normal_concat, reduce, reduce_concat)
  assert list(parsed) == PUBLISHED
  for name, g in parsed.items():
    assert published.GENOTYPES[name] == g, name
  aliases = dict(re.findall(r'`(\w+) = (\w+)`', text))
  assert aliases == {k: v for k, v in ALIASES.items() if 'ImageNet' not in k}
