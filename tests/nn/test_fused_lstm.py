"""Tests of lm_jax.nn.fused_lstm: the fused CPU recurrence gives the scan's
outputs, final carries and gradients, with padding, in both directions,
across calls and devices, and the layers fall back to the scan when the
kernel cannot be built."""

import functools
import os
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.nn import cpu_kernels, fused_lstm, recurrent
from tests.command_line import command_env

pytestmark = pytest.mark.skipif(
    not cpu_kernels.can_build(),
    reason='no C++ compiler to build the fused LSTM kernel')


def test_the_kernel_builds_where_a_compiler_exists():
  # A build failure is a failure, not a skip of every test below.
  assert fused_lstm.available()


# np.testing.assert_allclose's tolerances, leaf by leaf.
_close = functools.partial(chex.assert_trees_all_close, rtol=1e-7)


def _sequences(batch, length, features, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, length, features))


def _both(**kwargs):
  return (recurrent.StackedRNN('lstm', fused=False, **kwargs),
          recurrent.StackedRNN('lstm', fused=True, **kwargs))


def _loss(model, params, x, lengths, carry=None):
  """A loss that reads every output and every final carry."""
  carries, outputs = model.apply(params, x, lengths, initial_carry=carry)
  return (sum(jnp.sum(jnp.sin(y)) for y in outputs)
          + sum(jnp.sum(c * jnp.cos(h)) for c, h in carries))


# Hidden sizes a multiple of the kernel's 16 lanes and not; batches of one
# row, of rows split over threads, with and without padding.
@pytest.mark.parametrize('batch,hidden,lengths', [
    (1, 16, None),
    (9, 20, (9, 4, 1, 9, 6, 2, 9, 7, 3)),
    (12, 33, None),
])
@pytest.mark.parametrize('bidirectional', [False, True])
def test_fused_equals_scan_outputs_carries_and_gradients(
    batch, hidden, lengths, bidirectional):
  scan, fused = _both(features=hidden, num_layers=2,
                      bidirectional=bidirectional, forget_bias=1.0)
  x = _sequences(batch, 9, 11)
  lengths = None if lengths is None else jnp.array(lengths)
  params = scan.init(jax.random.key(1), x, lengths)
  assert (jax.tree.structure(fused.init(jax.random.key(1), x, lengths))
          == jax.tree.structure(params))
  _close(fused.apply(params, x, lengths), scan.apply(params, x, lengths),
         atol=2e-6)
  want = jax.grad(_loss, argnums=(1, 2))(scan, params, x, lengths)
  got = jax.grad(_loss, argnums=(1, 2))(fused, params, x, lengths)
  _close(got, want, atol=2e-5)


def test_fused_padding_outputs_are_zero_and_carries_stop_at_the_end():
  _, fused = _both(features=8)
  x = _sequences(3, 6, 5)
  lengths = jnp.array([6, 2, 4])
  params = fused.init(jax.random.key(1), x)
  (carry,), (ys,) = fused.apply(params, x, lengths)
  for b, n in enumerate([6, 2, 4]):
    np.testing.assert_array_equal(ys[b, n:], 0.0)
    (alone,), _ = fused.apply(params, x[b:b + 1, :n])
    _close((carry[0][b], carry[1][b]), (alone[0][0], alone[1][0]),
           atol=1e-6)


def test_fused_gradient_of_the_initial_carry_equals_scan():
  """Truncated BPTT hands a carry in; its gradient must flow back too."""
  scan, fused = _both(features=24, num_layers=2)
  x = _sequences(5, 7, 10)
  params = scan.init(jax.random.key(1), x)
  carry = jax.tree.map(lambda z: z + 0.3,
                       scan.initial_carry(5))
  want = jax.grad(_loss, argnums=4)(scan, params, x, None, carry)
  got = jax.grad(_loss, argnums=4)(fused, params, x, None, carry)
  _close(got, want, atol=2e-5)


