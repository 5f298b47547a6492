"""Softmax cross-entropy as one fused custom call on XLA's CPU backend.

`lm_jax.losses.softmax_cross_entropy` (log-sum-exp minus the target's
logit, differentiated by JAX) is the reference. Over a word-level
vocabulary XLA's CPU backend runs it, the accuracy metric and its
gradient as about six passes over the `[positions, vocab]` logits; the
C++ in `fused_cross_entropy_cpu.cc` reads each row twice forward (its
maximum, then the sum of exponentials, while the row is in the L2 cache)
and writes softmax - one-hot in one pass backward, splitting the rows
across threads. The forward also says which targets are the row's argmax,
so the accuracy metric costs no further pass.

The kernel is compiled on first use (`lm_jax.nn.cpu_kernels`); where that
fails, `available()` is False and the loss stays in XLA. Under a sharded
`jit` each device runs the kernel on its own rows.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lm_jax.nn import cpu_kernels

Array = jax.Array

_FORWARD, _BACKWARD = ('lm_jax_cross_entropy_forward',
                       'lm_jax_cross_entropy_backward')
_KERNEL = cpu_kernels.Kernel(
    'fused_cross_entropy_cpu.cc',
    {_FORWARD: 'LmJaxCrossEntropyForward',
     _BACKWARD: 'LmJaxCrossEntropyBackward'},
    'fused cross-entropy kernel', 'the loss runs in XLA')


def available() -> bool:
  """Whether the kernel is built and registered (`cpu_kernels.Kernel`)."""
  return _KERNEL.available()


@functools.cache
def _calls():
  """The forward and backward custom calls, split over the rows when they
  are sharded."""
  _KERNEL.require()

  def forward(logits, targets):
    rows = jax.ShapeDtypeStruct(targets.shape, jnp.float32)
    return jax.ffi.ffi_call(_FORWARD, (rows, rows, rows),
                            vmap_method='sequential')(logits, targets)

  def backward(logits, targets, lse, d_loss):
    return jax.ffi.ffi_call(
        _BACKWARD, jax.ShapeDtypeStruct(logits.shape, jnp.float32),
        vmap_method='sequential')(logits, targets, lse, d_loss)

  return (cpu_kernels.batch_partitioned(forward, 'b v, b', ('b', 'b', 'b')),
          cpu_kernels.batch_partitioned(backward, 'b v, b, b, b', 'b v'))


@jax.custom_vjp
def _loss_and_correct(logits: Array, targets: Array) -> tuple[Array, Array]:
  loss, _, correct = _calls()[0](logits, targets)
  return loss, correct


def _fwd(logits, targets):
  loss, lse, correct = _calls()[0](logits, targets)
  return (loss, correct), (logits, targets, lse)


def _bwd(residuals, cotangents):
  logits, targets, lse = residuals
  d_loss, _ = cotangents  # `correct` is a step function: no gradient
  d_logits = _calls()[1](logits, targets, lse, d_loss)
  return d_logits, None


_loss_and_correct.defvjp(_fwd, _bwd)


def softmax_cross_entropy(logits: Array, targets: Array
                          ) -> tuple[Array, Array]:
  """-log softmax(logits)[target], and whether the target is the argmax.

  Equal, to float32 rounding, to `lm_jax.losses.softmax_cross_entropy`
  and to `lm_jax.losses.accuracy`'s (the target's logit is the row's
  largest; a tie between k classes counts 1/k), for rows whose logits are
  finite or -inf, with a finite largest;
  a row with a NaN or +inf logit has a NaN loss and counts as wrong.

  Args:
    logits: float32 `[..., vocab]`.
    targets: int `[...]`, in `[0, vocab)`.

  Returns:
    (losses `[...]` float32, correct `[...]` float32 in [0, 1]).
  """
  shape = targets.shape
  if shape != logits.shape[:-1]:  # the kernel reads one target a row
    raise ValueError(f'targets {shape} do not match logits {logits.shape}')
  flat = logits.reshape(-1, logits.shape[-1])
  loss, correct = _loss_and_correct(flat, targets.reshape(-1).astype(jnp.int32))
  return loss.reshape(shape), correct.reshape(shape)
