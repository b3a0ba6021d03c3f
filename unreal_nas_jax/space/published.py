"""Published cells by name (reference genotypes.md): DARTS, PC-DARTS, SGAS, NASNet, AmoebaNet.

Transcribed verbatim: the order of a node's two inputs matters for exact round trips, so it is
not sorted.
"""

from __future__ import annotations

from unreal_nas_jax.space.genotypes import Genotype

# fmt: off
NASNet = Genotype(
  normal=(
    ('sep_conv_5x5', 1), ('sep_conv_3x3', 0),
    ('sep_conv_5x5', 0), ('sep_conv_3x3', 0),
    ('avg_pool_3x3', 1), ('skip_connect', 0),
    ('avg_pool_3x3', 0), ('avg_pool_3x3', 0),
    ('sep_conv_3x3', 1), ('skip_connect', 1),
  ),
  normal_concat=(2, 3, 4, 5, 6),
  reduce=(
    ('sep_conv_5x5', 1), ('sep_conv_7x7', 0),
    ('max_pool_3x3', 1), ('sep_conv_7x7', 0),
    ('avg_pool_3x3', 1), ('sep_conv_5x5', 0),
    ('skip_connect', 3), ('avg_pool_3x3', 2),
    ('sep_conv_3x3', 2), ('max_pool_3x3', 1),
  ),
  reduce_concat=(4, 5, 6),
)
AmoebaNet = Genotype(
  normal=(
    ('avg_pool_3x3', 0), ('max_pool_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 2),
    ('sep_conv_3x3', 0), ('avg_pool_3x3', 3),
    ('sep_conv_3x3', 1), ('skip_connect', 1),
    ('skip_connect', 0), ('avg_pool_3x3', 1),
  ),
  normal_concat=(4, 5, 6),
  reduce=(
    ('avg_pool_3x3', 0), ('sep_conv_3x3', 1),
    ('max_pool_3x3', 0), ('sep_conv_7x7', 2),
    ('sep_conv_7x7', 0), ('avg_pool_3x3', 1),
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('conv_7x1_1x7', 0), ('sep_conv_3x3', 5),
  ),
  reduce_concat=(3, 4, 6),
)
DARTS_V1 = Genotype(
  normal=(
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 0),
    ('skip_connect', 0), ('sep_conv_3x3', 1),
    ('skip_connect', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('skip_connect', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('skip_connect', 2), ('max_pool_3x3', 0),
    ('max_pool_3x3', 0), ('skip_connect', 2),
    ('skip_connect', 2), ('avg_pool_3x3', 0),
  ),
  reduce_concat=(2, 3, 4, 5),
)
DARTS_V2 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 1), ('skip_connect', 0),
    ('skip_connect', 0), ('dil_conv_3x3', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('skip_connect', 2), ('max_pool_3x3', 1),
    ('max_pool_3x3', 0), ('skip_connect', 2),
    ('skip_connect', 2), ('max_pool_3x3', 1),
  ),
  reduce_concat=(2, 3, 4, 5),
)
PC_DARTS_cifar = Genotype(
  normal=(
    ('sep_conv_3x3', 1), ('skip_connect', 0),
    ('sep_conv_3x3', 0), ('dil_conv_3x3', 1),
    ('sep_conv_5x5', 0), ('sep_conv_3x3', 1),
    ('avg_pool_3x3', 0), ('dil_conv_3x3', 1),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_5x5', 1), ('max_pool_3x3', 0),
    ('sep_conv_5x5', 1), ('sep_conv_5x5', 2),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 3),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
PC_DARTS_image = Genotype(
  normal=(
    ('skip_connect', 1), ('sep_conv_3x3', 0),
    ('sep_conv_3x3', 0), ('skip_connect', 1),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 3),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 4),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_3x3', 0), ('skip_connect', 1),
    ('dil_conv_5x5', 2), ('max_pool_3x3', 1),
    ('sep_conv_3x3', 2), ('sep_conv_3x3', 1),
    ('sep_conv_5x5', 0), ('sep_conv_3x3', 3),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_1 = Genotype(
  normal=(
    ('skip_connect', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 2),
    ('dil_conv_5x5', 2), ('dil_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('dil_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 1), ('skip_connect', 2),
    ('skip_connect', 2), ('skip_connect', 3),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_2 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('dil_conv_3x3', 1),
    ('skip_connect', 0), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 2),
    ('sep_conv_3x3', 2), ('sep_conv_5x5', 4),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('sep_conv_3x3', 1),
    ('max_pool_3x3', 0), ('skip_connect', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 1), ('dil_conv_5x5', 3),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_3 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('dil_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_5x5', 1), ('sep_conv_5x5', 3),
    ('skip_connect', 0), ('dil_conv_5x5', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('dil_conv_5x5', 1),
    ('sep_conv_3x3', 0), ('skip_connect', 2),
    ('sep_conv_3x3', 1), ('skip_connect', 2),
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_4 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('skip_connect', 0), ('skip_connect', 2),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 2),
    ('dil_conv_3x3', 2), ('dil_conv_5x5', 4),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('sep_conv_5x5', 1),
    ('avg_pool_3x3', 0), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 0), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 0), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_5 = Genotype(
  normal=(
    ('dil_conv_5x5', 0), ('sep_conv_3x3', 1),
    ('skip_connect', 0), ('sep_conv_3x3', 1),
    ('skip_connect', 0), ('sep_conv_3x3', 2),
    ('dil_conv_5x5', 2), ('sep_conv_5x5', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('sep_conv_5x5', 1),
    ('max_pool_3x3', 0), ('skip_connect', 2),
    ('sep_conv_3x3', 2), ('sep_conv_5x5', 3),
    ('avg_pool_3x3', 0), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_6 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('dil_conv_3x3', 1), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 2),
    ('skip_connect', 1), ('sep_conv_3x3', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('max_pool_3x3', 1),
    ('max_pool_3x3', 1), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 0), ('dil_conv_3x3', 3),
    ('skip_connect', 2), ('dil_conv_5x5', 3),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_7 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('skip_connect', 0), ('sep_conv_5x5', 2),
    ('sep_conv_3x3', 2), ('dil_conv_5x5', 3),
    ('sep_conv_3x3', 0), ('dil_conv_3x3', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('dil_conv_3x3', 0), ('avg_pool_3x3', 1),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 2),
    ('max_pool_3x3', 1), ('dil_conv_5x5', 3),
    ('avg_pool_3x3', 0), ('sep_conv_5x5', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_8 = Genotype(
  normal=(
    ('sep_conv_5x5', 0), ('sep_conv_3x3', 1),
    ('dil_conv_3x3', 1), ('dil_conv_3x3', 2),
    ('skip_connect', 0), ('sep_conv_3x3', 1),
    ('dil_conv_5x5', 1), ('sep_conv_3x3', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('max_pool_3x3', 1), ('skip_connect', 2),
    ('max_pool_3x3', 1), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 3),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_9 = Genotype(
  normal=(
    ('sep_conv_5x5', 0), ('sep_conv_5x5', 1),
    ('sep_conv_3x3', 1), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 3),
    ('sep_conv_3x3', 1), ('dil_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('sep_conv_3x3', 1),
    ('max_pool_3x3', 0), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 2),
    ('max_pool_3x3', 1), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_10 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('dil_conv_5x5', 1),
    ('sep_conv_3x3', 0), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 1), ('dil_conv_3x3', 3),
    ('dil_conv_3x3', 2), ('dil_conv_3x3', 4),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_1 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_5x5', 0), ('sep_conv_5x5', 1),
    ('skip_connect', 0), ('sep_conv_5x5', 2),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('sep_conv_5x5', 1),
    ('max_pool_3x3', 1), ('sep_conv_3x3', 2),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 3),
    ('sep_conv_3x3', 0), ('dil_conv_5x5', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_2 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('skip_connect', 2),
    ('sep_conv_5x5', 1), ('sep_conv_3x3', 2),
    ('dil_conv_5x5', 1), ('sep_conv_3x3', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('max_pool_3x3', 1),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 0), ('dil_conv_5x5', 2),
    ('avg_pool_3x3', 0), ('max_pool_3x3', 1),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_3 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 2),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 3),
    ('sep_conv_3x3', 2), ('sep_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_3x3', 0), ('max_pool_3x3', 1),
    ('dil_conv_3x3', 0), ('max_pool_3x3', 1),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_4 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('dil_conv_5x5', 0), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_5x5', 0), ('dil_conv_3x3', 1),
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('dil_conv_3x3', 0), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 0), ('avg_pool_3x3', 1),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_5 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('skip_connect', 0), ('sep_conv_5x5', 1),
    ('dil_conv_3x3', 1), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 2), ('dil_conv_5x5', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_5x5', 0), ('skip_connect', 1),
    ('max_pool_3x3', 1), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 3),
    ('max_pool_3x3', 0), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_6 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('dil_conv_5x5', 2),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 3),
    ('dil_conv_5x5', 2), ('dil_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_5x5', 0), ('sep_conv_5x5', 1),
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('avg_pool_3x3', 0), ('sep_conv_5x5', 3),
    ('max_pool_3x3', 0), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_7 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('skip_connect', 1), ('dil_conv_3x3', 2),
    ('sep_conv_5x5', 1), ('dil_conv_5x5', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('avg_pool_3x3', 1),
    ('max_pool_3x3', 1), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 1), ('skip_connect', 2),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_8 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_5x5', 1), ('sep_conv_5x5', 2),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('skip_connect', 1),
    ('max_pool_3x3', 0), ('skip_connect', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 1), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_9 = Genotype(
  normal=(
    ('max_pool_3x3', 0), ('sep_conv_5x5', 1),
    ('sep_conv_5x5', 0), ('sep_conv_5x5', 1),
    ('dil_conv_3x3', 1), ('dil_conv_3x3', 3),
    ('sep_conv_3x3', 1), ('dil_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('max_pool_3x3', 0), ('dil_conv_5x5', 2),
    ('dil_conv_5x5', 2), ('sep_conv_3x3', 3),
    ('avg_pool_3x3', 0), ('max_pool_3x3', 1),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_10 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('sep_conv_5x5', 1), ('dil_conv_5x5', 2),
    ('sep_conv_3x3', 2), ('dil_conv_5x5', 3),
    ('max_pool_3x3', 0), ('dil_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('skip_connect', 1),
    ('sep_conv_5x5', 0), ('skip_connect', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 1), ('dil_conv_3x3', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
# fmt: on

DARTS = DARTS_V2
PCDARTS = PC_DARTS_cifar
Cri1_CIFAR_Best = Cri1_CIFAR_3
Cri2_CIFAR_Best = Cri2_CIFAR_3
# SGAS retrains its best CIFAR cells on ImageNet under these names.
Cri1_ImageNet_1 = Cri1_CIFAR_1
Cri1_ImageNet_2 = Cri1_CIFAR_2
Cri1_ImageNet_3 = Cri1_CIFAR_3
Cri2_ImageNet_1 = Cri2_CIFAR_3
Cri2_ImageNet_2 = Cri2_CIFAR_4
Cri2_ImageNet_3 = Cri2_CIFAR_5

GENOTYPES: dict[str, Genotype] = {
  'NASNet': NASNet,
  'AmoebaNet': AmoebaNet,
  'DARTS_V1': DARTS_V1,
  'DARTS_V2': DARTS_V2,
  'PC_DARTS_cifar': PC_DARTS_cifar,
  'PC_DARTS_image': PC_DARTS_image,
  'Cri1_CIFAR_1': Cri1_CIFAR_1,
  'Cri1_CIFAR_2': Cri1_CIFAR_2,
  'Cri1_CIFAR_3': Cri1_CIFAR_3,
  'Cri1_CIFAR_4': Cri1_CIFAR_4,
  'Cri1_CIFAR_5': Cri1_CIFAR_5,
  'Cri1_CIFAR_6': Cri1_CIFAR_6,
  'Cri1_CIFAR_7': Cri1_CIFAR_7,
  'Cri1_CIFAR_8': Cri1_CIFAR_8,
  'Cri1_CIFAR_9': Cri1_CIFAR_9,
  'Cri1_CIFAR_10': Cri1_CIFAR_10,
  'Cri2_CIFAR_1': Cri2_CIFAR_1,
  'Cri2_CIFAR_2': Cri2_CIFAR_2,
  'Cri2_CIFAR_3': Cri2_CIFAR_3,
  'Cri2_CIFAR_4': Cri2_CIFAR_4,
  'Cri2_CIFAR_5': Cri2_CIFAR_5,
  'Cri2_CIFAR_6': Cri2_CIFAR_6,
  'Cri2_CIFAR_7': Cri2_CIFAR_7,
  'Cri2_CIFAR_8': Cri2_CIFAR_8,
  'Cri2_CIFAR_9': Cri2_CIFAR_9,
  'Cri2_CIFAR_10': Cri2_CIFAR_10,
  'DARTS': DARTS,
  'PCDARTS': PCDARTS,
  'Cri1_CIFAR_Best': Cri1_CIFAR_Best,
  'Cri2_CIFAR_Best': Cri2_CIFAR_Best,
  'Cri1_ImageNet_1': Cri1_ImageNet_1,
  'Cri1_ImageNet_2': Cri1_ImageNet_2,
  'Cri1_ImageNet_3': Cri1_ImageNet_3,
  'Cri2_ImageNet_1': Cri2_ImageNet_1,
  'Cri2_ImageNet_2': Cri2_ImageNet_2,
  'Cri2_ImageNet_3': Cri2_ImageNet_3,
}


def genotype_names() -> list[str]:
  """Names accepted by `get_genotype`: the published cells, then the aliases."""
  return list(GENOTYPES)


def get_genotype(name: str) -> Genotype:
  """Returns the published genotype called `name` (case-sensitive, as in the source repositories).

  Raises:
    ValueError: If `name` is unknown; the message lists the known names.
  """
  try:
    return GENOTYPES[name]
  except KeyError:
    raise ValueError(f'unknown genotype {name!r}; known: {", ".join(GENOTYPES)}') from None
