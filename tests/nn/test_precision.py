"""Tests of lm_jax.nn.precision: bfloat16-operand matmuls with float32
results, their hand-written gradients, and the models that use them."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.models.gpt import GPT, GPTConfig
from lm_jax.nn import precision

_DENSE = (((1,), (0,)), ((), ()))


def _rounded(x):
  """`x` rounded to bfloat16, back in float64 numpy."""
  return np.asarray(jnp.asarray(x).astype(jnp.bfloat16), np.float64)


def _reference(x, w, g):
  """Forward and gradients of sum(g * (x @ w)) in float64 numpy, from
  bfloat16-rounded x, w and g: what the bfloat16 products compute up to the
  float32 accumulation (and, for the gradients, the rounding of g)."""
  x64, w64, g64 = _rounded(x), _rounded(w), _rounded(g)
  return x64 @ w64, g64 @ w64.T, x64.T @ g64


@pytest.mark.parametrize('m,k,n', [(96, 64, 160),   # widening: K <= N
                                   (80, 192, 64)])  # narrowing: K > N
def test_bf16_dense_matches_rounded_operands_forward_and_backward(m, k, n):
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (m, k))
  w = jax.random.normal(keys[1], (k, n))
  g = jax.random.normal(keys[2], (m, n))
  out, vjp = jax.vjp(
      lambda a, b: precision.bf16_dot_general(a, b, _DENSE), x, w)
  dx, dw = vjp(g)
  want_out, want_dx, want_dw = _reference(x, w, g)
  assert out.dtype == dx.dtype == dw.dtype == jnp.float32
  # Products of bfloat16 values are exact in float32; only the order of the
  # float32 sums differs from float64.
  np.testing.assert_allclose(out, want_out, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(dw, want_dw, rtol=1e-4, atol=1e-3)
  # ... and all of them close to the float32 product (bfloat16 keeps 8 bits).
  np.testing.assert_allclose(out, x @ w, rtol=0.05, atol=0.3)


def test_dense_general_with_several_contracted_dims_is_reshaped():
  """DenseGeneral's attention output projection contracts (heads, dim)."""
  keys = jax.random.split(jax.random.key(1), 2)
  x = jax.random.normal(keys[0], (70, 4, 16))
  w = jax.random.normal(keys[1], (4, 16, 96))
  dims = (((1, 2), (0, 1)), ((), ()))
  out = precision.bf16_dot_general(x, w, dims)
  chex.assert_shape(out, (70, 96))
  np.testing.assert_allclose(
      out, _rounded(x).reshape(70, 64) @ _rounded(w).reshape(64, 96),
      rtol=1e-4, atol=1e-3)
  grads = jax.grad(lambda a, b: precision.bf16_dot_general(a, b, dims).sum(),
                   argnums=(0, 1))(x, w)
  chex.assert_shape(grads, ((70, 4, 16), (4, 16, 96)))


@pytest.mark.parametrize('x_shape,w_shape,dims', [
    ((8, 64), (64, 64), _DENSE),                        # 8 rows: too small
    ((70, 64), (64, 2), _DENSE),                        # a 2-class head
    ((2, 70, 64), (2, 64, 80), (((2,), (1,)), ((0,), (0,)))),  # batched
])
def test_products_it_does_not_handle_stay_float32(x_shape, w_shape, dims):
  keys = jax.random.split(jax.random.key(2), 2)
  x, w = (jax.random.normal(k, s) for k, s in zip(keys, (x_shape, w_shape)))
  np.testing.assert_array_equal(precision.bf16_dot_general(x, w, dims),
                                jax.lax.dot_general(x, w, dims))


def test_flax_dense_takes_it_as_its_dot_general():
  dense = nn.Dense(96, dot_general=precision.bf16_dot_general)
  x = jax.random.normal(jax.random.key(3), (2, 40, 64))
  params = dense.init(jax.random.key(4), x)
  out = dense.apply(params, x)
  kernel, bias = params['params']['kernel'], params['params']['bias']
  want = np.einsum('blk,kn->bln', _rounded(x), _rounded(kernel)) + bias
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)


