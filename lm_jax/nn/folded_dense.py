"""A float32 dense layer written for XLA's CPU backend: `FoldedDense`.

`flax.linen.Dense` differentiated by JAX is two things XLA's CPU backend
does slowly at the size of a word-level softmax layer; `folded_dense` has
the same parameters and computes the same sums in faster forms. Its twin
for bfloat16 operands is `lm_jax.nn.precision`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def _with_ones(x: Array) -> Array:
  """`[M, K]` -> `[M, K + 1]`, a column of ones appended."""
  return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)


@jax.custom_vjp
def folded_dense(x: Array, kernel: Array, bias: Array) -> Array:
  """`x @ kernel + bias` in float32, the bias folded into the product.

  For a wide float32 layer (a softmax over a large vocabulary) on XLA's CPU
  backend, where two forms that autodiff gives are slow: a separate bias
  add, which makes XLA write the `[M, N]` product and read it again (here
  the bias is one more kernel row, against a column of ones in `x`), and
  the kernel's gradient `x^T g`, which contracts `x` on its first
  dimension and lands in a slower GEMM than `(x^T) g` with `x^T` made first
  (behind an optimization barrier, or XLA folds the transpose back in; the
  bias's gradient comes out of the same product, as its last row). For
  `ptb_lstm_small`'s `[700, 200] x [200, 10000]` softmax layer that took
  the float32 step from 69.4-69.9 to 56.4-59.5 ms (benchmarks/RESULTS.md).
  The same sums as `x @ kernel + bias`, rounded in another order.

  Args:
    x: float32 `[M, K]`.
    kernel: float32 `[K, N]`.
    bias: float32 `[N]`.

  Returns:
    float32 `[M, N]`.
  """
  return _with_ones(x) @ jnp.concatenate([kernel, bias[None]], axis=0)


def _folded_dense_fwd(x, kernel, bias):
  return folded_dense(x, kernel, bias), (x, kernel)


def _folded_dense_bwd(residuals, g):
  x, kernel = residuals
  dx = lax.dot_general(g, kernel, (((1,), (1,)), ((), ())))  # g kernel^T
  both = lax.optimization_barrier(_with_ones(x).T) @ g  # [K + 1, N]
  return dx, both[:-1], both[-1]


folded_dense.defvjp(_folded_dense_fwd, _folded_dense_bwd)


class FoldedDense(nn.Module):
  """`flax.linen.Dense` (float32, with a bias) through `folded_dense` on
  CPUs: the same parameters (`kernel` `[K, N]`, `bias` `[N]`), so
  checkpoints of either load in the other. On other backends it is plain
  `x @ kernel + bias`: there the forms `folded_dense` avoids are not slow,
  and a bias inside a TF32 or bfloat16-pass product would lose digits.

  Attributes:
    features: N.
    kernel_init: the kernel's initializer (flax's Dense default).
    bias_init: the bias's initializer (zeros).
  """

  features: int
  kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """`[..., K]` -> `[..., N]`."""
    kernel = self.param('kernel', self.kernel_init,
                        (x.shape[-1], self.features))
    bias = self.param('bias', self.bias_init, (self.features,))
    if jax.default_backend() != 'cpu':
      return x @ kernel + bias
    rows = folded_dense(x.reshape(-1, x.shape[-1]), kernel, bias)
    return rows.reshape(x.shape[:-1] + (self.features,))
