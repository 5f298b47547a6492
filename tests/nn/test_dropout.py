"""Tests of lm_jax.nn.dropout: the drop rate, the scaling, shared masks,
word dropout."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.nn.dropout import (Dropout, drop_probability, drop_words,
                               dropout, keep_mask)
from lm_jax.train import parallel


# (1001, 1000): two draws per 32-bit word, halves along axis 1;
# (1000, 1001) and (1_001_000,): no even axis after the first, one word per
# element.
@pytest.mark.parametrize('shape', [(1001, 1000), (1000, 1001), (1_001_000,)])
@pytest.mark.parametrize('rate', [0.1, 0.2, 0.5, 0.9])
def test_the_drop_rate_is_the_asked_one(rate, shape):
  n = int(np.prod(shape))
  kept = np.asarray(keep_mask(jax.random.key(0), rate, shape))
  # Five standard deviations of a binomial count.
  assert abs((1 - kept.mean()) - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
  assert drop_probability(rate) == pytest.approx(rate, abs=2 ** -17)


def test_both_halves_of_each_word_are_fair_and_independent():
  # The first even axis (here axis 1) is split: its halves share words.
  kept = np.asarray(keep_mask(jax.random.key(1), 0.5, (5, 80_000)))
  low, high = kept[:, :40_000], kept[:, 40_000:]
  for half in (low, high):
    assert abs(half.mean() - 0.5) < 0.005
  # Independent halves: both kept a quarter of the time.
  assert abs((low & high).mean() - 0.25) < 0.005


def test_expectation_is_unchanged():
  x = jnp.ones((1000, 1000))
  y = dropout(x, 0.3, jax.random.key(2))
  kept = np.asarray(y) > 0
  np.testing.assert_allclose(np.asarray(y)[kept],
                             1 / (1 - drop_probability(0.3)), rtol=1e-6)
  assert abs(float(y.mean()) - 1.0) < 0.005


def test_bfloat16_kept_values_are_the_float32_quotient_rounded_once():
  """Not divided by a keep probability rounded to bfloat16 (0.9 would be
  0.8984 there: every kept value 0.2% too large)."""
  x = jax.random.uniform(jax.random.key(4), (200_000,), minval=0.5,
                         maxval=2.0).astype(jnp.bfloat16)
  y = np.asarray(dropout(x, 0.1, jax.random.key(5)), np.float32)
  kept = y != 0
  exact = np.asarray(x, np.float32)[kept] / (1 - drop_probability(0.1))
  np.testing.assert_array_equal(
      y[kept], np.asarray(jnp.asarray(exact).astype(jnp.bfloat16), np.float32))
  # Rounded to nearest, so unbiased: the mean scale is the exact one.
  assert abs(np.mean(y[kept] / exact) - 1) < 2e-4


def test_shapes_dtypes_and_extreme_rates():
  x = jnp.arange(1, 8, dtype=jnp.bfloat16).reshape(7, 1)
  y = dropout(x, 0.5, jax.random.key(3))
  chex.assert_shape(y, (7, 1))
  assert y.dtype == jnp.bfloat16
  chex.assert_trees_all_equal(dropout(x, 0.0, jax.random.key(3)), x)
  chex.assert_trees_all_equal(dropout(x, 1.0, jax.random.key(3)),
                              jnp.zeros_like(x))
  assert keep_mask(jax.random.key(3), 0.5, ()).shape == ()
  for shape in ((7, 1), (6, 4)):  # one word per element; two
    assert not np.asarray(keep_mask(jax.random.key(3), 1.0, shape)).any()
    assert np.asarray(keep_mask(jax.random.key(3), 0.0, shape)).all()
  with pytest.raises(ValueError, match='not in'):
    dropout(x, 1.5, jax.random.key(3))


def test_broadcast_dims_share_one_decision():
  x = jnp.ones((8, 50, 16))
  y = np.asarray(dropout(x, 0.5, jax.random.key(4), broadcast_dims=(1,)))
  assert (y == y[:, :1]).all()  # the same along axis 1
  assert 0 < (y[:, 0] > 0).mean() < 1


def test_negative_broadcast_dims_name_the_same_axes():
  x = jnp.ones((4, 6, 8))
  np.testing.assert_array_equal(
      dropout(x, 0.5, jax.random.key(0), broadcast_dims=(-1,)),
      dropout(x, 0.5, jax.random.key(0), broadcast_dims=(2,)))


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
  with pytest.raises(ValueError, match='deterministic'):
    layer.apply({}, x)  # deterministic given nowhere


def test_a_batch_sharded_mask_needs_no_communication():
  """The batch axis (0) is sharded in data parallelism: the mask of a
  sharded activation is drawn where its rows live."""
  assert jax.device_count() >= 2
  mesh = parallel.make_data_mesh(2)
  x = jax.device_put(jnp.ones((8, 4, 6, 6)), parallel.batch_sharded(mesh))
  step = jax.jit(lambda x, rng: dropout(x, 0.1, rng) * 2)
  hlo = step.lower(x, jax.random.key(7)).compile().as_text()
  for collective in ('all-to-all', 'all-gather', 'collective-permute'):
    assert collective not in hlo
  np.testing.assert_array_equal(
      np.asarray(step(x, jax.random.key(7))),
      np.asarray(step(np.ones((8, 4, 6, 6), np.float32), jax.random.key(7))))


def test_drop_words_replaces_words_never_padding():
  ids = jnp.array([[5, 6, 7, 0, 0]] * 200)
  dropped = drop_words(ids, 0.3, 1, jax.random.key(0))
  assert (dropped[:, 3:] == 0).all()
  changed = dropped[:, :3] != ids[:, :3]
  assert (dropped[:, :3][changed] == 1).all()
  assert 0.25 < float(changed.mean()) < 0.35


def test_drop_words_leaves_the_kept_ids_alone():
  """Sentence markers frame a sentence: word dropout never replaces them."""
  ids = jnp.array([[2, 5, 6, 3, 0]] * 200)
  dropped = drop_words(ids, 0.5, 1, jax.random.key(0), kept_ids=(2, 3))
  assert (dropped[:, [0, 3]] == ids[:, [0, 3]]).all()
  assert 0.4 < float((dropped[:, 1:3] == 1).mean()) < 0.6
