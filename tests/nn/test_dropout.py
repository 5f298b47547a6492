"""Tests of lm_jax.nn.dropout: the drop rate, the scaling, shared masks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.nn.dropout import Dropout, drop_probability, dropout, keep_mask


@pytest.mark.parametrize('rate', [0.1, 0.2, 0.5, 0.9])
def test_the_drop_rate_is_the_asked_one(rate):
  n = 1_000_001  # odd: the last 32-bit word gives one draw, not two
  kept = np.asarray(keep_mask(jax.random.key(0), rate, (n,)))
  # Five standard deviations of a binomial count.
  assert abs((1 - kept.mean()) - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
  assert drop_probability(rate) == pytest.approx(rate, abs=2 ** -17)


def test_both_halves_of_each_word_are_fair_and_independent():
  kept = np.asarray(keep_mask(jax.random.key(1), 0.5, (400_000,)))
  low, high = kept[0::2], kept[1::2]
  for half in (low, high):
    assert abs(half.mean() - 0.5) < 0.005
  # Independent halves: both kept a quarter of the time.
  assert abs((low & high).mean() - 0.25) < 0.005


def test_expectation_is_unchanged():
  x = jnp.ones((1000, 1000))
  y = dropout(x, 0.3, jax.random.key(2))
  kept = np.asarray(y) > 0
  np.testing.assert_allclose(np.asarray(y)[kept], 1 / (1 - drop_probability(0.3)),
                             rtol=1e-6)
  assert abs(float(y.mean()) - 1.0) < 0.005


def test_shapes_dtypes_and_extreme_rates():
  x = jnp.arange(1, 8, dtype=jnp.bfloat16).reshape(7, 1)
  y = dropout(x, 0.5, jax.random.key(3))
  chex.assert_shape(y, (7, 1))
  assert y.dtype == jnp.bfloat16
  chex.assert_trees_all_equal(dropout(x, 0.0, jax.random.key(3)), x)
  chex.assert_trees_all_equal(dropout(x, 1.0, jax.random.key(3)),
                              jnp.zeros_like(x))
  assert keep_mask(jax.random.key(3), 0.5, ()).shape == ()
  with pytest.raises(ValueError, match='not in'):
    dropout(x, 1.5, jax.random.key(3))


def test_broadcast_dims_share_one_decision():
  x = jnp.ones((8, 50, 16))
  y = np.asarray(dropout(x, 0.5, jax.random.key(4), broadcast_dims=(1,)))
  assert (y == y[:, :1]).all()  # the same along axis 1
  assert 0 < (y[:, 0] > 0).mean() < 1


def test_the_module_drops_only_in_training_and_by_its_rng():
  layer = Dropout(0.5)
  x = jnp.ones((4, 64))
  chex.assert_trees_all_equal(layer.apply({}, x, deterministic=True), x)
  a = layer.apply({}, x, deterministic=False,
                  rngs={'dropout': jax.random.key(5)})
  b = layer.apply({}, x, deterministic=False,
                  rngs={'dropout': jax.random.key(5)})
  c = layer.apply({}, x, deterministic=False,
                  rngs={'dropout': jax.random.key(6)})
  chex.assert_trees_all_equal(a, b)
  assert not np.array_equal(a, c)
  assert set(np.unique(np.asarray(a))) <= {0.0, 2.0}
  with pytest.raises(ValueError):
    layer.apply({}, x)  # deterministic given nowhere
