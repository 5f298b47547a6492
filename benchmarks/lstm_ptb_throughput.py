"""Training throughput of lm_jax's LSTM LM on the ptb_lstm_small recipe.

Times the real `train_step` of lm_jax (the one `./launch.sh train
ptb_lstm_small` runs: 2 x 200 LSTM, 10k-word softmax, batch 20 x 35, SGD
with clipping) on real PTB batches and reports the median ms per batch and
tokens/s, for each device count and scan unroll asked for. Compare with
benchmarks/lstm_ptb_reference.py (PyTorch `nn.LSTM`, same shapes).

  python benchmarks/lstm_ptb_throughput.py                  # a small table
  python benchmarks/lstm_ptb_throughput.py --one --devices 1 --unroll 1
  python benchmarks/lstm_ptb_throughput.py --set 1:1 --matmul_dtype bfloat16
  python benchmarks/lstm_ptb_throughput.py --set 1:1 --recurrence scan
  python benchmarks/lstm_ptb_throughput.py --set 1:1 --cross_entropy fused
  python benchmarks/lstm_ptb_throughput.py --set 1:1 --output dense
  python benchmarks/lstm_ptb_throughput.py --set 1:1 --biases 1

--recurrence, --cross_entropy, --output and --biases default to the
preset's own choices.

Each setting runs in its own process: XLA reads the device count at start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import huge_pages  # beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _measure(args) -> dict:
  sys.path.insert(0, ROOT)
  import jax

  from experiments.configs import ptb_lstm_small
  from lm_jax import tasks
  from lm_jax.train import optim, parallel
  from lm_jax.train.loop import init_state, state_sharding
  from lm_jax.train.steps import make_train_step

  config = ptb_lstm_small.get_config()
  config.rnn_unroll = args.unroll
  config.matmul_dtype = args.matmul_dtype
  # Unset flags leave the preset's own choice.
  if args.recurrence:
    config.fused_lstm = args.recurrence == 'fused'
  if args.cross_entropy:
    config.fused_cross_entropy = args.cross_entropy == 'fused'
  if args.output:
    config.folded_output = args.output == 'folded'
  if args.biases:
    config.lstm_second_bias = args.biases == 2
  os.environ.setdefault('LM_JAX_DATA', os.path.join(ROOT, '..', 'shared',
                                                    'data'))
  from experiments import cli
  cli.resolve_paths(config)
  task = tasks.make_task(config)
  task.prepare()
  mesh = parallel.make_data_mesh(args.devices)
  tx = optim.make_optimizer(config, task.steps_per_epoch)
  state = init_state(task.model, tx, task.dummy_batch()['inputs'], 0, mesh,
                     task.init_carry(config.batch_size))
  step = jax.jit(make_train_step(task, tx, 1, config.normalize_loss_by),
                 in_shardings=(state_sharding(mesh),
                               parallel.batch_sharded(mesh),
                               parallel.replicated(mesh)),
                 out_shardings=(state_sharding(mesh),
                                parallel.replicated(mesh)),
                 donate_argnums=0)
  stream = task.train_stream(slice(None))
  rng = jax.random.key(1)
  times = []
  for i in range(args.warmup + args.steps):
    batch = parallel.to_global(next(stream), mesh)
    start = time.perf_counter()
    state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics)
    if i >= args.warmup:
      times.append(time.perf_counter() - start)
  ms = statistics.median(times) * 1e3
  tokens = config.batch_size * config.block_size
  return {'devices': args.devices, 'unroll': args.unroll,
          'recurrence': 'fused' if config.fused_lstm else 'scan',
          'cross_entropy': 'fused' if config.fused_cross_entropy else 'xla',
          # As rnn_lm decides: bfloat16 matmuls keep flax's Dense.
          'output': 'folded' if config.folded_output and config.matmul_dtype
                    in ('', 'float32') else 'dense',
          'matmul_dtype': args.matmul_dtype or 'float32',
          'lstm_biases': 2 if config.lstm_second_bias else 1,
          'median_ms_per_batch': round(ms, 2),
          'tokens_per_sec': round(tokens / ms * 1e3),
          'epoch_minutes': round(task.steps_per_epoch * ms / 6e4, 2),
          'jax': jax.__version__}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--one', action='store_true',
                      help='measure one setting in this process')
  parser.add_argument('--devices', type=int, default=1)
  parser.add_argument('--unroll', type=int, default=1)
  parser.add_argument('--matmul_dtype', default='',
                      help="'bfloat16': the softmax layer's matmuls with "
                           'bfloat16 operands (lm_jax.nn.precision)')
  parser.add_argument('--recurrence', choices=('fused', 'scan'),
                      help="'fused': lm_jax.nn.fused_lstm; 'scan': nn.scan "
                           "over the LSTM cell (default: the preset's)")
  parser.add_argument('--cross_entropy', choices=('fused', 'xla'),
                      help="'fused': lm_jax.nn.fused_cross_entropy; 'xla': "
                           'log-sum-exp differentiated by JAX (default: the '
                           "preset's)")
  parser.add_argument('--output', choices=('folded', 'dense'),
                      help="'folded': lm_jax.nn.folded_dense for the softmax "
                           "layer; 'dense': flax's Dense (default: the "
                           "preset's)")
  parser.add_argument('--biases', type=int, choices=(1, 2),
                      help="gate biases per LSTM (2: lstm_second_bias; "
                           "default: the preset's)")
  parser.add_argument('--steps', type=int, default=60)
  parser.add_argument('--warmup', type=int, default=5)
  # Unroll matters to the scan only (--recurrence scan); the fused kernel,
  # the preset's default, ignores it.
  parser.add_argument('--set', nargs='*', default=['1:1', '2:1'],
                      help='DEVICES:UNROLL settings for the table')
  args = parser.parse_args()
  huge_pages.rerun_with_huge_pages()
  flags = os.environ.get('XLA_FLAGS', '')
  if args.one:
    if 'xla_force_host_platform_device_count' not in flags:
      # Run directly (not from the table): XLA reads this once, at start-up.
      os.environ['XLA_FLAGS'] = (f'{flags} --xla_force_host_platform_'
                                 f'device_count={args.devices}').strip()
    print(json.dumps(_measure(args)))
    return
  rows = []
  for setting in args.set:
    devices, unroll = setting.split(':')
    others = ' '.join(f for f in flags.split()
                      if 'xla_force_host_platform_device_count' not in f)
    env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=(
        f'{others} --xla_force_host_platform_device_count={devices}').strip())
    out = subprocess.run(
        [sys.executable, __file__, '--one', '--devices', devices, '--unroll',
         unroll, '--steps', str(args.steps), '--warmup', str(args.warmup),
         '--matmul_dtype', args.matmul_dtype]
        + [f'--{flag}={value}' for flag, value in (
            ('recurrence', args.recurrence),
            ('cross_entropy', args.cross_entropy),
            ('output', args.output),
            ('biases', args.biases)) if value],
        env=env, check=True, capture_output=True, text=True).stdout
    rows.append(json.loads(out.strip().splitlines()[-1]))
    print(json.dumps(rows[-1]), flush=True)
  print('| devices | unroll | ms / batch (median) | tokens/s | minutes / epoch |')
  print('| ---: | ---: | ---: | ---: | ---: |')
  for r in rows:
    print(f"| {r['devices']} | {r['unroll']} | {r['median_ms_per_batch']} | "
          f"{r['tokens_per_sec']} | {r['epoch_minutes']} |")


if __name__ == '__main__':
  main()
