"""Tests of lm_jax.nn.transformer: activations, the position-wise MLP and
pre-/post-LN blocks with and without cross-attention."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from lm_jax.nn import attention, transformer
from lm_jax.nn.dropout import drop_probability


@pytest.mark.parametrize('name,reference', [
    ('gelu', lambda x: jax.nn.gelu(x, approximate=False)),
    ('gelu_tanh', lambda x: jax.nn.gelu(x, approximate=True)),
    ('relu', jax.nn.relu)])
def test_activations_match_jax_values_and_gradients(name, reference):
  fn = transformer.ACTIVATIONS[name]
  x = jnp.linspace(-6.0, 6.0, 241)
  # atol: in float32 an erf-based GELU rounds its far negative tail (below
  # 1e-6 in size) to zero; jax.nn.gelu keeps it. Harmless either way.
  np.testing.assert_allclose(fn(x), reference(x), rtol=1e-6, atol=1e-6)
  grad = jax.vmap(jax.grad(fn))(x)
  np.testing.assert_allclose(grad, jax.vmap(jax.grad(reference))(x),
                             rtol=1e-5, atol=1e-6)


def test_exact_gelu_gradient_passes_numerical_check():
  x = jnp.array([-3.0, -1.2, -0.3, 0.0, 0.4, 1.7, 2.5])
  check_grads(transformer.ACTIVATIONS['gelu'], (x,), order=1,
              modes=('rev',), atol=1e-2, rtol=1e-2)


def test_mlp_is_position_wise():
  mlp = transformer.MLP(hidden_dim=16)
  x = jax.random.normal(jax.random.key(0), (2, 5, 8))
  params = jax.jit(mlp.init)(jax.random.key(1), x)
  apply = jax.jit(mlp.apply)
  out = apply(params, x)
  chex.assert_shape(out, (2, 5, 8))
  single = apply(params, x[1:2, 3:4])
  np.testing.assert_allclose(out[1:2, 3:4], single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('pre_norm', [True, False])
def test_block_keeps_shape_and_respects_the_causal_mask(pre_norm):
  block = transformer.TransformerBlock(num_heads=2, mlp_dim=32,
                                       pre_norm=pre_norm)
  x = jax.random.normal(jax.random.key(0), (2, 6, 8))
  mask = attention.causal_mask(6)
  params = jax.jit(block.init)(jax.random.key(1), x, mask=mask)
  apply = jax.jit(block.apply)
  out = apply(params, x, mask=mask)
  chex.assert_shape(out, (2, 6, 8))
  changed = apply(params, x.at[:, 4:].add(1.0), mask=mask)
  np.testing.assert_allclose(changed[:, :4], out[:, :4], rtol=1e-6,
                             atol=1e-6)
  if not pre_norm:
    # Post-LN ends in a LayerNorm (unit scale, zero bias at init).
    np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.var(-1), 1.0, rtol=1e-3)


def test_cross_attention_block_reads_the_encoder_output():
  block = transformer.TransformerBlock(num_heads=2, mlp_dim=32,
                                       cross_attention=True)
  x = jax.random.normal(jax.random.key(0), (2, 4, 8))
  encoded = jax.random.normal(jax.random.key(1), (2, 7, 8))
  params = jax.jit(block.init)(jax.random.key(2), x, encoded=encoded)
  assert 'cross_attention' in params['params']
  apply = jax.jit(block.apply)
  out = apply(params, x, encoded=encoded)
  chex.assert_shape(out, (2, 4, 8))
  other = apply(params, x, encoded=encoded + 1.0)
  assert np.abs(np.asarray(other - out)).max() > 1e-6
  # A padded source position is invisible.
  src_valid = jnp.array([[True] * 6 + [False]] * 2)
  encoder_mask = attention.padding_mask(jnp.ones((2, 4), bool), src_valid)
  masked = apply(params, x, encoded=encoded, encoder_mask=encoder_mask)
  masked_other = apply(params, x, encoded=encoded.at[:, 6].add(5.0),
                       encoder_mask=encoder_mask)
  np.testing.assert_allclose(masked, masked_other, rtol=1e-6, atol=1e-6)


def test_residual_projections_are_scaled_by_depth():
  """GPT-2's init: the projections into the residual stream (attention's
  output, the MLP's second layer) have std 0.02 / sqrt(2 * layers)."""
  block = transformer.TransformerBlock(num_heads=4, mlp_dim=256, num_layers=8)
  params = block.init(jax.random.key(0), jnp.ones((1, 4, 64)))['params']
  for kernel in (params['mlp']['proj']['kernel'],
                 params['self_attention']['out']['kernel']):
    np.testing.assert_allclose(np.std(kernel), 0.02 / np.sqrt(16), rtol=0.05)


def test_a_sublayers_output_is_dropped_once_and_the_residual_never():
  """With attention's output zeroed, out - x is the MLP branch alone: in
  training, about half of it survives (not a quarter: dropped twice), at
  1 / keep of its value, and x itself is never dropped."""
  block = transformer.TransformerBlock(num_heads=2, mlp_dim=32,
                                       dropout_rate=0.5)
  x = jax.random.normal(jax.random.key(0), (4, 16, 16))
  params = block.init(jax.random.key(1), x)['params']
  params['self_attention']['out'] = jax.tree.map(
      jnp.zeros_like, params['self_attention']['out'])
  apply = jax.jit(block.apply, static_argnames='deterministic')
  evaluated = np.asarray(apply({'params': params}, x)) - np.asarray(x)
  trained = np.asarray(apply({'params': params}, x, deterministic=False,
                             rngs={'dropout': jax.random.key(2)}))
  branch = trained - np.asarray(x)
  kept = np.abs(branch) > 1e-6
  assert 0.4 < kept.mean() < 0.6
  np.testing.assert_allclose(
      branch[kept], evaluated[kept] / (1 - drop_probability(0.5)),
      rtol=1e-3, atol=1e-5)
  # Where the branch was dropped, the output is x exactly.
  np.testing.assert_allclose(trained[~kept], np.asarray(x)[~kept],
                             atol=1e-6)
