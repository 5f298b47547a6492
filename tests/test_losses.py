"""Tests of lm_jax.losses against numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm_jax import losses


def _numpy_token_losses(logits, targets, smoothing=0.0):
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  vocab = logits.shape[-1]
  labels = np.eye(vocab)[np.asarray(targets)]
  labels = labels * (1 - smoothing) + smoothing / vocab
  return -(labels * log_probs).sum(-1)


@pytest.fixture
def batch():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32) * 3
  targets = rng.integers(0, 7, size=(3, 5)).astype(np.int32)
  weights = (rng.random((3, 5)) > 0.3).astype(np.float32)
  return logits, targets, weights


def test_cross_entropy_is_the_weighted_sum_and_weight_count(batch):
  logits, targets, weights = batch
  total, count = losses.cross_entropy(logits, targets, weights)
  expected = (_numpy_token_losses(logits, targets) * weights).sum()
  np.testing.assert_allclose(total, expected, rtol=1e-5)
  assert float(count) == weights.sum()
  assert total.dtype == jnp.float32 and count.dtype == jnp.float32


def test_cross_entropy_without_weights_counts_every_token(batch):
  logits, targets, _ = batch
  total, count = losses.cross_entropy(logits, targets)
  np.testing.assert_allclose(total, _numpy_token_losses(logits, targets).sum(),
                             rtol=1e-5)
  assert float(count) == targets.size


def test_cross_entropy_ignores_whatever_padding_holds(batch):
  logits, targets, weights = batch
  garbage_logits = np.where(weights[..., None] == 0, 1e4, logits)
  garbage_targets = np.where(weights == 0, 0, targets)
  a = losses.cross_entropy(logits, targets, weights)
  b = losses.cross_entropy(garbage_logits, garbage_targets, weights)
  np.testing.assert_allclose(a, b, rtol=1e-6)


def test_sums_and_counts_of_parts_add_up_to_the_whole(batch):
  logits, targets, weights = batch
  whole = losses.cross_entropy(logits, targets, weights)
  parts = [losses.cross_entropy(logits[i:i + 1], targets[i:i + 1],
                                weights[i:i + 1]) for i in range(3)]
  np.testing.assert_allclose(sum(p[0] for p in parts), whole[0], rtol=1e-5)
  np.testing.assert_allclose(sum(p[1] for p in parts), whole[1], rtol=1e-6)


def test_cross_entropy_label_smoothing_matches_reference(batch):
  logits, targets, weights = batch
  total, count = losses.cross_entropy(logits, targets, weights,
                                      label_smoothing=0.1)
  expected = (_numpy_token_losses(logits, targets, 0.1) * weights).sum()
  np.testing.assert_allclose(total, expected, rtol=1e-5)
  assert float(count) == weights.sum()


def test_accuracy_counts_weighted_correct_argmax(batch):
  logits, targets, weights = batch
  correct, count = losses.accuracy(logits, targets, weights)
  expected = ((logits.argmax(-1) == targets) * weights).sum()
  assert float(correct) == expected
  assert float(count) == weights.sum()


def test_accuracy_shares_a_tie_for_the_largest_logit():
  """Logits that tie (common in bfloat16) are not all counted as hits: a
  model with constant logits scores 1 / vocabulary, not 100%."""
  logits = jnp.zeros((2, 3, 8))
  targets = jnp.zeros((2, 3), jnp.int32)
  np.testing.assert_allclose(losses.accuracy(logits, targets)[0], 6 / 8)
  logits = jnp.array([[1.0, 3.0, 3.0, 0.0]])
  np.testing.assert_allclose(losses.accuracy(logits, jnp.array([1]))[0], 0.5)
  # A tie at a padding position counts nothing; the others are as ever.
  logits = jnp.array([[0.0, 0.0], [2.0, 1.0]])
  correct, count = losses.accuracy(logits, jnp.array([0, 0]),
                                   jnp.array([0.0, 1.0]))
  assert (float(correct), float(count)) == (1.0, 1.0)
  # Every logit -inf: a tie of all the classes.
  logits = jnp.full((1, 4), -jnp.inf)
  np.testing.assert_allclose(losses.accuracy(logits, jnp.array([2]))[0], 0.25)


def test_softmax_cross_entropy_and_its_gradient_match_optax():
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(0, 30, (3, 5, 50)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 50, (3, 5)), jnp.int32)
  weights = jnp.asarray(rng.random((3, 5)), jnp.float32)
  ours = lambda x: jnp.sum(losses.softmax_cross_entropy(x, targets) * weights)
  theirs = lambda x: jnp.sum(optax.softmax_cross_entropy_with_integer_labels(
      x, targets) * weights)
  np.testing.assert_allclose(jax.jit(ours)(logits), theirs(logits),
                             rtol=1e-6)
  np.testing.assert_allclose(jax.jit(jax.grad(ours))(logits),
                             jax.grad(theirs)(logits), rtol=1e-5, atol=1e-6)


def test_cross_entropy_of_bfloat16_logits_is_taken_in_float32():
  logits = (3 * jax.random.normal(jax.random.key(0), (64, 1000))).astype(
      jnp.bfloat16)
  targets = jax.random.randint(jax.random.key(1), (64,), 0, 1000)
  np.testing.assert_allclose(
      losses.cross_entropy(logits, targets)[0],
      losses.cross_entropy(logits.astype(jnp.float32), targets)[0],
      rtol=1e-6)
