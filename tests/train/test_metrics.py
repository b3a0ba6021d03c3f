"""Multi-label metrics: masked BCE and per-label ROC AUC against hand computations."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from unreal_nas_jax.train import metrics


def test_masked_bce_matches_a_hand_computation():
  logits = jnp.array([[2.0, -1.0], [0.5, 30.0]])
  targets = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  mask = jnp.array([[1.0, 0.0], [1.0, 1.0]])  # the (0, 1) entry is out of the loss

  def bce(x, t):
    p = 1 / (1 + math.exp(-x))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))

  expected = (bce(2.0, 1) + bce(0.5, 0) + bce(30.0, 1)) / 3
  assert float(metrics.masked_bce(logits, targets, mask)) == pytest.approx(expected, rel=1e-6)
  # A batch of only masked entries has loss 0, not NaN.
  assert float(metrics.masked_bce(logits, targets, jnp.zeros_like(mask))) == 0.0


def test_auc_with_ties_matches_a_hand_count():
  scores = [0.1, 0.4, 0.4, 0.8, 0.4]
  labels = [0, 0, 1, 1, 1]
  # Pairs (positive, negative): 6; positive above negative counts 1, a tie 1/2.
  # pos 0.4 vs neg 0.1: 1, vs neg 0.4: 0.5; pos 0.8: 1 + 1; pos 0.4 (last): 1 + 0.5 -> 5/6.
  assert metrics.roc_auc(scores, labels) == pytest.approx(5 / 6)
  assert metrics.roc_auc([0.9, 0.1], [0, 1]) == 0.0
  assert metrics.roc_auc([0.3, 0.3, 0.3], [0, 1, 1]) == 0.5


def test_a_label_with_one_class_is_undefined_and_left_out_of_the_mean():
  scores = np.array([[0.9, 0.2, 0.5], [0.1, 0.3, 0.5], [0.8, 0.9, 0.1]])
  targets = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 0]], np.float32)
  mask = np.ones_like(targets)
  mask[1, 2] = 0  # the only positive of label c is masked: c has one class left
  result = metrics.label_aucs(scores, targets, mask, ('a', 'b', 'c'), ('a', 'b', 'c'))
  assert result['auc'] == {'a': 1.0, 'b': None, 'c': None}
  assert result['undefined_auc'] == ['b', 'c']
  assert result['mean_auc'] == 1.0
  none = metrics.label_aucs(scores, targets, mask, ('a', 'b', 'c'), ('b',))
  assert none['mean_auc'] is None