def test_attend_is_the_tied_output_layer():
  keys = jax.random.split(jax.random.key(5), 2)
  table = jax.random.normal(keys[0], (120, 64))
  x = jax.random.normal(keys[1], (80, 64))
  g = jax.random.normal(jax.random.key(6), (80, 120))

  def attend(t, a, matmul_dtype=''):
    embed = nn.Embed(120, 64).bind({'params': {'embedding': t}})
    return precision.attend(embed, a, matmul_dtype)

  np.testing.assert_allclose(attend(table, x), x @ table.T,
                             rtol=1e-5, atol=1e-4)
  out, vjp = jax.vjp(lambda a, t: attend(t, a, 'bfloat16'), x, table)
  dx, dtable = vjp(g)
  np.testing.assert_allclose(out, _rounded(x) @ _rounded(table).T,
                             rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(dx, _rounded(g) @ _rounded(table),
                             rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(dtable, g.T @ x, rtol=1e-4, atol=1e-3)


def test_dot_general_for_names_the_choices():
  assert precision.dot_general_for('') is None
  assert precision.dot_general_for('float32') is None
  assert precision.dot_general_for('bfloat16') is precision.bf16_dot_general
  with pytest.raises(ValueError, match='matmul_dtype'):
    precision.dot_general_for('float16')


def test_gpt_with_bf16_matmuls_stays_close_to_float32_and_trains():
  """Same parameters, float32 vs bfloat16-operand matmuls: the logits and
  the gradients agree to bfloat16's precision (8 bits of mantissa)."""
  kwargs = dict(vocab_size=96, num_layers=2, num_heads=2, embed_dim=64,
                max_length=48)
  full, mixed = GPT(GPTConfig(**kwargs)), GPT(GPTConfig(
      **kwargs, matmul_dtype='bfloat16'))
  tokens = jax.random.randint(jax.random.key(6), (2, 48), 0, 96)
  # Jitted: op by op, a GPT's passes take seconds each.
  params = jax.jit(full.init)(jax.random.key(7), tokens)['params']

  def loss(model, p):
    logits = model.apply({'params': p}, tokens)
    return -jnp.mean(jax.nn.log_softmax(logits)[..., 0])

  want, want_grads = jax.jit(jax.value_and_grad(lambda p: loss(full, p)))(
      params)
  got, grads = jax.jit(jax.value_and_grad(lambda p: loss(mixed, p)))(params)
  np.testing.assert_allclose(got, want, rtol=1e-2)
  flat = lambda t: jnp.concatenate(  # noqa: E731
      [a.ravel() for a in jax.tree.leaves(t)])
  cosine = jnp.vdot(flat(grads), flat(want_grads)) / (
      jnp.linalg.norm(flat(grads)) * jnp.linalg.norm(flat(want_grads)))
  assert cosine > 0.99
  # It did round. (Not seen in the loss, whose mean averages the rounding
  # errors away to float32's last digit.)
  got, want = (np.asarray(jax.jit(model.apply)({'params': params}, tokens))
               for model in (mixed, full))
  assert not np.allclose(got, want, rtol=1e-4, atol=0)
  assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


@pytest.mark.parametrize('tie', [False, True])
def test_rnn_lm_softmax_layer_with_bf16_matmuls(tie):
  """Logits of order 1 (the weights scaled up from their ±0.1 start) agree
  with float32's to bfloat16's precision, and so do the gradients."""
  from lm_jax.models.rnn_lm import RNNLM, RNNLMConfig
  kwargs = dict(vocab_size=100, embed_dim=64, hidden_size=64, num_layers=1,
                tie_embeddings=tie)
  full, mixed = RNNLM(RNNLMConfig(**kwargs)), RNNLM(RNNLMConfig(
      **kwargs, matmul_dtype='bfloat16'))
  tokens = jax.random.randint(jax.random.key(8), (4, 20), 0, 100)
  params = jax.tree.map(lambda x: 5 * x,
                        jax.jit(full.init)(jax.random.key(9), tokens))
  want = np.asarray(jax.jit(full.apply)(params, tokens))
  got = np.asarray(jax.jit(mixed.apply)(params, tokens))
  scale = np.abs(want).max()
  assert scale > 1
  assert np.abs(got - want).max() < 0.02 * scale
  assert not np.allclose(got, want, rtol=1e-7, atol=0)  # it did round

  def loss(model, p):
    return -jnp.mean(jax.nn.log_softmax(model.apply(p, tokens))[..., 0])

  flat = lambda t: jnp.concatenate(  # noqa: E731
      [a.ravel() for a in jax.tree.leaves(t)])
  grads, want_grads = (
      flat(jax.jit(jax.grad(lambda p, m=m: loss(m, p)))(params))
      for m in (mixed, full))
  cosine = jnp.vdot(grads, want_grads) / (
      jnp.linalg.norm(grads) * jnp.linalg.norm(want_grads))
  assert cosine > 0.99


def test_bert_classifier_with_bf16_matmuls_trains_one_step():
  import optax
  from lm_jax.models.bert import BertClassifier, BertConfig
  config = BertConfig(vocab_size=200, num_layers=1, num_heads=2,
                      embed_dim=64, mlp_dim=128, max_positions=40,
                      matmul_dtype='bfloat16')
  model = BertClassifier(config, num_classes=2, pooling='mean')
  tokens = jax.random.randint(jax.random.key(10), (4, 32), 1, 200)
  labels = jnp.array([0, 1, 1, 0])
  params = jax.jit(model.init)(jax.random.key(11), tokens)['params']
  tx = optax.adam(1e-2)

  @jax.jit
  def step(params, opt_state):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(  # noqa
        model.apply({'params': p}, tokens), labels).mean()
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, value

  opt_state = tx.init(params)
  losses = []
  for _ in range(5):
    params, opt_state, value = step(params, opt_state)
    losses.append(float(value))
  assert losses[-1] < losses[0]