def test_fused_under_jit_and_vmap_equals_per_example_calls():
  _, fused = _both(features=16)
  x = _sequences(4, 5, 6)
  params = fused.init(jax.random.key(1), x)
  run = lambda p, xs: fused.apply(p, xs)[1][-1]
  stacked = jax.jit(jax.vmap(run, in_axes=(None, 0)))(
      params, jnp.stack([x, 2 * x]))
  _close(stacked[0], run(params, x), atol=1e-6)
  _close(stacked[1], run(params, 2 * x), atol=1e-6)


def test_fused_on_four_devices_equals_one():
  """Batch-sharded inputs: each device runs the kernel on its own rows
  (no operand is gathered), and the gradients are the one-device ones."""
  _, fused = _both(features=16, bidirectional=True)
  x = _sequences(8, 6, 5)
  lengths = jnp.array([6, 3, 1, 6, 5, 2, 6, 4])
  params = fused.init(jax.random.key(1), x, lengths)
  grad = jax.jit(jax.grad(_loss, argnums=(1, 2)), static_argnums=0)
  one = grad(fused, params, x, lengths)
  mesh = jax.make_mesh((4,), ('data',))
  split = jax.sharding.NamedSharding(mesh, jax.P('data'))
  whole = jax.sharding.NamedSharding(mesh, jax.P())
  args = (jax.device_put(params, whole), jax.device_put(x, split),
          jax.device_put(lengths, split))
  _close(grad(fused, *args), one, atol=1e-5)
  compiled = grad.lower(fused, *args).compile().as_text()
  calls = [l for l in compiled.splitlines() if 'lm_jax_lstm_' in l]
  assert calls and all('f32[2,6,' in l for l in calls), calls  # 8 rows / 4


def test_layers_use_the_scan_when_the_kernel_is_unavailable(monkeypatch):
  scan, fused = _both(features=8)
  x = _sequences(2, 4, 3)
  params = scan.init(jax.random.key(1), x)
  calls = []
  real = fused_lstm.lstm_recurrence
  monkeypatch.setattr(fused_lstm, 'lstm_recurrence',
                      lambda *a: calls.append(1) or real(*a))
  fused.apply(params, x)
  assert calls, 'the fused path did not run'
  calls.clear()
  monkeypatch.setattr(fused_lstm, 'available', lambda: False)
  _close(fused.apply(params, x), scan.apply(params, x), atol=1e-6)
  assert not calls


@pytest.mark.parametrize('wrong', ['c0', 'lengths', 'kernel'])
def test_operands_that_do_not_fit_are_refused(wrong):
  """The kernel trusts the buffers' sizes: a carry of one row for a batch
  of four would read past its end."""
  batch, hidden = 4, 8
  operands = dict(projected=jnp.zeros((batch, 3, 4 * hidden)),
                  kernel=jnp.zeros((hidden, 4 * hidden)),
                  c0=jnp.zeros((batch, hidden)), h0=jnp.zeros((batch, hidden)),
                  lengths=jnp.full((batch,), 3, jnp.int32))
  operands[wrong] = operands[wrong][:1]
  with pytest.raises(ValueError, match=wrong):
    fused_lstm.lstm_recurrence(**operands)


def _available(kernel='fused_lstm', cwd=None, **env):
  """`kernel.available()` in a fresh process, with `env` added to its
  environment; its output says 'AVAILABLE True' or 'AVAILABLE False'."""
  code = (f'from lm_jax.nn import {kernel}; '
          f'print("AVAILABLE", {kernel}.available())')
  return subprocess.run([sys.executable, '-c', code],
                        env=command_env(JAX_PLATFORMS='cpu', **env),
                        cwd=cwd, capture_output=True, text=True, timeout=300)


