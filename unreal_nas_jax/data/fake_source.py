"""Fake data: random images and labels of a dataset's shapes (the flax examples' fake-data
benchmark), for measuring the step without the input pipeline (`config.data.fake_data`)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from unreal_nas_jax.data.datasets import DATASETS
from unreal_nas_jax.data.pipeline_spec import PipelineSpec

FAKE_FOLDER_CLASSES = 10  # a fake image folder's classes (benchmarks of the step)


def resolve(spec: PipelineSpec) -> PipelineSpec:
  """`spec` with names and statistics for random images and labels of the configured shapes
  (no directory is read): the CSV's label columns, or FAKE_FOLDER_CLASSES classes."""
  names = (
    tuple(spec.csv_label_columns)
    if spec.source == 'csv'
    else tuple(f'class_{i}' for i in range(FAKE_FOLDER_CLASSES))
  )
  fill = (0.5,) * spec.channels
  return dataclasses.replace(spec, names=names, mean=spec.mean or fill, std=spec.std or fill)


def split_size(spec: PipelineSpec, split: str) -> int:
  """Examples of `split` the run uses: the dataset's split size, or the configured number."""
  return spec.examples_used(split, DATASETS[spec.dataset].split_sizes[split])


def batches(spec, split, epoch, per_process, steps, start_step=0):
  """Random images and labels of the right shapes (the flax examples' fake-data benchmark).

  Each step's global batch is drawn from (seed, epoch, split, step) and every process keeps its
  rows, so the data is the same for any number of processes and devices; a skipped batch costs
  nothing.
  """
  size, total, b = spec.image_size, split_size(spec, split), spec.batch_size
  rows = slice(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)
  split_id = 0 if split == 'train' else 1
  for step in range(start_step, steps):
    rng = np.random.default_rng([spec.seed, epoch, split_id, step])
    position = step * b + np.arange(b)
    # Eval pads its last batch (masked out); training batches are always whole.
    mask = (position < total if split != 'train' else np.ones(b, bool)).astype(np.float32)
    batch = {
      'image': rng.standard_normal((b, size, size, spec.image_channels), np.float32),
      'label': rng.integers(0, spec.num_classes, b).astype(np.int32),
      'mask': mask,
    }
    if spec.multilabel:
      shape = (b, spec.num_classes)
      batch['label'] = rng.integers(0, 2, shape).astype(np.float32)
      batch['label_mask'] = np.ones(shape, np.float32) * mask[:, None]
    yield {k: v[rows] for k, v in batch.items()}
