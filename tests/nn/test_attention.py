"""Tests of lm_jax.nn.attention: masks, dot-product attention, the KV cache.

The causal property is checked end to end on GPT: changing a token may only
change the logits at its own position and after it.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.nn import attention


def _numpy_attention(q, k, v, mask):
  """softmax(q k^T / sqrt(d)) v per head, in float64 numpy; masked keys get
  no weight and rows without any visible key output zeros."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  logits = np.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
  mask = np.broadcast_to(np.asarray(mask), logits.shape)
  logits = np.where(mask, logits, -np.inf)
  peak = np.max(np.where(mask, logits, -1e300), axis=-1, keepdims=True)
  weights = np.where(mask, np.exp(logits - peak), 0.0)
  total = weights.sum(-1, keepdims=True)
  weights = np.divide(weights, total, out=np.zeros_like(weights),
                      where=total > 0)
  return np.einsum('bhqk,bkhd->bqhd', weights, v), weights


def test_causal_mask_is_lower_triangular_with_broadcast_dims():
  mask = attention.causal_mask(5)
  chex.assert_shape(mask, (1, 1, 5, 5))
  assert mask.dtype == jnp.bool_
  np.testing.assert_array_equal(mask[0, 0], np.tril(np.ones((5, 5), bool)))


def test_padding_mask_is_outer_and_of_query_and_key_validity():
  query_valid = jnp.array([[True, True, False], [True, False, False]])
  key_valid = jnp.array([[True, False, True, True], [False, True, True, True]])
  mask = attention.padding_mask(query_valid, key_valid)
  chex.assert_shape(mask, (2, 1, 3, 4))
  expected = (np.asarray(query_valid)[:, :, None]
              & np.asarray(key_valid)[:, None, :])
  np.testing.assert_array_equal(mask[:, 0], expected)


def test_combine_masks_ands_and_broadcasts_and_skips_none():
  causal = attention.causal_mask(4)
  valid = jnp.array([[True, True, True, False], [True, True, False, False]])
  padding = attention.padding_mask(valid, valid)
  combined = attention.combine_masks(causal, None, padding)
  chex.assert_shape(combined, (2, 1, 4, 4))
  np.testing.assert_array_equal(combined, np.logical_and(causal, padding))
  assert attention.combine_masks(None, None) is None
  assert attention.combine_masks(causal) is causal


def test_dot_product_attention_matches_numpy_reference_under_a_mask():
  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(2, 4, 3, 8)).astype(np.float32)
             for _ in range(3))
  valid = jnp.array([[True] * 4, [True, True, False, False]])
  mask = attention.combine_masks(attention.causal_mask(4),
                                 attention.padding_mask(valid, valid))
  out, weights = attention.dot_product_attention(q, k, v, mask=mask,
                                                 return_weights=True)
  expected_out, expected_weights = _numpy_attention(q, k, v, mask)
  np.testing.assert_allclose(weights, expected_weights, atol=1e-6)
  np.testing.assert_allclose(out, expected_out, rtol=1e-5, atol=1e-5)


def test_bfloat16_attention_takes_its_logits_in_float32():
  """Rounding q.k to bfloat16 before the float32 softmax moved weights by
  up to 3%; computed in float32 they keep bfloat16's own 0.4%."""
  q, k, v = (jax.random.normal(jax.random.key(i), (2, 32, 2, 64)) * 1.8
             for i in range(3))
  q, k, v = (x.astype(jnp.bfloat16) for x in (q, k, v))
  _, weights = attention.dot_product_attention(q, k, v, return_weights=True)
  scaled = (q / jnp.sqrt(64.0).astype(jnp.bfloat16)).astype(jnp.float32)
  logits = jnp.einsum('bqhd,bkhd->bhqk', scaled, k.astype(jnp.float32))
  want = jax.nn.softmax(logits, axis=-1)
  assert float(jnp.max(jnp.abs(logits))) > 8  # where bf16 steps are 1/16
  large = want > 0.05
  error = jnp.abs(weights.astype(jnp.float32) - want) / want
  assert float(jnp.max(jnp.where(large, error, 0.0))) < 0.01


def test_padded_keys_get_exactly_zero_weight_and_do_not_change_the_output():
  rng = np.random.default_rng(1)
  q, k, v = (rng.normal(size=(1, 3, 2, 4)).astype(np.float32)
             for _ in range(3))
  key_valid = jnp.array([[True, False, True]])
  mask = attention.padding_mask(jnp.ones((1, 3), bool), key_valid)
  out, weights = attention.dot_product_attention(q, k, v, mask=mask,
                                                 return_weights=True)
  np.testing.assert_array_equal(weights[..., 1], 0.0)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
  # Whatever the padded key and value hold, the output stays the same.
  k2, v2 = k.copy(), v.copy()
  k2[:, 1], v2[:, 1] = 1e3, -1e3
  out2 = attention.dot_product_attention(q, k2, v2, mask=mask)
  np.testing.assert_allclose(out2, out, rtol=1e-6, atol=1e-6)
  # And it equals attention over the real keys only.
  keep = np.array([0, 2])
  np.testing.assert_allclose(
      attention.dot_product_attention(q, k[:, keep], v[:, keep]), out,
      rtol=1e-5, atol=1e-6)


