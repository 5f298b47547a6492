"""Builds and registers lm_jax's C++ kernels for XLA's CPU backend.

Each kernel (`fused_lstm_cpu.cc`, `fused_attention_cpu.cc`,
`fused_cross_entropy_cpu.cc`) is one source file beside this module, with
the shared `cpu_simd.h` and `cpu_threads.h`, exporting XLA FFI handlers.
It is compiled on first use with the system's C++ compiler (`$CXX`, else
`c++`) into `$LM_JAX_KERNEL_CACHE` (default `~/.cache/lm_jax`), keyed by
the sources, the compiler command and flags, the jaxlib version and the
CPU, then its handlers are registered as FFI targets. A cached library
that does not load, or lacks a handler, is built again. Where any of that
fails, `Kernel.available()` is False (with one warning) and the caller
keeps its XLA path.

XLA knows nothing of how a custom call could be split across devices, so
under a `jit` whose batch is sharded it would gather every operand onto
every device and repeat the whole call there; `batch_partitioned` tells it
that the kernels' batch rows are independent.
"""

from __future__ import annotations

import _ctypes
import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import tempfile
from typing import Callable, Mapping, Sequence, Union

from absl import logging
import jax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec as P
import jaxlib

from lm_jax import atomic_files

_HERE = pathlib.Path(__file__).parent
_HEADERS = ('cpu_simd.h', 'cpu_threads.h')
_FLAGS = ('-O3', '-std=c++17', '-shared', '-fPIC', '-pthread')
_PARTIAL = 'lm_jax-partial-'  # a library being built


def _cpu_signature() -> str:
  """What the compiled code depends on besides its source (-march=native)."""
  try:
    with open('/proc/cpuinfo') as f:
      # x86's model and flags; ARM's features and part numbers.
      lines = [l for l in f if l.startswith((
          'model name', 'flags', 'Features', 'CPU implementer', 'CPU part'))]
    return ''.join(sorted(set(lines)))
  except OSError:
    return platform.processor()


def _compiler() -> list[str]:
  """The C++ compiler command: `$CXX` (which may hold words: 'ccache g++',
  or flags), else `c++`."""
  return shlex.split(os.environ.get('CXX') or 'c++')


def _compile(source: pathlib.Path, library: pathlib.Path) -> None:
  compiler = _compiler()
  library.parent.mkdir(parents=True, exist_ok=True)
  # The partial libraries of builds that were killed (ours only: the cache
  # may be a folder other programs write to).
  atomic_files.remove_abandoned(library.parent, f'{_PARTIAL}*.so')
  # Written beside the target and renamed: concurrent builds never see a
  # half-written library.
  fd, partial = tempfile.mkstemp(prefix=_PARTIAL, suffix='.so',
                                 dir=library.parent)
  os.close(fd)
  command = [*compiler, *_FLAGS, f'-I{jax.ffi.include_dir()}', f'-I{_HERE}',
             str(source), '-o', partial]
  try:
    result = subprocess.run(
        [*compiler, '-march=native', *command[len(compiler):]],
        capture_output=True, text=True)
    # A compiler without -march=native builds the portable code; any other
    # failure (a killed compiler, say) must not leave a portable library
    # cached where the native one belongs.
    if result.returncode != 0 and '-march' in result.stderr:
      result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
      raise RuntimeError(_first_error(result.stderr))
    # On disk before it is renamed into place: a library cut short by a
    # power loss would crash every process that loads it.
    with open(partial, 'rb') as f:
      os.fsync(f.fileno())
    # mkstemp made it private (0600); other users of a shared cache load it.
    os.chmod(partial, 0o755)
    os.replace(partial, library)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def _first_error(stderr: str) -> str:
  """The compiler's first error line (its last is often only 'compilation
  terminated.')."""
  lines = stderr.strip().splitlines()
  errors = [line for line in lines if 'error' in line]
  return (errors or lines or ['the compiler failed'])[0].strip()


def can_build() -> bool:
  """Whether the kernels should build here: Linux, with the C++ compiler
  (`$CXX`, else `c++`) on the PATH. Tests use it to tell a machine without
  a compiler, where the XLA paths are expected, from a broken build."""
  compiler = _compiler()
  return (platform.system() == 'Linux' and bool(compiler)
          and shutil.which(compiler[0]) is not None)