def test_a_relative_kernel_cache_is_built_loaded_and_world_readable(tmp_path):
  # '.': the library's path, unresolved, would be a bare file name, which
  # dlopen looks for on the library path instead.
  def available():
    return _available('fused_cross_entropy', cwd=tmp_path,
                      LM_JAX_KERNEL_CACHE='.')

  # What builds killed mid-way leave: removed once old, not while a build
  # in another process may still be writing it.
  abandoned, live = (tmp_path / 'lm_jax-partial-abandoned.so',
                    tmp_path / 'lm_jax-partial-live.so')
  theirs = tmp_path / 'tmpsomeone_elses.so'  # not ours: it stays
  for path in (abandoned, live, theirs):
    path.touch()
  two_hours_ago = time.time() - 7200
  for old in (abandoned, theirs):
    os.utime(old, (two_hours_ago, two_hours_ago))

  out = available()
  assert out.returncode == 0, out.stderr
  assert 'AVAILABLE True' in out.stdout, out.stderr
  assert not abandoned.exists() and live.exists() and theirs.exists()
  live.unlink()
  theirs.unlink()
  (library,) = tmp_path.glob('*.so')
  assert library.stat().st_mode & 0o755 == 0o755
  # A damaged cached library is built again, not a lasting fallback: one
  # cut short, or one that loads but lacks the kernel's handlers.
  size = library.stat().st_size
  other = tmp_path / 'other'
  other.mkdir()
  subprocess.run([*cpu_kernels._compiler(),  # pylint: disable=W0212
                  '-shared', '-fPIC', '-x', 'c++', '-', '-o',
                  str(other / 'lib.so')], input='int unrelated() { return 0; }',
                 text=True, check=True, timeout=60)
  for damaged in (b'', (other / 'lib.so').read_bytes()):
    library.write_bytes(damaged)
    out = available()
    assert 'AVAILABLE True' in out.stdout, out.stderr
    assert library.stat().st_size == size


def _available_with(compiler, cache):
  """The fused LSTM's `available()` in a fresh process building with
  `$CXX` `compiler` into `cache`."""
  return _available(CXX=str(compiler), LM_JAX_KERNEL_CACHE=str(cache))


def test_a_failed_build_names_the_compilers_first_error(tmp_path):
  out = _available_with('c++ -include no_such_header.h', tmp_path / 'cache')
  assert 'AVAILABLE False' in out.stdout, out.stderr
  assert 'no_such_header.h' in out.stderr


def test_the_compiler_command_is_part_of_the_librarys_name(monkeypatch):
  """A library built by another compiler, or with other flags in $CXX,
  is not the one to load."""
  kernel = fused_lstm._KERNEL  # pylint: disable=protected-access
  monkeypatch.delenv('CXX', raising=False)
  default = kernel.library()
  monkeypatch.setenv('CXX', 'c++ -O0')
  assert kernel.library() != default
  assert kernel.library().parent == default.parent


def test_a_native_build_that_fails_otherwise_caches_nothing(tmp_path):
  """Only a compiler without -march=native gets the portable build: a
  native build that failed for another reason (here a compiler killed)
  must not leave a portable library where the native one belongs."""
  compiler = tmp_path / 'flaky-c++'
  compiler.write_text('#!/bin/sh\n'
                      'case "$*" in *-march=native*) '
                      'echo "c++: fatal error: Killed signal" >&2; exit 1;; '
                      'esac\n'
                      'exec c++ "$@"\n')
  compiler.chmod(0o755)
  out = _available_with(compiler, tmp_path / 'cache')
  assert 'AVAILABLE False' in out.stdout, out.stderr
  assert 'Killed' in out.stderr
  assert not list((tmp_path / 'cache').glob('*.so'))


def test_unavailable_compiler_is_a_warning_not_an_error(tmp_path):
  out = _available_with(tmp_path / 'no-such-compiler', tmp_path / 'cache')
  assert out.returncode == 0, out.stderr
  assert 'AVAILABLE False' in out.stdout
  assert 'fused LSTM kernel unavailable' in out.stderr
  assert not list((tmp_path / 'cache').glob('*.so'))