def test_query_row_without_visible_keys_gets_zero_weights_not_uniform():
  q = k = v = jnp.ones((1, 2, 1, 4))
  mask = attention.padding_mask(jnp.array([[True, False]]),
                                jnp.array([[False, False]]))
  out, weights = attention.dot_product_attention(q, k, v, mask=mask,
                                                 return_weights=True)
  np.testing.assert_array_equal(weights, 0.0)
  np.testing.assert_array_equal(out, 0.0)


def test_multi_head_attention_with_causal_mask_gives_no_weight_to_the_future():
  mha = attention.MultiHeadAttention(num_heads=2)
  x = jax.random.normal(jax.random.key(0), (2, 5, 8))
  params = jax.jit(mha.init)(jax.random.key(1), x)
  out, weights = jax.jit(functools.partial(mha.apply, return_weights=True))(
      params, x, mask=attention.causal_mask(5))
  chex.assert_shape(out, (2, 5, 8))
  chex.assert_shape(weights, (2, 2, 5, 5))
  future = ~np.tril(np.ones((5, 5), bool))
  np.testing.assert_array_equal(np.asarray(weights)[..., future], 0.0)


def test_causal_attention_with_a_mask_applies_both():
  """causal=True and a padding mask: the future and the padding are both
  hidden, not one instead of the other."""
  mha = attention.MultiHeadAttention(num_heads=2)
  x = jax.random.normal(jax.random.key(0), (2, 5, 8))
  params = jax.jit(mha.init)(jax.random.key(1), x)
  valid = jnp.array([[True] * 5, [True] * 3 + [False] * 2])
  pad = attention.padding_mask(valid, valid)
  np.testing.assert_allclose(
      mha.apply(params, x, mask=pad, causal=True),
      mha.apply(params, x, mask=attention.combine_masks(
          attention.causal_mask(5), pad)), atol=1e-6)


def test_multi_head_attention_kv_cache_matches_full_causal_attention():
  mha = attention.MultiHeadAttention(num_heads=2)
  x = jax.random.normal(jax.random.key(0), (2, 6, 8))
  params = jax.jit(mha.init)(jax.random.key(1), x)['params']
  full = jax.jit(mha.apply)({'params': params}, x,
                            mask=attention.causal_mask(6))
  cache = jax.eval_shape(functools.partial(mha.init, decode=True),
                         jax.random.key(1), x)['cache']
  cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), cache)
  step = jax.jit(functools.partial(mha.apply, decode=True, mutable=['cache']))
  outs = []
  for start, stop in ((0, 3), (3, 4), (4, 6)):  # prefill, then increments
    out, variables = step({'params': params, 'cache': cache},
                          x[:, start:stop])
    cache = variables['cache']
    outs.append(out)
  np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, rtol=1e-5,
                             atol=1e-6)
  assert int(cache['index']) == 6
  # The cache is full: a seventh token gets NaN, not the last slot
  # overwritten.
  out, _ = step({'params': params, 'cache': cache}, x[:, :1])
  assert np.isnan(np.asarray(out)).all()


@pytest.mark.parametrize('features,heads', [(130, 4), (6, 8)])
def test_a_width_that_does_not_split_into_the_heads_is_refused(features,
                                                               heads):
  layer = attention.MultiHeadAttention(num_heads=heads)
  with pytest.raises(ValueError, match='do not split into'):
    layer.init(jax.random.key(0), jnp.zeros((1, 3, features)))


def test_kv_cache_rejects_cross_attention():
  mha = attention.MultiHeadAttention(num_heads=2)
  x = jnp.ones((1, 3, 8))
  with pytest.raises(ValueError, match='self-attention'):
    mha.init(jax.random.key(0), x, x, decode=True)


@pytest.mark.parametrize('positional', ['learned', 'sinusoidal'])
def test_gpt_logits_never_look_ahead(make_tiny_gpt, positional):
  """Changing token t + 1 leaves the logits at 0..t unchanged and changes
  those at t + 1 and after."""
  model, params = make_tiny_gpt(positional=positional)
  length = 10
  tokens = jax.random.randint(jax.random.key(2), (1, length), 0, 13)
  apply = jax.jit(lambda t: model.apply({'params': params}, t))
  base = np.asarray(apply(tokens))
  for t in range(length - 1):
    changed = tokens.at[0, t + 1].set((tokens[0, t + 1] + 5) % 13)
    logits = np.asarray(apply(changed))
    np.testing.assert_array_equal(
        logits[0, :t + 1], base[0, :t + 1],
        err_msg=f'logits up to {t} depend on token {t + 1}')
    moved = np.abs(logits[0, t + 1:] - base[0, t + 1:]).max(axis=-1)
    assert (moved > 1e-6).all(), (
        f'changing token {t + 1} left some later logits unchanged: {moved}')
