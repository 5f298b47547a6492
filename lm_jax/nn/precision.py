"""Mixed precision for matmuls alone: bfloat16 operands, float32 results.

`compute_dtype='bfloat16'` runs a whole model in bfloat16, the usual choice
on accelerators. On a CPU it costs more than it saves: elementwise bfloat16
has no hardware there and is converted to float32 and back around every
kernel. CPUs with AMX units (Intel Sapphire Rapids and later) do have fast
bfloat16 matmuls (on a 2-core Sapphire Rapids VM XLA's reach 1.0-1.6
TFLOP/s against 0.29 in float32; on an AMD Zen 4 with AVX512-BF16 alone
they were slower than float32), so `matmul_dtype='bfloat16'` rounds only
the operands of the large matmuls to bfloat16, accumulates and returns
float32, and leaves everything else (LayerNorm, softmax, GELU, residual
sums, the optimizer) in float32. PyTorch's `torch.autocast` on CPU does the
same.

The backward pass is written out rather than left to autodiff, for two
reasons that are specific to XLA's CPU backend (jax 0.10): its fast bfloat16
GEMM takes only products whose left operand is contracted on its last
dimension, and it has no bfloat16 kernel with a bfloat16 result of the same
speed. Autodiff's weight gradient `x^T g` contracts the left operand on its
first dimension, so XLA would convert both operands to float32 and multiply
at float32 speed. Here that gradient is computed as `(x^T) g`, `x^T` made
by multiplying with an identity matrix (an explicit transpose would be
folded back into the product by XLA), when the layer does not narrow
(`K <= N`); when it does, the identity product on x would cost more than
the gradient itself, so the narrower `g` is transposed instead and the
small `[N, K]` result `(g^T) x` transposed back, behind an optimization
barrier (without it XLA folds that transpose into the product, back into
the slow form). For GPT's MLP output projection (K = 4N) that took the
bfloat16 step of the nanoGPT CPU recipe from 18.9-19.9 ms to 15.7-17.6
(benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
DotGeneral = Callable[..., Array]

# Smaller products stay float32: they gain little, and a product that XLA's
# CPU backend does not hand to its fast GEMM lands in a fallback kernel with
# no bfloat16 x bfloat16 -> float32 case at all.
_MIN_SIDE = 64


def _dense_sizes(lhs, rhs, dimension_numbers) -> Optional[tuple[int, int, int]]:
  """(M, K, N) when the product is a dense layer's: `lhs`'s last dims
  contracted with `rhs`'s first dims, in order, no batch dims; else None."""
  (lhs_contract, rhs_contract), (lhs_batch, _) = dimension_numbers
  c = len(lhs_contract)
  if lhs_batch or tuple(lhs_contract) != tuple(
      range(lhs.ndim - c, lhs.ndim)) or tuple(rhs_contract) != tuple(range(c)):
    return None
  k = math.prod(rhs.shape[:c])
  return lhs.size // max(k, 1), k, rhs.size // max(k, 1)


def _bf16_product(a: Array, b: Array, contracting) -> Array:
  """`a` and `b` contracted over `contracting` (`(a's dims, b's dims)`, no
  batch dims), the operands rounded to bfloat16, the result float32."""
  return lax.dot_general(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                         (contracting, ((), ())),
                         preferred_element_type=jnp.float32)


def _transposed(x: Array) -> Array:
  """`x.T` for a bfloat16 `[M, K]`, as a product with the identity (exact:
  one non-zero term per sum), which XLA cannot fold into the next GEMM."""
  eye = jnp.eye(x.shape[1], dtype=x.dtype)
  return _bf16_product(eye, x, ((1,), (1,))).astype(x.dtype)


@jax.custom_vjp
def _bf16_dense(x: Array, w: Array) -> Array:
  """`[M, K] x [K, N] -> [M, N]` float32, operands rounded to bfloat16."""
  return _bf16_product(x, w, ((1,), (0,)))


def _bf16_dense_fwd(x, w):
  x16, w16 = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  return _bf16_product(x16, w16, ((1,), (0,))), (x16, w16)


