"""What a probe run leaves in its workdir, for `train/probe.py` to write and `analysis/runs.py` to
read (no JAX here, so the analyses load without it):

  DIR/config.json          the run's config (`data.name` names the dataset)
  DIR/architectures.json   {"architectures": [{"name": str, "genotype": genotype JSON}, ...]}
  DIR/probe.jsonl          one JSON object per (architecture, epoch): `architecture` (a name from
                           architectures.json), `genotype`, `epoch` (1-based), `train_loss`,
                           `train_acc` (more keys are allowed and kept)

`probe_record` and `architectures_document` build these objects, so the writer and the reader
agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PROBE_FILE = 'probe.jsonl'
ARCHITECTURES_FILE = 'architectures.json'
PROBE_METRICS = ('train_acc', 'train_loss')


def probe_record(
  architecture: str,
  genotype: Mapping[str, Any],
  epoch: int,
  train_loss: float,
  train_acc: float,
  **extra: Any,
) -> dict[str, Any]:
  """One line of probe.jsonl (`extra` keys such as `lr` or `wall_s` are kept)."""
  return {
    'architecture': architecture,
    'genotype': dict(genotype),
    'epoch': int(epoch),
    'train_loss': float(train_loss),
    'train_acc': float(train_acc),
    **extra,
  }


def architectures_document(
  names: Sequence[str], genotypes: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
  """The content of architectures.json for `names` and their genotype JSON objects."""
  if len(names) != len(genotypes) or len(set(names)) != len(names):
    raise ValueError('architectures.json needs one genotype per name and distinct names')
  return {
    'architectures': [
      {'name': n, 'genotype': dict(g)} for n, g in zip(names, genotypes, strict=True)
    ]
  }
