"""The LSTM recurrence as one fused custom call on XLA's CPU backend.

`lm_jax.nn.recurrent.RNN` unrolls a cell with `nn.scan`, which is the
reference. On CPU a small LSTM's time steps are each a few XLA thunks, and
handing their small buffers between the runtime's threads costs more than
their arithmetic (benchmarks/RESULTS.md, `ptb_lstm_small`). PyTorch's
`nn.LSTM` avoids that with a fused kernel; this module does the same: the
C++ in `fused_lstm_cpu.cc` runs a whole sequence, forward or backward, in
one XLA FFI call, splitting the independent batch rows across threads
(and across devices, when the batch is sharded).

The kernel is compiled on first use (`lm_jax.nn.cpu_kernels`); where that
fails, `available()` is False and `RNN` keeps the scan.

Only the recurrence is fused: the input projection before it and the
recurrent kernel's gradient after it (`sum_t h_{t-1}^T dgates_t`) are large
matmuls that XLA does well.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.nn import cpu_kernels

Array = jax.Array

_FORWARD, _BACKWARD = 'lm_jax_lstm_forward', 'lm_jax_lstm_backward'
_KERNEL = cpu_kernels.Kernel(
    'fused_lstm_cpu.cc',
    {_FORWARD: 'LmJaxLstmForward', _BACKWARD: 'LmJaxLstmBackward'},
    'fused LSTM kernel', 'LSTMs use lax.scan')


def available() -> bool:
  """Whether the kernel is built and registered (`cpu_kernels.Kernel`)."""
  return _KERNEL.available()


@functools.cache
def _calls(forget_bias: float):
  """The forward and backward custom calls for one `forget_bias`, each
  split over the batch when it is sharded."""
  _KERNEL.require()

  def forward(projected, kernel, c0, h0, lengths):
    batch, steps, gates = projected.shape
    hidden = gates // 4
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.ffi.ffi_call(
        _FORWARD,
        (f32(batch, steps, hidden), f32(batch, hidden), f32(batch, hidden),
         f32(batch, steps, gates), f32(batch, steps, hidden)),
        vmap_method='sequential')(projected, kernel, c0, h0, lengths,
                                  forget_bias=np.float32(forget_bias))

  def backward(kernel, c0, lengths, activations, cells, d_outputs, d_c, d_h):
    return jax.ffi.ffi_call(
        _BACKWARD,
        (jax.ShapeDtypeStruct(activations.shape, jnp.float32),
         jax.ShapeDtypeStruct(c0.shape, jnp.float32),
         jax.ShapeDtypeStruct(c0.shape, jnp.float32)),
        vmap_method='sequential')(kernel, c0, lengths, activations, cells,
                                  d_outputs, d_c, d_h)

  return (cpu_kernels.batch_partitioned(
              forward, 'b t g, h g, b h, b h, b',
              ('b t h', 'b h', 'b h', 'b t g', 'b t h')),
          cpu_kernels.batch_partitioned(
              backward, 'h g, b h, b, b t g, b t h, b t h, b h, b h',
              ('b t g', 'b h', 'b h')))


def _check_shapes(projected, kernel, c0, h0, lengths) -> None:
  """The kernel trusts its buffers' sizes: a mismatch would read out of
  bounds, not fail."""
  batch, _, gates = projected.shape
  hidden = gates // 4
  want = {'kernel': (hidden, gates), 'c0': (batch, hidden),
          'h0': (batch, hidden), 'lengths': (batch,)}
  got = {'kernel': kernel.shape, 'c0': c0.shape, 'h0': h0.shape,
         'lengths': lengths.shape}
  wrong = [f'{k} {got[k]} (want {want[k]})' for k in want if got[k] != want[k]]
  if gates % 4 or wrong:
    raise ValueError(f'lstm_recurrence: projected {projected.shape} does not '
                     f'fit {", ".join(wrong) or "four gates"}')


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def lstm_recurrence(projected: Array, kernel: Array, c0: Array, h0: Array,
                    lengths: Array, forget_bias: float = 0.0
                    ) -> tuple[tuple[Array, Array], Array]:
  """The LSTM of `lm_jax.nn.recurrent.LSTMCell` over whole sequences.

  Equal, to float32 rounding, to scanning `LSTMCell.step` with the padding
  rule of `RNN` (carry held and output 0 at steps `t >= lengths[b]`). The
  rounding is absolute: the kernel's tanh is within about 6e-8 of the true
  value everywhere, so outputs far smaller than 1 (1e-4, say) are only
  correct to a few significant digits; at an LSTM's usual magnitudes that is
  float32's own precision.

  Args:
    projected: `[batch, length, 4H]` float32, the inputs times the input
      kernel plus the bias, gates ordered (i, f, g, o).
    kernel: `[H, 4H]` float32, the recurrent kernel.
    c0: `[batch, H]` float32 initial cell.
    h0: `[batch, H]` float32 initial state.
    lengths: `[batch]` int32 real steps of each row.
    forget_bias: added to the forget gate's pre-activation.

  Returns:
    ((c, h) after each row's last real step, outputs `[batch, length, H]`).
  """
  _check_shapes(projected, kernel, c0, h0, lengths)
  outputs, c, h, _, _ = _calls(float(forget_bias))[0](
      projected, kernel, c0, h0, lengths)
  return (c, h), outputs


def _fwd(projected, kernel, c0, h0, lengths, forget_bias):
  _check_shapes(projected, kernel, c0, h0, lengths)
  outputs, c, h, activations, cells = _calls(float(forget_bias))[0](
      projected, kernel, c0, h0, lengths)
  residuals = (kernel, c0, h0, lengths, activations, cells, outputs)
  return ((c, h), outputs), residuals


def _bwd(forget_bias, residuals, cotangents):
  kernel, c0, h0, lengths, activations, cells, outputs = residuals
  (d_c, d_h), d_outputs = cotangents
  d_projected, d_c0, d_h0 = _calls(float(forget_bias))[1](
      kernel, c0, lengths, activations, cells, d_outputs, d_c, d_h)
  # h_{t-1} for every step; where t-1 is padding, d_projected is 0 at t.
  previous = jnp.concatenate([h0[:, None], outputs[:, :-1]], axis=1)
  d_kernel = jnp.einsum('bth,btg->hg', previous, d_projected)
  return d_projected, d_kernel, d_c0, d_h0, None


lstm_recurrence.defvjp(_fwd, _bwd)
