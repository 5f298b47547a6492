"""Causal self-attention as one fused custom call on XLA's CPU backend.

`lm_jax.nn.attention.dot_product_attention` is the reference. On a CPU,
at the sizes GPT trains at there (64 positions, heads of 32), XLA runs it
as a dozen small kernels forward and as many backward, with the heads
transposed to the front and back around them. The C++ in
`fused_attention_cpu.cc` does a whole forward or backward pass in one call,
reading q, k and v straight from the fused projection's
`[batch, length, 3, heads, head_dim]` output and writing the
`[batch, length, heads, head_dim]` result the output projection reads.

The kernel is compiled on first use (`lm_jax.nn.cpu_kernels`); where that
fails, `available()` is False and attention stays in XLA. Under a sharded
`jit` each device runs the kernel on its own rows of the batch
(`cpu_kernels.batch_partitioned`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.nn import cpu_kernels

Array = jax.Array

_FORWARD, _BACKWARD = 'lm_jax_attention_forward', 'lm_jax_attention_backward'
_KERNEL = cpu_kernels.Kernel(
    'fused_attention_cpu.cc',
    {_FORWARD: 'LmJaxCausalAttentionForward',
     _BACKWARD: 'LmJaxCausalAttentionBackward'},
    'fused attention kernel', 'attention runs in XLA')


def available() -> bool:
  """Whether the kernel is built and registered (`cpu_kernels.Kernel`)."""
  return _KERNEL.available()


@functools.cache
def _calls(scale: float):
  """The forward and backward custom calls for one `scale`, each split
  over the batch when it is sharded."""
  _KERNEL.require()

  def forward(qkv):
    batch, length, _, heads, head_dim = qkv.shape
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.ffi.ffi_call(
        _FORWARD, (f32(batch, length, heads, head_dim),
                   f32(batch, heads, length, 2)),
        vmap_method='sequential')(qkv, scale=np.float32(scale))

  def backward(qkv, out, stats, d_out):
    return jax.ffi.ffi_call(
        _BACKWARD, jax.ShapeDtypeStruct(qkv.shape, jnp.float32),
        vmap_method='sequential')(qkv, out, stats, d_out,
                                  scale=np.float32(scale))

  return (cpu_kernels.batch_partitioned(forward, 'b t three h d',
                                        ('b t h d', 'b h t two')),
          cpu_kernels.batch_partitioned(
              backward, 'b t three h d, b t h d, b h t two, b t h d',
              'b t three h d'))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def causal_self_attention(qkv: Array, scale: float) -> Array:
  """softmax(scale q k^T, causal) v for every head.

  Equal, to float32 rounding, to `dot_product_attention` with a causal
  mask and no dropout when `scale` is `head_dim ** -0.5`, the scaling that
  function applies.

  Args:
    qkv: `[batch, length, 3, heads, head_dim]` float32: q, k and v of every
      position and head.
    scale: multiplies the logits (usually `head_dim ** -0.5`).

  Returns:
    `[batch, length, heads, head_dim]` float32.
  """
  return _calls(float(scale))[0](qkv)[0]


def _fwd(qkv, scale):
  out, stats = _calls(float(scale))[0](qkv)
  return out, (qkv, out, stats)


def _bwd(scale, residuals, d_out):
  qkv, out, stats = residuals
  return (_calls(float(scale))[1](qkv, out, stats, d_out),)


causal_self_attention.defvjp(_fwd, _bwd)