def _bf16_dense_bwd(residuals, g):
  x16, w16 = residuals
  # g w^T: the right operand contracted on its last dim is a fast form.
  dx = _bf16_product(g, w16, ((1,), (1,)))
  k, n = w16.shape
  if k <= n:
    dw = _bf16_product(_transposed(x16), g, ((1,), (0,)))
  else:  # narrowing: transpose the narrower g, then (g^T x)^T
    dw_t = _bf16_product(_transposed(g.astype(jnp.bfloat16)), x16,
                         ((1,), (0,)))
    dw = lax.optimization_barrier(dw_t).T
  return dx, dw


_bf16_dense.defvjp(_bf16_dense_fwd, _bf16_dense_bwd)


def bf16_dot_general(lhs: Array, rhs: Array, dimension_numbers,
                     precision=None, preferred_element_type=None) -> Array:
  """`lax.dot_general` with bfloat16 operands and a float32 result.

  A drop-in `dot_general` for `flax.linen.Dense`/`DenseGeneral`. Products
  that are not a dense layer's, that are small (a side under 64), or whose
  operands are not float32 go to `lax.dot_general` unchanged.

  Args:
    lhs: `[..., K...]`, the inputs.
    rhs: `[K..., N...]`, the kernel.
    dimension_numbers: as `lax.dot_general`'s.
    precision: passed on to `lax.dot_general` for products kept as they are.
    preferred_element_type: the result's dtype (float32 when None).

  Returns:
    `[..., N...]`.
  """
  sizes = _dense_sizes(lhs, rhs, dimension_numbers)
  if (sizes is None or min(sizes) < _MIN_SIDE or lhs.dtype != jnp.float32
      or rhs.dtype != jnp.float32):
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)
  m, k, n = sizes
  c = len(dimension_numbers[0][0])
  out = _bf16_dense(lhs.reshape(m, k), rhs.reshape(k, n))
  out = out.reshape(lhs.shape[:lhs.ndim - c] + rhs.shape[c:])
  return out.astype(preferred_element_type or jnp.float32)


def dot_general_for(matmul_dtype: str) -> Optional[DotGeneral]:
  """The `dot_general` for a config's `matmul_dtype`: None (flax's default,
  `lax.dot_general` in the layer's dtype) for '' or 'float32', or
  `bf16_dot_general` for 'bfloat16'."""
  if matmul_dtype in ('', 'float32'):
    return None
  if matmul_dtype == 'bfloat16':
    return bf16_dot_general
  raise ValueError(f"unknown matmul_dtype {matmul_dtype!r}: use '' (the "
                   "compute dtype), 'float32' or 'bfloat16'")


@jax.custom_vjp
def _bf16_attend(x: Array, table: Array) -> Array:
  """`[M, D] x [V, D]^T -> [M, V]` float32, operands rounded to bfloat16."""
  return _bf16_product(x, table, ((1,), (1,)))


def _bf16_attend_fwd(x, table):
  table16 = table.astype(jnp.bfloat16)
  return _bf16_product(x, table16, ((1,), (1,))), (x, table16)


def _bf16_attend_bwd(residuals, g):
  x, table16 = residuals
  dx = _bf16_product(g, table16, ((1,), (0,)))
  # The table's gradient g^T x contracts both operands on their first dim,
  # a form XLA's CPU backend has no bfloat16 kernel for (and would transpose
  # into one after choosing kernels): float32 here.
  dtable = lax.dot_general(g, x, (((0,), (0,)), ((), ())))
  return dx, dtable


_bf16_attend.defvjp(_bf16_attend_fwd, _bf16_attend_bwd)


def attend(embed: nn.Embed, x: Array, matmul_dtype: str = '') -> Array:
  """`embed.attend(x)`, a tied output layer, in `matmul_dtype`.

  Args:
    embed: the bound `[vocab, dim]` token embedding.
    x: `[..., dim]`.
    matmul_dtype: as `dot_general_for`'s; with 'bfloat16' the logits and the
      inputs' gradient come from bfloat16 operands and the table's gradient
      is float32; otherwise, and for small or non-float32 products,
      `embed.attend(x)` itself.

  Returns:
    `[..., vocab]` logits.
  """
  table = embed.embedding
  if (dot_general_for(matmul_dtype) is None or x.dtype != jnp.float32
      or table.dtype != jnp.float32
      or min(x.size // x.shape[-1], *table.shape) < _MIN_SIDE):
    return embed.attend(x)
  rows = _bf16_attend(x.reshape(-1, x.shape[-1]), table)
  return rows.reshape(x.shape[:-1] + table.shape[:1])
