"""Tests of lm_jax.nn.positional against the formulas, computed in numpy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.nn import positional


def _numpy_sinusoidal(length: int, dim: int) -> np.ndarray:
  """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(same)."""
  table = np.zeros((length, dim), np.float64)
  for pos in range(length):
    for i in range(dim // 2):
      angle = pos / 10000.0 ** (2 * i / dim)
      table[pos, 2 * i] = np.sin(angle)
      table[pos, 2 * i + 1] = np.cos(angle)
  return table


@pytest.mark.parametrize('dim', [2, 8, 32])
def test_sinusoidal_encoding_matches_the_paper_formula(dim):
  length = 50
  got = positional.sinusoidal_encoding(jnp.arange(length), dim)
  chex.assert_shape(got, (length, dim))
  chex.assert_type(got, jnp.float32)
  # float32 angles of up to ~50 radians carry ~4e-6 absolute error.
  np.testing.assert_allclose(got, _numpy_sinusoidal(length, dim), atol=2e-5)


def test_sinusoidal_encoding_keeps_the_positions_shape():
  positions = jnp.array([[0, 3, 7], [1, 2, 49]])
  got = positional.sinusoidal_encoding(positions, 16)
  chex.assert_shape(got, (2, 3, 16))
  table = _numpy_sinusoidal(50, 16)
  np.testing.assert_allclose(got, table[np.asarray(positions)], atol=2e-5)


def test_sinusoidal_encoding_rejects_odd_dims():
  with pytest.raises(ValueError, match='even'):
    positional.sinusoidal_encoding(jnp.arange(4), 7)


def test_sinusoidal_module_has_no_params_and_casts_to_its_dtype():
  module = positional.make_positions('sinusoidal', 16, 8, jnp.bfloat16,
                                     jnp.float32)
  positions = jnp.broadcast_to(jnp.arange(16), (2, 16))
  variables = module.init(jax.random.key(0), positions)
  assert not jax.tree.leaves(variables)
  out = module.apply(variables, positions)
  chex.assert_shape(out, (2, 16, 8))
  chex.assert_type(out, jnp.bfloat16)


def test_learned_positions_look_up_rows_of_their_table():
  module = positional.make_positions('learned', 16, 8, jnp.float32,
                                     jnp.float32)
  positions = jnp.array([[0, 5, 15], [3, 3, 1]])
  variables = module.init(jax.random.key(0), positions)
  table = variables['params']['embedding']
  chex.assert_shape(table, (16, 8))
  np.testing.assert_array_equal(module.apply(variables, positions),
                                np.asarray(table)[np.asarray(positions)])


def test_make_positions_rejects_unknown_kinds():
  with pytest.raises(ValueError, match='rotary'):
    positional.make_positions('rotary', 16, 8, jnp.float32, jnp.float32)
