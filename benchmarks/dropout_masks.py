"""Cost of dropout on CPU: `lm_jax.nn.dropout` against `jax.random.bernoulli`.

`flax.linen.Dropout` (and lm_jax before it had its own) draws a float per
element with `jax.random.bernoulli`; `lm_jax.nn.dropout.dropout` draws two
16-bit integers per 32-bit threefry word. Both are timed as the whole
inverted-dropout op (mask, scale, select), jit-compiled, on the shapes of a
masked-LM training step of BERT-mini (`bert_mlm_small` at 4 x 256 with
batches of 64 x 128 ids: attention weights `[64, 4, 128, 128]`, hidden
states `[8192, 256]`) and of `sst2_minilm` (`[32, 12, 40, 40]`,
`[1280, 384]`), then one forward-and-backward pass of that BERT-mini's
masked-LM loss on one batch with each.

  python benchmarks/dropout_masks.py [--repeats 15] [--no_model]

Figures: median milliseconds over the repeats, and their ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import timing  # beside this script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {'BERT-mini attention': (64, 4, 128, 128),
          'BERT-mini hidden': (8192, 256),
          'sst2_minilm attention': (32, 12, 40, 40),
          'sst2_minilm hidden': (1280, 384)}


def bernoulli_keep_mask(rng, rate, shape):
  """The mask `flax.linen.Dropout` draws."""
  import jax
  return jax.random.bernoulli(rng, 1.0 - rate, tuple(shape))


def time_ops(repeats: int, rate: float = 0.1) -> None:
  import jax
  import jax.numpy as jnp
  from lm_jax.nn import dropout as ours

  def reference(x, rng):
    keep = bernoulli_keep_mask(rng, rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)

  reference = jax.jit(reference)
  mine = jax.jit(lambda x, rng: ours.dropout(x, rate, rng))
  rng = jax.random.key(0)
  print(f'{"op":28s} {"bernoulli ms":>12s} {"lm_jax ms":>10s} {"ratio":>6s}')
  for name, shape in SHAPES.items():
    x = jnp.ones(shape)
    a = timing.median_ms(lambda: reference(x, rng), repeats)
    b = timing.median_ms(lambda: mine(x, rng), repeats)
    print(f'{name:28s} {a:12.2f} {b:10.2f} {a / b:5.2f}x', flush=True)


def time_model(repeats: int) -> None:
  from experiments import cli
  from experiments.configs import bert_mlm_small
  import jax
  from lm_jax import tasks
  from lm_jax.nn import dropout as ours

  config = bert_mlm_small.get_config()
  # BERT-mini, the size and batch these figures were first measured at.
  config.update(num_layers=4, num_heads=4, embed_dim=256, block_size=128,
                batch_size=64, mlm_max_predictions=20)
  cli.resolve_paths(config)
  task = tasks.make_task(config)
  task.prepare()
  params = jax.jit(task.model.init)(
      jax.random.key(0), task.dummy_batch()['inputs'])['params']
  batch = next(task.train_stream(slice(None)))
  rng = jax.random.key(1)
  grads = {}
  original = ours.keep_mask
  for name, mask in (('bernoulli', bernoulli_keep_mask),
                     ('lm_jax', original)):
    ours.keep_mask = mask  # read when the function is traced, just below
    grads[name] = jax.jit(jax.grad(
        lambda p, b, r: task.loss(p, b, r, True)['loss'][0]))
    jax.block_until_ready(grads[name](params, batch, rng))
  ours.keep_mask = original
  times = {name: timing.median_ms(lambda: fn(params, batch, rng), repeats)
           for name, fn in grads.items()}
  print(f'BERT-mini forward+backward, one batch of 64 x 128: '
        f'bernoulli {times["bernoulli"]:.0f} ms, lm_jax '
        f'{times["lm_jax"]:.0f} ms ({times["bernoulli"] / times["lm_jax"]:.2f}x)')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=15)
  parser.add_argument('--no_model', action='store_true',
                      help='time the ops only')
  args = parser.parse_args()
  from experiments import before_jax
  before_jax.set_cpu_devices(1)
  time_ops(args.repeats)
  if not args.no_model:
    time_model(max(3, args.repeats // 3))


if __name__ == '__main__':
  main()