class Kernel:
  """One C++ kernel beside this module, built and registered on first use.

  Args:
    source_name: the .cc file.
    targets: FFI target name -> the handler symbol the library exports.
    what: names the kernel in messages ('fused LSTM kernel').
    fallback: what the warning says happens when it cannot be built.
  """

  def __init__(self, source_name: str, targets: Mapping[str, str], what: str,
               fallback: str):
    self._source = _HERE / source_name
    self._targets = dict(targets)
    self._what, self._fallback = what, fallback

  @functools.cache
  def available(self) -> bool:
    """Compiles (once per machine) and registers the handlers; False, with
    a warning, when that is not possible (off Linux, quietly: XLA's own
    path is the expected one there)."""
    if platform.system() != 'Linux':  # sched_getaffinity in the C++
      return False
    try:
      library = self.library()
      if not library.exists():
        _compile(self._source, library)
      try:
        handlers = self._load(library)
      except (OSError, AttributeError):  # damaged: built again, once
        library.unlink(missing_ok=True)
        _compile(self._source, library)
        handlers = self._load(library)
      for target, handler in handlers.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(handler),
                                    platform='cpu')
    except (OSError, RuntimeError, AttributeError) as e:
      logging.warning('%s unavailable (%s); %s', self._what, e,
                      self._fallback)
      return False
    return True

  def library(self) -> pathlib.Path:
    """Where the compiled library is cached, under a name keyed by all
    that goes into it."""
    key = hashlib.sha256(b'\0'.join([
        self._source.read_bytes(),
        *((_HERE / h).read_bytes() for h in _HEADERS),
        ' '.join([*_compiler(), *_FLAGS]).encode(),
        jaxlib.__version__.encode(), _cpu_signature().encode()])).hexdigest()
    # Absolute: dlopen reads a bare file name as a library to search for.
    cache = pathlib.Path(os.environ.get('LM_JAX_KERNEL_CACHE') or
                         pathlib.Path.home() / '.cache' /
                         'lm_jax').expanduser().resolve()
    return cache / f'{self._source.stem}-{key[:16]}.so'

  def _load(self, library: pathlib.Path) -> dict:
    """FFI target -> its handler in `library`; OSError where it does not
    load, AttributeError where it lacks a handler."""
    lib = ctypes.cdll.LoadLibrary(str(library))
    try:
      return {target: getattr(lib, symbol)
              for target, symbol in self._targets.items()}
    except AttributeError:
      # Unloaded (where the loader allows it), or dlopen would hand back
      # this library for the rebuilt one at the same path.
      _ctypes.dlclose(lib._handle)  # pylint: disable=protected-access
      raise

  def require(self) -> None:
    """Raises unless `available()`: for the calls that need the kernel."""
    if not self.available():
      raise RuntimeError(f'the {self._what} could not be built (see the '
                         'warning above)')


def batch_partitioned(fn: Callable, operands: str,
                      results: Union[str, Sequence[str]]) -> Callable:
  """`fn`, a custom call whose batch rows are independent, run by each
  device on its own rows when the batch is sharded.

  Args:
    fn: array operands -> an array or a tuple of arrays.
    operands: each operand's dimensions, comma-separated, in the einsum-like
      notation of Shardy's sharding rules ('b t three h d, h g'); those
      whose first dimension is 'b' are split along it as the first of them
      is, the others are replicated.
    results: the results' dimensions, a string for a single result or a
      sequence of strings for a tuple.

  Returns:
    A function of the same operands and results.
  """
  in_dims = [o.split() for o in operands.split(',')]
  single = isinstance(results, str)
  out_dims = [r.split() for r in ([results] if single else results)]

  first = next(i for i, dims in enumerate(in_dims) if dims[0] == 'b')

  def shardings(mesh, arg_shapes):
    spec = getattr(arg_shapes[first].sharding, 'spec', None)
    batch_axes = spec[0] if spec else None
    named = lambda dims: NamedSharding(  # noqa: E731
        mesh, P(batch_axes) if dims[0] == 'b' else P())
    outs = [named(dims) for dims in out_dims]
    return (tuple(named(dims) for dims in in_dims),
            outs[0] if single else tuple(outs))

  def partition(mesh, arg_shapes, result_shape):
    del result_shape
    args, outs = shardings(mesh, arg_shapes)
    return mesh, fn, outs, args

  def infer(mesh, arg_shapes, result_shape):
    del result_shape
    return shardings(mesh, arg_shapes)[1]

  partitioned = custom_partitioning(fn)
  partitioned.def_partition(
      partition=partition, infer_sharding_from_operands=infer,
      sharding_rule=f"{operands} -> {', '.join(' '.join(d) for d in out_dims)}")

  # custom_partitioning has no batching rule; under vmap the plain call
  # runs (the FFI call loops over the mapped axis), unsplit.
  @jax.custom_batching.custom_vmap
  def call(*args):
    return partitioned(*args)

  @call.def_vmap
  def _vmapped(axis_size, in_batched, *args):
    del axis_size
    out = jax.vmap(fn, in_axes=[0 if b else None for b in in_batched])(*args)
    return out, jax.tree.map(lambda _: True, out)

  return call
