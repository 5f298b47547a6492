"""lm_jax.nn.folded_dense: the same layer as flax's Dense, in other forms."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.nn.folded_dense import FoldedDense, folded_dense


def _inputs(m=12, k=8, n=40, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.standard_normal((m, k)), jnp.float32),
          jnp.asarray(rng.standard_normal((k, n)), jnp.float32),
          jnp.asarray(rng.standard_normal((n,)), jnp.float32),
          jnp.asarray(rng.standard_normal((m, n)), jnp.float32))


def test_values_and_gradients_equal_the_plain_layer():
  x, kernel, bias, g = _inputs()
  plain = lambda x, w, b: x @ w + b  # noqa: E731
  np.testing.assert_allclose(folded_dense(x, kernel, bias),
                             plain(x, kernel, bias), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda *a: jnp.sum(f(*a) * g)  # noqa: E731
  ours = jax.jit(jax.grad(loss(folded_dense), argnums=(0, 1, 2)))(
      x, kernel, bias)
  want = jax.grad(loss(plain), argnums=(0, 1, 2))(x, kernel, bias)
  for a, b, name in zip(ours, want, ('x', 'kernel', 'bias')):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)


def test_a_narrowing_layer_too():
  x, kernel, bias, _ = _inputs(m=6, k=40, n=8)
  grads = jax.grad(lambda *a: jnp.sum(folded_dense(*a) ** 2),
                   argnums=(1, 2))(x, kernel, bias)
  want = jax.grad(lambda x, w, b: jnp.sum((x @ w + b) ** 2),
                  argnums=(1, 2))(x, kernel, bias)
  for a, b in zip(grads, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_the_module_has_flax_dense_parameters_and_outputs():
  """Same names, shapes and initial values (checkpoints of one load in
  the other), same outputs over leading dims."""
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 8)),
                  jnp.float32)
  init = nn.initializers.uniform(0.2)
  ours = FoldedDense(16, kernel_init=init)
  theirs = nn.Dense(16, kernel_init=init)
  params = ours.init(jax.random.key(0), x)
  reference = theirs.init(jax.random.key(0), x)
  jax.tree.map(np.testing.assert_array_equal, params, reference)
  params = jax.tree.map(lambda p: p + 0.5, params)  # a non-zero bias
  np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x),
                             rtol=1e-5, atol=1e-5)
