"""The LSTM recurrence as one fused custom call on XLA's CPU backend.

`lm_jax.nn.recurrent.RNN` unrolls a cell with `nn.scan`, which is the
reference. On CPU a small LSTM's time steps are each a few XLA thunks, and
handing their small buffers between the runtime's threads costs more than
their arithmetic (benchmarks/RESULTS.md, `ptb_lstm_small`). PyTorch's
`nn.LSTM` avoids that with a fused kernel; this module does the same: the
C++ in `fused_lstm_cpu.cc` runs a whole sequence, forward or backward, in
one XLA FFI call, splitting the independent batch rows across threads.

The kernel is compiled on first use with the system's C++ compiler (`$CXX`,
else `c++`) into `$LM_JAX_KERNEL_CACHE` (default `~/.cache/lm_jax`), keyed
by the source, the flags, the jaxlib version and the CPU. Where that fails,
`available()` is False and `RNN` keeps the scan.

Only the recurrence is fused: the input projection before it and the
recurrent kernel's gradient after it (`sum_t h_{t-1}^T dgates_t`) are large
matmuls that XLA does well.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import subprocess
import tempfile

from absl import logging
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

Array = jax.Array

_SOURCE = pathlib.Path(__file__).with_name('fused_lstm_cpu.cc')
_FLAGS = ('-O3', '-std=c++17', '-shared', '-fPIC', '-pthread')
_FORWARD, _BACKWARD = 'lm_jax_lstm_forward', 'lm_jax_lstm_backward'


def _cpu_signature() -> str:
  """What the compiled code depends on besides its source (-march=native)."""
  try:
    with open('/proc/cpuinfo') as f:
      lines = [l for l in f if l.startswith(('model name', 'flags'))]
    return ''.join(sorted(set(lines)))
  except OSError:
    return platform.processor()


def _compile(library: pathlib.Path) -> None:
  compiler = os.environ.get('CXX', 'c++')
  library.parent.mkdir(parents=True, exist_ok=True)
  # Written beside the target and renamed: concurrent builds never see a
  # half-written library.
  fd, partial = tempfile.mkstemp(suffix='.so', dir=library.parent)
  os.close(fd)
  command = [compiler, *_FLAGS, f'-I{jax.ffi.include_dir()}', str(_SOURCE),
             '-o', partial]
  try:
    result = subprocess.run([*command[:1], '-march=native', *command[1:]],
                            capture_output=True, text=True)
    if result.returncode != 0:  # a compiler without -march=native
      result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
      raise RuntimeError(result.stderr.strip().splitlines()[-1]
                         if result.stderr.strip() else 'compiler failed')
    os.replace(partial, library)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


@functools.cache
def available() -> bool:
  """Compiles (once per machine) and registers the kernel; False, with a
  warning, when that is not possible."""
  if platform.system() != 'Linux':  # sched_getaffinity in the C++
    return False
  key = hashlib.sha256(b'\0'.join([
      _SOURCE.read_bytes(), ' '.join(_FLAGS).encode(),
      jaxlib.__version__.encode(), _cpu_signature().encode()])).hexdigest()
  cache = pathlib.Path(os.environ.get('LM_JAX_KERNEL_CACHE') or
                       pathlib.Path.home() / '.cache' / 'lm_jax')
  library = cache / f'fused_lstm_cpu-{key[:16]}.so'
  try:
    if not library.exists():
      _compile(library)
    lib = ctypes.cdll.LoadLibrary(str(library))
    jax.ffi.register_ffi_target(
        _FORWARD, jax.ffi.pycapsule(lib.LmJaxLstmForward), platform='cpu')
    jax.ffi.register_ffi_target(
        _BACKWARD, jax.ffi.pycapsule(lib.LmJaxLstmBackward), platform='cpu')
  except (OSError, RuntimeError, AttributeError) as e:
    logging.warning('fused LSTM kernel unavailable (%s); LSTMs use lax.scan',
                    e)
    return False
  return True


def _forward_call(projected, kernel, c0, h0, lengths, forget_bias):
  batch, steps, gates = projected.shape
  hidden = gates // 4
  f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  call = jax.ffi.ffi_call(
      _FORWARD,
      (f32(batch, steps, hidden), f32(batch, hidden), f32(batch, hidden),
       f32(batch, steps, gates), f32(batch, steps, hidden)),
      vmap_method='sequential')
  return call(projected, kernel, c0, h0, lengths,
              forget_bias=np.float32(forget_bias))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def lstm_recurrence(projected: Array, kernel: Array, c0: Array, h0: Array,
                    lengths: Array, forget_bias: float = 0.0
                    ) -> tuple[tuple[Array, Array], Array]:
  """The LSTM of `lm_jax.nn.recurrent.LSTMCell` over whole sequences.

  Equal, to float32 rounding, to scanning `LSTMCell.step` with the padding
  rule of `RNN` (carry held and output 0 at steps `t >= lengths[b]`).

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
  outputs, c, h, _, _ = _forward_call(projected, kernel, c0, h0, lengths,
                                      forget_bias)
  return (c, h), outputs


def _fwd(projected, kernel, c0, h0, lengths, forget_bias):
  outputs, c, h, activations, cells = _forward_call(
      projected, kernel, c0, h0, lengths, forget_bias)
  residuals = (kernel, c0, h0, lengths, activations, cells, outputs)
  return ((c, h), outputs), residuals


def _bwd(forget_bias, residuals, cotangents):
  del forget_bias  # already in the saved activations
  kernel, c0, h0, lengths, activations, cells, outputs = residuals
  (d_c, d_h), d_outputs = cotangents
  call = jax.ffi.ffi_call(
      _BACKWARD,
      (jax.ShapeDtypeStruct(activations.shape, jnp.float32),
       jax.ShapeDtypeStruct(c0.shape, jnp.float32),
       jax.ShapeDtypeStruct(h0.shape, jnp.float32)),
      vmap_method='sequential')
  d_projected, d_c0, d_h0 = call(kernel, c0, lengths, activations, cells,
                                 d_outputs, d_c, d_h)
  # h_{t-1} for every step; where t-1 is padding, d_projected is 0 at t.
  previous = jnp.concatenate([h0[:, None], outputs[:, :-1]], axis=1)
  d_kernel = jnp.einsum('bth,btg->hg', previous, d_projected)
  return d_projected, d_kernel, d_c0, d_h0, None


lstm_recurrence.defvjp(_fwd, _bwd)
