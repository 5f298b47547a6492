"""The 10k-word softmax layer's three matmuls, alone, in each library.

`ptb_lstm_small`'s output layer runs, per batch of 20 x 35 tokens, the
forward product `h @ W` ([700, 200] x [200, 10000]) and the two gradient
products `dlogits @ W^T` and `h^T @ dlogits`. They are most of the step in
float32 (benchmarks/RESULTS.md), so this script times them on their own,
float32, median of --repeats calls, in whichever of JAX (jit), NumPy
(its bundled OpenBLAS) and PyTorch (2 threads, as lstm_ptb_reference.py) the
running Python has:

  .venv/bin/python benchmarks/softmax_matmuls.py         # jax, numpy
  .venv-bench/bin/python benchmarks/softmax_matmuls.py   # torch, numpy

One JSON line per library: ms per product and GFLOP/s.
"""

import argparse
import json
import statistics
import time

import numpy as np

import huge_pages  # beside this script

TOKENS, HIDDEN, VOCAB = 700, 200, 10000


def _median_ms(fn, repeats):
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1000 * statistics.median(times)


def _products(library, h, w, dlogits):
  """Zero-argument callables, one per product, that wait for their result."""
  if library == 'numpy':
    return {'forward': lambda: h @ w, 'grad_input': lambda: dlogits @ w.T,
            'grad_kernel': lambda: h.T @ dlogits}
  if library == 'torch':
    import torch
    torch.set_num_threads(2)
    h, w, dlogits = map(torch.from_numpy, (h, w, dlogits))
    return {'forward': lambda: h @ w, 'grad_input': lambda: dlogits @ w.T,
            'grad_kernel': lambda: h.T @ dlogits}
  import jax
  import jax.numpy as jnp
  h, w, dlogits = map(jnp.asarray, (h, w, dlogits))
  # The contractions as the train step's HLO has them (no transposes).
  forward = jax.jit(lambda h, w: h @ w)
  grad_input = jax.jit(lambda d, w: jnp.einsum('tv,hv->th', d, w))
  grad_kernel = jax.jit(lambda h, d: jnp.einsum('th,tv->hv', h, d))
  return {'forward': lambda: forward(h, w).block_until_ready(),
          'grad_input': lambda: grad_input(dlogits, w).block_until_ready(),
          'grad_kernel': lambda: grad_kernel(h, dlogits).block_until_ready()}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--repeats', type=int, default=30)
  args = parser.parse_args()
  huge_pages.rerun_with_huge_pages()
  libraries = ['numpy']
  for name in ('jax', 'torch'):
    try:
      __import__(name)
      libraries.insert(0, name)
    except ImportError:
      pass
  rng = np.random.default_rng(0)
  h = rng.standard_normal((TOKENS, HIDDEN), np.float32)
  w = rng.standard_normal((HIDDEN, VOCAB), np.float32)
  dlogits = rng.standard_normal((TOKENS, VOCAB), np.float32)
  gflop = 2 * TOKENS * HIDDEN * VOCAB / 1e9
  for library in libraries:
    result = {'library': library}
    for name, fn in _products(library, h, w, dlogits).items():
      ms = _median_ms(fn, args.repeats)
      result[f'{name}_ms'] = round(ms, 2)
      result[f'{name}_gflops'] = round(gflop / ms * 1e3, 1)
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
  main()
