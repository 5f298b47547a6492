"""Tests of lm_jax.nn.rnn_attention: the score formulas against numpy,
weights that sum to one over real tokens and ignore padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.nn.rnn_attention import (AdditiveAttention, LuongAttention,
                                     masked_softmax)

BATCH, SRC, MEM, QUERY = 2, 5, 6, 4
LENGTHS = np.array([5, 3])


@pytest.fixture
def inputs():
  rng = np.random.default_rng(0)
  query = rng.normal(size=(BATCH, QUERY)).astype(np.float32)
  memory = rng.normal(size=(BATCH, SRC, MEM)).astype(np.float32)
  mask = np.arange(SRC)[None] < LENGTHS[:, None]
  return query, memory, mask


def _modules():
  return {'bahdanau': AdditiveAttention(8),
          'dot': LuongAttention('dot', query_dim=MEM),
          'general': LuongAttention('general', query_dim=QUERY),
          'concat': LuongAttention('concat', query_dim=QUERY, features=7)}


def _run(module, query, memory, mask, params=None):
  def call(m, q, mem, mk):
    return m(q, m.keys(mem), mem, mk)
  if params is None:
    params = module.init(jax.random.key(0), query, memory, mask,
                         method=call)
  return params, module.apply(params, query, memory, mask, method=call)


@pytest.mark.parametrize('name', ['bahdanau', 'dot', 'general', 'concat'])
def test_weights_sum_to_one_over_real_tokens_and_padding_is_ignored(
    inputs, name):
  query, memory, mask = inputs
  module = _modules()[name]
  if name == 'dot':
    query = np.concatenate([query, query[:, :2]], -1)  # as wide as memory
  params, (context, weights) = _run(module, query, memory, mask)
  assert context.shape == (BATCH, MEM) and weights.shape == (BATCH, SRC)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(weights)[1, 3:], 0.0)
  # Whatever the padding holds, nothing changes.
  garbage = memory.copy()
  garbage[1, 3:] = 1e3
  _, (context2, weights2) = _run(module, query, garbage, mask, params)
  np.testing.assert_allclose(context2, context, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(weights2, weights, rtol=1e-5, atol=1e-7)


def _softmax(x, mask):
  x = np.where(mask, x, -np.inf)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_additive_attention_is_v_tanh_ws_plus_uh(inputs):
  query, memory, mask = inputs
  module = _modules()['bahdanau']
  params, (context, weights) = _run(module, query, memory, mask)
  p = params['params']
  energy = np.tanh(memory @ p['U']['kernel'] + p['U']['bias']
                   + (query @ p['W']['kernel'])[:, None])
  expected = _softmax((energy @ p['v']['kernel'])[..., 0], mask)
  np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(context, np.einsum('bs,bsd->bd', expected,
                                                memory), rtol=1e-5, atol=1e-5)


def test_luong_scores(inputs):
  query, memory, mask = inputs
  modules = _modules()
  wide = np.concatenate([query, query[:, :2]], -1)
  _, (_, dot) = _run(modules['dot'], wide, memory, mask)
  np.testing.assert_allclose(
      dot, _softmax(np.einsum('bd,bsd->bs', wide, memory), mask), rtol=1e-5,
      atol=1e-6)
  params, (_, general) = _run(modules['general'], query, memory, mask)
  w_a = params['params']['W_a']['kernel']  # [memory, query]
  np.testing.assert_allclose(
      general, _softmax(np.einsum('bd,bsd->bs', query, memory @ w_a), mask),
      rtol=1e-5, atol=1e-6)
  params, (_, concat) = _run(modules['concat'], query, memory, mask)
  p = params['params']
  energy = np.tanh(memory @ p['W_memory']['kernel'] + p['W_memory']['bias']
                   + (query @ p['W_query']['kernel'])[:, None])
  np.testing.assert_allclose(
      concat, _softmax((energy @ p['v']['kernel'])[..., 0], mask), rtol=1e-5,
      atol=1e-6)


def test_dot_score_needs_matching_widths(inputs):
  query, memory, mask = inputs
  with pytest.raises(ValueError, match='as wide'):
    _run(LuongAttention('dot', query_dim=QUERY), query, memory, mask)


def test_unknown_luong_score_is_rejected(inputs):
  query, memory, mask = inputs
  with pytest.raises(ValueError, match='unknown Luong score'):
    _run(LuongAttention('cosine', query_dim=QUERY), query, memory, mask)


def test_an_all_padding_row_gets_zero_weights():
  weights = masked_softmax(jnp.ones((2, 3)),
                           jnp.array([[True, True, False], [False] * 3]))
  np.testing.assert_allclose(weights, [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
