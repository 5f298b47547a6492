"""Scaled dot-product attention on XLA's CPU backend: lm_jax's heads-first
products against contracting the `[batch, length, heads, head_dim]` layout
in place, at all-MiniLM-L6-v2's shape (12 heads of 32) and several lengths.

Both compute the same function (checked here to 1e-4 after six layers):
q k^T / sqrt(d), masked softmax, then the weighted sum of values. `in place`
is the one-line einsum formulation ('bqhd,bkhd->bhqk', 'bhqk,bkhd->bqhd');
`heads-first` is `lm_jax.nn.attention.dot_product_attention`, which
multiplies transposed copies (`[batch, heads, length, dim]`, keys
`[batch, heads, dim, length]`).
Each program runs six attentions in a row (MiniLM's depth); forward alone,
and forward plus the gradient with respect to the inputs.

  python benchmarks/attention_layout.py [--batch 32] [--lengths 16 32 56 128]

Figures: median milliseconds over --repeats calls, after one warm-up call.
"""

from __future__ import annotations

import argparse
import os
import sys

import timing  # beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_place(query, key, value, mask):
  """The einsum formulation, contracting `[batch, length, heads, dim]`."""
  import jax
  import jax.numpy as jnp
  query = query / jnp.sqrt(query.shape[-1]).astype(query.dtype)
  logits = jnp.einsum('bqhd,bkhd->bhqk', query, key)
  logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  weights = jnp.where(mask, jax.nn.softmax(logits, axis=-1), 0.0)
  return jnp.einsum('bhqk,bkhd->bqhd', weights, value)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--heads', type=int, default=12)
  parser.add_argument('--head_dim', type=int, default=32)
  parser.add_argument('--lengths', type=int, nargs='+',
                      default=[16, 32, 56, 128])
  parser.add_argument('--depth', type=int, default=6)
  parser.add_argument('--repeats', type=int, default=40)
  args = parser.parse_args()
  sys.path.insert(0, ROOT)
  import jax
  import jax.numpy as jnp
  import numpy as np
  from lm_jax.nn.attention import dot_product_attention

  def heads_first(query, key, value, mask):
    return dot_product_attention(query, key, value, mask=mask)

  def stack(attend):
    def run(x, mask):
      for _ in range(args.depth):
        x = attend(x, x, x, mask)
      return x
    return run

  print(f'# {args.depth} attentions, batch {args.batch}, {args.heads} heads '
        f'of {args.head_dim}; median ms ({len(os.sched_getaffinity(0))} '
        f'cores usable)')
  print('| length | forward, in place | forward, heads-first | ratio '
        '| with gradient, in place | with gradient, heads-first | ratio |')
  print('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  rng = np.random.default_rng(0)
  for length in args.lengths:
    x = jnp.asarray(rng.standard_normal(
        (args.batch, length, args.heads, args.head_dim)), jnp.float32)
    # Every row's last quarter is padding, as in a length-sorted batch.
    valid = np.arange(length)[None, :] < np.full((args.batch, 1),
                                                 length - length // 4)
    mask = jnp.asarray(valid[:, None, None, :])
    old, new = stack(in_place), stack(heads_first)
    np.testing.assert_allclose(np.asarray(jax.jit(old)(x, mask)),
                               np.asarray(jax.jit(new)(x, mask)),
                               rtol=1e-4, atol=1e-4)
    row = []
    for make in (jax.jit, lambda f: jax.jit(jax.grad(
        lambda x, m: f(x, m).sum()))):
      compiled_old, compiled_new = make(old), make(new)
      a = timing.median_ms(lambda: compiled_old(x, mask), args.repeats)
      b = timing.median_ms(lambda: compiled_new(x, mask), args.repeats)
      row += [f'{a:.2f}', f'{b:.2f}', f'{a / b:.2f}x']
    print(f'| {length} | ' + ' | '.join(row) + ' |', flush=True)


if __name__ == '__main__':
  main()
