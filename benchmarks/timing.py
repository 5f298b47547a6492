"""The timer the JAX-side benchmark scripts share."""

import statistics
import time


def median_ms(fn, repeats: int) -> float:
  """Median milliseconds of `fn()` over `repeats` calls, after one call
  that compiles; each call is waited for (`jax.block_until_ready`)."""
  import jax
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return 1000 * statistics.median(times)
