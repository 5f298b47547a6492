"""What a process settles before it imports JAX, which reads these settings
from the environment once: its XLA CPU devices and the compilation cache.
The entry points call these first, then import the library."""

from __future__ import annotations

import os
import sys


def cpu_device_count(requested: int, batch_size: int,
                     num_devices: int = 0) -> int:
  """How many XLA CPU devices to create.

  XLA's CPU backend runs one device's ops mostly one at a time, so a single
  device leaves cores idle on small models. One device per core, fed by data
  parallelism, keeps them busy. 0 means automatic: the largest divisor of
  the batch size that does not exceed the core count, or more where the run
  asks for a mesh of `num_devices`.
  """
  if requested > 0:
    return requested
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') \
      else (os.cpu_count() or 1)
  return max(num_devices,
             max(d for d in range(1, cores + 1) if batch_size % d == 0))


def _check_jax_not_imported(caller: str) -> None:
  """XLA and JAX read these settings from the environment once, on import."""
  if 'jax' in sys.modules:
    raise RuntimeError(f'{caller} must run before jax is imported')


def set_cpu_devices(count: int) -> None:
  """Asks XLA for `count` CPU devices; must run before JAX is imported.

  On GPU and TPU hosts this only affects the (unused) CPU platform.
  """
  _check_jax_not_imported('set_cpu_devices')
  flag = f'--xla_force_host_platform_device_count={count}'
  existing = os.environ.get('XLA_FLAGS', '')
  if 'xla_force_host_platform_device_count' not in existing:
    os.environ['XLA_FLAGS'] = f'{existing} {flag}'.strip()


def use_compilation_cache(cache_dir: str) -> None:
  """Keeps XLA's compiled programs in `cache_dir`/xla, so a relaunch, a
  resumed run or a sweep's next run of the same shapes loads its steps
  instead of compiling them again (2-3 s of a 40 s GPT run here). Must run
  before JAX is imported; $JAX_COMPILATION_CACHE_DIR, where set, wins ('' to
  turn it off)."""
  _check_jax_not_imported('use_compilation_cache')
  os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                        os.path.join(cache_dir, 'xla'))
  # JAX's default keeps only programs that took a second or more.
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')
