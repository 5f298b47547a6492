"""Tests of the additions to attention and blocks for encoder-decoders:
cross-attention keys and values cached once for decoding, sown attention
weights, and the blocks' optional projection initialiser."""

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.nn.attention import MultiHeadAttention
from lm_jax.nn.transformer import TransformerBlock


def test_cached_cross_attention_projects_the_memory_once():
  mha = MultiHeadAttention(num_heads=2)
  query = jax.random.normal(jax.random.key(0), (2, 1, 8))
  memory = jax.random.normal(jax.random.key(1), (2, 5, 8))
  params = mha.init(jax.random.key(2), query, memory)['params']
  plain = mha.apply({'params': params}, query, memory)
  out, created = mha.apply({'params': params}, query, memory, cache_kv=True,
                           mutable=['cache'])
  np.testing.assert_allclose(out, plain, rtol=1e-6, atol=1e-6)
  assert created['cache']['cross_key'].shape == (2, 5, 2, 4)
  # Later calls read the cache; the memory passed is no longer projected.
  again = mha.apply({'params': params, 'cache': created['cache']}, query,
                    jnp.zeros_like(memory), cache_kv=True, mutable=['cache'])
  np.testing.assert_allclose(again[0], plain, rtol=1e-6, atol=1e-6)


def test_attention_weights_are_sown():
  mha = MultiHeadAttention(num_heads=2)
  x = jax.random.normal(jax.random.key(0), (2, 3, 8))
  params = mha.init(jax.random.key(1), x)['params']
  (_, weights), state = mha.apply({'params': params}, x, return_weights=True,
                                  mutable=['intermediates'])
  np.testing.assert_array_equal(
      state['intermediates']['attention_weights'][0], weights)


def test_block_projection_initialiser():
  x = jnp.ones((1, 4, 64))
  default = TransformerBlock(num_heads=4, mlp_dim=128).init(
      jax.random.key(0), x)['params']
  glorot = TransformerBlock(
      num_heads=4, mlp_dim=128,
      kernel_init=jax.nn.initializers.glorot_uniform()).init(
          jax.random.key(0), x)['params']
  std = lambda p: float(np.std(p['mlp']['fc']['kernel']))  # noqa: E731
  np.testing.assert_allclose(std(default), 0.02, rtol=0.05)
  np.testing.assert_allclose(std(glorot), np.sqrt(2 / (64 + 128)), rtol=0.05)
