"""The published figures a reproduction is compared with: the UnrealNAS paper's Table 2.

Transcribed from Table 2 of "UnrealNAS: Can We Search Neural Architectures with Unreal Data?"
(Dong, Yang, Wang, Xu, 2022; ../shared/paper): "Results with different architectures on
CIFAR10/100. Both the average and best results of UnrealNAS are reported." Test errors are in
percent; the UnrealNAS rows give `best (mean ± std)`. Only the rows a reproduction produces are
kept, each under the name of the `unreal-nas reproduce` row that reproduces it.
"""

from __future__ import annotations

import dataclasses
import re

SOURCE = 'UnrealNAS (Dong, Yang, Wang, Xu, 2022), Table 2: results on CIFAR-10/100'


@dataclasses.dataclass(frozen=True)
class ErrorFigure:
  """A published test error (%): `text` as printed, and the figures it gives.

  `value` is a figure printed alone, without saying whether it is a best or a mean.
  """

  text: str
  best: float | None = None
  mean: float | None = None
  std: float | None = None
  value: float | None = None


@dataclasses.dataclass(frozen=True)
class PublishedRow:
  """One row of Table 2.

  Attributes:
    paper_row: the architecture's name as printed in the table.
    test_error: {'cifar10': ..., 'cifar100': ...}; a missing set was not reported ('-').
    params_m: parameters of the CIFAR network, millions.
    search_gpu_days: the search cost column (GPU-days).
    search_data, search_label: the table's last two columns.
    note: what a reader comparing with this row should know.
  """

  paper_row: str
  test_error: dict[str, ErrorFigure]
  params_m: float | None
  search_gpu_days: float | None
  search_data: str
  search_label: str
  note: str = ''


def _unreal(text: str) -> ErrorFigure:
  """'2.62 (2.71 ± 0.08)': the UnrealNAS rows' best (mean ± std), kept as printed."""
  best, mean, std = (float(x) for x in re.findall(r'[0-9.]+', text))
  return ErrorFigure(text, best=best, mean=mean, std=std)


TABLE_2 = {
  'darts_rlrd': PublishedRow(
    'UnrealNAS-DARTS-RLRD',
    {'cifar10': _unreal('2.62 (2.71 ± 0.08)'), 'cifar100': _unreal('16.89 (17.23 ± 0.24)')},
    params_m=3.0,
    search_gpu_days=1.5,
    search_data='CIFAR10',
    search_label='Random Label',
  ),
  'darts_rlgd': PublishedRow(
    'UnrealNAS-DARTS-RLGE',
    {'cifar10': _unreal('2.46 (2.62 ± 0.10)'), 'cifar100': _unreal('15.91 (16.42 ± 0.27)')},
    params_m=4.3,
    search_gpu_days=1.5,
    search_data='FracDB-100(generative)',
    search_label='Random Label',
    note='printed "RLGE" in the table; the text and Table 3 call it RLGD',
  ),
  'darts_rlrn': PublishedRow(
    'UnrealNAS-DARTS-RLRN',
    {'cifar10': _unreal('2.61 (2.73 ± 0.12)'), 'cifar100': _unreal('17.26 (17.54 ± 0.24)')},
    params_m=3.0,
    search_gpu_days=1.5,
    search_data='Gaussian Noise',
    search_label='Random Label',
  ),
  'darts_cifar10': PublishedRow(
    'DARTS [22]',
    {
      'cifar10': ErrorFigure('3.0 ± 0.14', mean=3.0, std=0.14),
      'cifar100': ErrorFigure('17.23', value=17.23),
    },
    params_m=3.3,
    search_gpu_days=1.5,
    search_data='CIFAR10',
    search_label='Real Label',
    note='the table also lists DARTS as rerun in [42]: 2.91 ± 0.25 (CIFAR-10), '
    '20.58 ± 0.44 (CIFAR-100)',
  ),
  'sgas_rlgd': PublishedRow(
    'UnrealNAS-SGAS-RLGD',
    {'cifar10': _unreal('2.44 (2.60 ± 0.11)'), 'cifar100': _unreal('15.75 (16.29 ± 0.26)')},
    params_m=4.0,
    search_gpu_days=0.25,
    search_data='FracDB-100(generative)',
    search_label='Random Label',
    note='the paper does not say which SGAS criterion; the sgas preset uses criterion 1',
  ),
}
