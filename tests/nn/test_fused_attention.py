"""Tests of lm_jax.nn.fused_attention: the fused CPU causal attention gives
`dot_product_attention`'s outputs and gradients at any length and head
size, inside MultiHeadAttention and GPT, under vmap and on four devices,
and the layers keep XLA's attention where the kernel does not apply."""

import functools
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.models.gpt import GPT, GPTConfig
from lm_jax.nn import attention, cpu_kernels, fused_attention

pytestmark = pytest.mark.skipif(
    not cpu_kernels.can_build(),
    reason='no C++ compiler to build the fused attention kernel')


def test_the_kernel_builds_where_a_compiler_exists():
  # A build failure is a failure, not a skip of every test below.
  assert fused_attention.available()


# np.testing.assert_allclose's tolerances, leaf by leaf.
_close = functools.partial(chex.assert_trees_all_close, rtol=1e-7)


def _reference(qkv):
  return attention.dot_product_attention(
      qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2],
      mask=attention.causal_mask(qkv.shape[1]))


def _fused(qkv):
  return fused_attention.causal_self_attention(qkv, qkv.shape[-1] ** -0.5)


def _loss(fn, qkv, weights):
  return jnp.sum(fn(qkv) * weights)


@pytest.mark.parametrize('batch,length,heads,head_dim', [
    (2, 1, 1, 8),  # one position: the weights are all 1
    (3, 17, 2, 20),  # neither a multiple of the kernel's 16 lanes
    (2, 64, 4, 32),  # the nanoGPT CPU recipe's shapes
    (1, 40, 3, 48),
])
def test_outputs_and_gradients_equal_the_reference(batch, length, heads,
                                                   head_dim):
  qkv = jax.random.normal(jax.random.key(0),
                          (batch, length, 3, heads, head_dim))
  weights = jax.random.normal(jax.random.key(1),
                              (batch, length, heads, head_dim))
  _close(_fused(qkv), _reference(qkv), atol=2e-6)
  _close(jax.grad(_loss, argnums=1)(_fused, qkv, weights),
         jax.grad(_loss, argnums=1)(_reference, qkv, weights), atol=1e-5)


def test_large_logits_do_not_overflow():
  qkv = 30.0 * jax.random.normal(jax.random.key(2), (2, 24, 3, 2, 16))
  out = _fused(qkv)
  assert np.isfinite(np.asarray(out)).all()
  _close(out, _reference(qkv), atol=1e-4)


def test_a_position_never_sees_the_next():
  qkv = jax.random.normal(jax.random.key(3), (1, 12, 3, 2, 8))
  changed = qkv.at[:, 7:].add(1.0)
  _close(_fused(changed)[:, :7], _fused(qkv)[:, :7], atol=0.0)


def test_under_vmap_equals_per_example_calls():
  qkv = jax.random.normal(jax.random.key(4), (3, 2, 9, 3, 2, 16))
  stacked = jax.jit(jax.vmap(_fused))(qkv)
  for i in range(3):
    _close(stacked[i], _fused(qkv[i]), atol=1e-6)


def test_on_four_devices_each_runs_its_own_rows():
  qkv = jax.random.normal(jax.random.key(5), (8, 16, 3, 2, 16))
  weights = jax.random.normal(jax.random.key(6), (8, 16, 2, 16))
  grad = jax.jit(jax.grad(_loss, argnums=1), static_argnums=0)
  one = grad(_fused, qkv, weights)
  mesh = jax.make_mesh((4,), ('data',))
  split = jax.sharding.NamedSharding(mesh, jax.P('data'))
  args = (jax.device_put(qkv, split), jax.device_put(weights, split))
  _close(grad(_fused, *args), one, atol=1e-6)
  compiled = grad.lower(_fused, *args).compile().as_text()
  calls = [l for l in compiled.splitlines() if 'lm_jax_attention_' in l]
  assert calls and all('f32[2,16,' in l for l in calls), calls  # 8 rows / 4


def _attention_layers(**kwargs):
  return (attention.MultiHeadAttention(num_heads=2, fused=False, **kwargs),
          attention.MultiHeadAttention(num_heads=2, fused=True, **kwargs))


def test_multi_head_attention_fused_equals_xla():
  xla, fused = _attention_layers()
  x = jax.random.normal(jax.random.key(7), (2, 11, 16))
  params = xla.init(jax.random.key(8), x, causal=True)
  loss = lambda layer, p: jnp.sum(jnp.sin(layer.apply(p, x, causal=True)))
  _close(fused.apply(params, x, causal=True),
         xla.apply(params, x, causal=True), atol=1e-6)
  _close(jax.grad(loss, argnums=1)(fused, params),
         jax.grad(loss, argnums=1)(xla, params), atol=1e-5)
  # causal=True is the causal mask given explicitly.
  _close(xla.apply(params, x, causal=True),
         xla.apply(params, x, mask=attention.causal_mask(11)), atol=0.0)


def test_the_kernel_runs_only_where_it_applies(monkeypatch):
  calls = []
  real = fused_attention.causal_self_attention
  monkeypatch.setattr(fused_attention, 'causal_self_attention',
                      lambda *a: calls.append(1) or real(*a))
  x = jax.random.normal(jax.random.key(9), (2, 6, 16))
  _, fused = _attention_layers()
  params = fused.init(jax.random.key(10), x, causal=True)
  calls.clear()
  fused.apply(params, x, causal=True)
  assert len(calls) == 1
  # Where something needs the weights or a mask, XLA's attention runs.
  fused.apply(params, x, causal=True, return_weights=True)
  fused.apply(params, x, causal=True, mutable=['intermediates'])
  fused.apply(params, x, causal=True, mask=jnp.ones((2, 1, 6, 6), bool))
  fused.apply(params, x)
  _, dropping = _attention_layers(dropout_rate=0.1)
  dropping.apply(params, x, causal=True, deterministic=False,
                 rngs={'dropout': jax.random.key(0)})
  assert len(calls) == 1
  monkeypatch.setattr(fused_attention, 'available', lambda: False)
  fused.apply(params, x, causal=True)
  assert len(calls) == 1


def test_gpt_with_the_kernel_equals_gpt_without():
  config = GPTConfig(vocab_size=17, num_layers=2, num_heads=2, embed_dim=32,
                     max_length=20)
  with_kernel = GPT(config)
  without = GPT(GPTConfig(**{**config.__dict__, 'fused_attention': False}))
  tokens = jax.random.randint(jax.random.key(11), (3, 20), 0, 17)
  # Jitted: op by op, a GPT's passes take seconds each.
  params = jax.jit(without.init)(jax.random.key(12), tokens)
  loss = lambda model, p: jnp.mean(
      jax.nn.log_softmax(model.apply(p, tokens))[..., 0])
  _close(jax.jit(with_kernel.apply)(params, tokens),
         jax.jit(without.apply)(params, tokens), atol=2e-5)
  gradient = lambda model: jax.jit(jax.grad(functools.partial(loss, model)))
  _close(gradient(with_kernel)(params), gradient(without)(params), atol=1e-5)
