"""Tests of lm_jax.nn.fused_cross_entropy: the fused CPU softmax
cross-entropy gives `lm_jax.losses`' losses, accuracy test and gradients at
any vocabulary size, with rows split across threads, under vmap and on four
devices, and `losses.token_metrics` keeps XLA's loss where the kernel does
not apply."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax import losses
from lm_jax.nn import cpu_kernels, fused_cross_entropy

pytestmark = pytest.mark.skipif(
    not cpu_kernels.can_build(),
    reason='no C++ compiler to build the fused cross-entropy kernel')


def test_the_kernel_builds_where_a_compiler_exists():
  # A build failure is a failure, not a skip of every test below.
  assert fused_cross_entropy.available()

# np.testing.assert_allclose's tolerances, leaf by leaf.
_close = functools.partial(chex.assert_trees_all_close, rtol=1e-7)


def _inputs(shape, vocab, seed=0, scale=3.0):
  logits = scale * jax.random.normal(jax.random.key(seed), (*shape, vocab))
  targets = jax.random.randint(jax.random.key(seed + 1), shape, 0, vocab)
  return logits, targets


def _reference(logits, targets):
  correct = losses.accuracy(logits, targets)[0]  # a sum over the positions
  return losses.softmax_cross_entropy(logits, targets), correct


def _weighted(fn, logits, targets, weights):
  return jnp.sum(fn(logits, targets)[0] * weights)


@pytest.mark.parametrize('shape,vocab', [
    ((3, 5), 17),  # a vocabulary not a multiple of the kernel's 16 lanes
    ((4,), 1),  # one class: loss 0, always correct
    ((2, 35), 10000),  # ptb_lstm_small's vocabulary
    ((64,), 5000),  # enough rows to split across two threads
])
def test_losses_accuracy_and_gradients_equal_the_reference(shape, vocab):
  logits, targets = _inputs(shape, vocab)
  weights = jax.random.normal(jax.random.key(2), shape)
  loss, correct = fused_cross_entropy.softmax_cross_entropy(logits, targets)
  want_loss, want_correct = _reference(logits, targets)
  _close(loss, want_loss, atol=2e-6)
  assert correct.shape == shape
  assert float(jnp.sum(correct)) == float(want_correct)
  grad = jax.grad(_weighted, argnums=1)
  _close(grad(fused_cross_entropy.softmax_cross_entropy, logits, targets,
              weights),
         grad(_reference, logits, targets, weights), atol=1e-6)


def test_a_tie_for_the_largest_logit_is_shared_between_the_tied_classes():
  # 40 classes: the count runs through the vector lanes and the tail.
  logits = jnp.zeros((4, 40)).at[0, 1:3].set(3.0).at[1, 0].set(2.0)
  logits = logits.at[3, :].set(jnp.arange(40.0) % 3)
  targets = jnp.array([2, 2, 7, 5])
  _, correct = fused_cross_entropy.softmax_cross_entropy(logits, targets)
  # Row 2 is constant: one fortieth; row 3 has 13 classes at its top, 2.
  want = jnp.array([0.5, 0.0, 1 / 40, 1 / 13])
  _close(correct, want, atol=0.0)
  _close(losses.accuracy(logits, targets)[0], jnp.sum(want))  # XLA's agrees


def test_a_row_with_a_nan_logit_counts_as_wrong():
  """The row maximum skips NaN; the row must not count as correct."""
  logits = jnp.array([[jnp.nan, 0.0, 1.0], [0.0, 0.0, 1.0]])
  targets = jnp.array([2, 2])
  loss, correct = fused_cross_entropy.softmax_cross_entropy(logits, targets)
  assert np.isnan(loss[0]) and np.isfinite(loss[1])
  _close(correct, jnp.array([0.0, 1.0]), atol=0.0)
  assert losses.accuracy(logits, targets)[0] == 1.0  # XLA's agrees


def test_targets_of_another_shape_are_refused():
  """The kernel reads one target a row: fewer would read out of bounds."""
  with pytest.raises(ValueError, match='do not match'):
    fused_cross_entropy.softmax_cross_entropy(jnp.zeros((6, 10)),
                                              jnp.array([3]))


def test_large_logits_do_not_overflow():
  logits, targets = _inputs((6,), 40, seed=3, scale=1000.0)
  loss, _ = fused_cross_entropy.softmax_cross_entropy(logits, targets)
  assert np.isfinite(np.asarray(loss)).all()
  _close(loss, _reference(logits, targets)[0], atol=1e-3)


def test_under_vmap_equals_per_example_calls():
  logits, targets = _inputs((3, 4, 5), 33, seed=4)
  stacked = jax.jit(jax.vmap(fused_cross_entropy.softmax_cross_entropy))(
      logits, targets)
  for i in range(3):
    _close(jax.tree.map(lambda x: x[i], stacked),
           fused_cross_entropy.softmax_cross_entropy(logits[i], targets[i]),
           atol=1e-6)


def test_on_four_devices_each_runs_its_own_rows():
  logits, targets = _inputs((8, 3), 50, seed=5)
  weights = jax.random.normal(jax.random.key(6), (8, 3))
  grad = jax.jit(jax.grad(_weighted, argnums=1), static_argnums=0)
  fused = fused_cross_entropy.softmax_cross_entropy
  one = grad(fused, logits, targets, weights)
  mesh = jax.make_mesh((4,), ('data',))
  split = jax.sharding.NamedSharding(mesh, jax.P('data'))
  args = [jax.device_put(a, split) for a in (logits, targets, weights)]
  _close(grad(fused, *args), one, atol=1e-6)
  compiled = grad.lower(fused, *args).compile().as_text()
  calls = [l for l in compiled.splitlines() if 'lm_jax_cross_entropy_' in l]
  assert calls and all('f32[6,50]' in l for l in calls), calls  # 24 rows / 4


def _metrics(fused, logits, targets, weights):
  metrics = losses.token_metrics(logits, targets, weights, fused=fused)
  return metrics['loss'][0] / metrics['loss'][1], metrics


def test_token_metrics_fused_equals_xla():
  logits, targets = _inputs((3, 7), 300, seed=7)
  weights = (jax.random.uniform(jax.random.key(8), (3, 7)) > 0.3).astype(
      jnp.float32)
  (_, fused), fused_grad = jax.value_and_grad(_metrics, argnums=1,
                                              has_aux=True)(
                                                  True, logits, targets,
                                                  weights)
  (_, xla), xla_grad = jax.value_and_grad(_metrics, argnums=1, has_aux=True)(
      False, logits, targets, weights)
  _close(fused, xla, atol=1e-5)
  _close(fused_grad, xla_grad, atol=1e-6)


def test_token_metrics_uses_xla_when_the_kernel_is_unavailable(monkeypatch):
  calls = []
  real = fused_cross_entropy.softmax_cross_entropy
  monkeypatch.setattr(fused_cross_entropy, 'softmax_cross_entropy',
                      lambda *a: calls.append(1) or real(*a))
  logits, targets = _inputs((2, 3), 20, seed=9)
  losses.token_metrics(logits, targets, fused=True)
  assert len(calls) == 1
  losses.token_metrics(logits, targets, fused=False)
  monkeypatch.setattr(fused_cross_entropy, 'available', lambda: False)
  fallback = losses.token_metrics(logits, targets, fused=True)
  assert len(calls) == 1
  _close(fallback, {'loss': losses.cross_entropy(logits, targets),
                    'accuracy': losses.accuracy(logits, targets)}, atol=0.0)
