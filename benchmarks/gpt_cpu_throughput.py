"""Training throughput of lm_jax's GPT on the nanoGPT CPU recipe.

Times the real `train_step` of lm_jax (the one `./launch.sh train` runs) on
the `shakespeare_char_cpu` shape (4 layers, 4 heads, 128 dims, block 64,
batch 12), in float32, with bfloat16 compute, and with bfloat16 matmuls in a
float32 model (`--config.matmul_dtype=bfloat16`), and reports the median
ms/step, tokens/s and model-FLOPs utilisation against this machine's matmul
peak measured by the same script. Steps run as the preset runs them,
`steps_per_call` to a jit call (`--set steps_per_call=1` for one). The
median is over calls, each waited for, divided by the steps per call;
`loop_ms_per_step` is the mean step over windows of 20 calls run as
`lm_jax.train.loop` runs them (each batch put on the devices in its call,
a few calls dispatched ahead), the median over the windows: one window of
200 steps at the defaults (`--steps` 200, 10 steps a call), one per 20
calls beyond. `mfu` follows from the median waited step, `loop_mfu` from
`loop_ms_per_step`; the table after every setting shows the latter.

  python benchmarks/gpt_cpu_throughput.py            # every setting, a table
  python benchmarks/gpt_cpu_throughput.py --one --dtype float32 --devices 2
  python benchmarks/gpt_cpu_throughput.py --rounds 3 \
      --reference .venv-bench/bin/python              # against PyTorch

With `--reference PYTHON` (a python with PyTorch: see nanogpt_reference.py)
each round ends with 300 iterations of the PyTorch re-implementation of the
recipe, so that both sides are timed in the same minutes of a shared
machine; each setting's speed-up is PyTorch's median ms/iteration over its
`loop_ms_per_step`, taken within a round, then the median over the rounds.

Each setting runs in its own process because XLA reads its flags (the
number of host devices among them) once, at start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import statistics
import sys
import time

import huge_pages  # beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _measure(args) -> dict:
  """Runs in a child process whose XLA_FLAGS are already set."""
  sys.path.insert(0, ROOT)
  import jax
  import jax.numpy as jnp
  import numpy as np

  from experiments.configs import shakespeare_char_cpu
  from lm_jax.models import build_model
  from lm_jax.tasks.language_modeling import LanguageModelingTask
  from lm_jax.train import loop, optim, parallel
  from lm_jax.train.loop import init_state
  from lm_jax.train.steps import make_multi_step, make_train_step

  config = shakespeare_char_cpu.get_config()
  if args.dtype == 'bfloat16_matmul':  # lm_jax.nn.precision
    config.compute_dtype, config.matmul_dtype = 'float32', 'bfloat16'
  else:
    config.compute_dtype = args.dtype
  for override in args.set:
    key, value = override.split('=', 1)
    config[key] = type(config[key])(value) if not isinstance(
        config[key], bool) else value.lower() in ('1', 'true')
  vocab, batch, length = 65, config.batch_size, config.block_size
  task = LanguageModelingTask(config)
  task._model = build_model(config, vocab)  # no corpus needed to time steps
  mesh = parallel.make_data_mesh(args.devices)
  tx = optim.make_optimizer(config)
  state = init_state(task.model, tx, np.zeros((1, length), np.int32), 0, mesh)
  # As the loop runs it: config.steps_per_call steps per jit call.
  per_call = config.steps_per_call
  one_step = make_train_step(task, tx, config.grad_accum_steps)
  step = jax.jit(make_multi_step(one_step, per_call) if per_call > 1
                 else one_step,
                 in_shardings=(parallel.replicated(mesh),
                               parallel.batch_sharded(mesh, int(per_call > 1)),
                               parallel.replicated(mesh)),
                 out_shardings=(parallel.replicated(mesh),) * 2,
                 donate_argnums=0)
  rng = np.random.default_rng(0)
  shape = (per_call, batch, length) if per_call > 1 else (batch, length)
  host_batches = [
      {'inputs': rng.integers(0, vocab, shape, dtype=np.int32),
       'targets': rng.integers(0, vocab, shape, dtype=np.int32),
       'weights': np.ones(shape, np.float32)} for _ in range(8)]
  put = lambda b: parallel.to_global(b, mesh, int(per_call > 1))  # noqa: E731
  batches = [put(b) for b in host_batches]
  # Replicated once, as the training loop has it.
  key = jax.device_put(jax.random.key(0), parallel.replicated(mesh))
  calls = max(1, args.steps // per_call)
  for i in range(max(2, args.warmup // per_call)):
    state, metrics = step(state, batches[i % 8], key)
  jax.block_until_ready(metrics)
  times = []
  cpu_start = time.process_time()
  for i in range(calls):
    t = time.perf_counter()
    state, metrics = step(state, batches[i % 8], key)
    jax.block_until_ready(metrics)
    times.append((time.perf_counter() - t) / per_call)
  cpu_ms = (time.process_time() - cpu_start) / (calls * per_call) * 1e3

  # As the training loop runs: each batch put on the devices in the step,
  # and up to `in_flight` calls (the loop's MAX_STEPS_IN_FLIGHT) dispatched
  # ahead of the one that is waited for; timed over windows of 20 calls.
  window_times = []
  for _ in range(max(1, calls // 20)):
    pending = []
    t = time.perf_counter()
    for i in range(20):
      state, metrics = step(state, put(host_batches[i % 8]), key)
      pending.append(metrics)
      if len(pending) > args.in_flight:
        jax.block_until_ready(pending[-1 - args.in_flight])
    jax.block_until_ready(pending[-1])
    window_times.append((time.perf_counter() - t) / (20 * per_call))
  loop_ms = float(np.median(window_times) * 1e3)

  # Model FLOPs per token as nanoGPT counts them: 6N + 12 L H Q T
  # (N without position embeddings).
  n = sum(x.size for x in jax.tree.leaves(state.params)) - sum(
      x.size for x in jax.tree.leaves(state.params.get('positions', {})))
  flops_per_token = 6 * n + 12 * config.num_layers * config.embed_dim * length
  ms = float(np.median(times) * 1e3)
  tokens_per_sec = batch * length / (ms / 1e3)

  # The matmul peak in this dtype: a large square matmul, f32 accumulate.
  dtype = jnp.dtype(args.dtype.replace('_matmul', ''))
  a = jnp.ones((2048, 2048), dtype)
  mm = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  mm(a, a).block_until_ready()
  peak_times = []
  for _ in range(10):
    t = time.perf_counter()
    mm(a, a).block_until_ready()
    peak_times.append(time.perf_counter() - t)
  peak = 2 * 2048 ** 3 / float(np.median(peak_times))
  return {'dtype': args.dtype, 'devices': args.devices,
          'xla_flags': os.environ.get('XLA_FLAGS', ''),
          'median_ms_per_step': ms, 'tokens_per_sec': tokens_per_sec,
          'loop_ms_per_step': loop_ms, 'steps_per_call': per_call,
          'cpu_ms_per_step': cpu_ms,
          'model_gflops_per_sec': flops_per_token * tokens_per_sec / 1e9,
          'peak_matmul_gflops_per_sec': peak / 1e9,
          'mfu': flops_per_token * tokens_per_sec / peak,
          'loop_mfu': flops_per_token * batch * length / (loop_ms / 1e3)
                      / peak,
          'jax': jax.__version__}


SETTINGS = [('float32', 1), ('float32', 2), ('bfloat16', 1), ('bfloat16', 2),
            ('bfloat16_matmul', 1), ('bfloat16_matmul', 2)]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--one', action='store_true',
                      help='measure one setting in this process')
  parser.add_argument('--dtype', default='float32',
                      help="float32, bfloat16 (compute_dtype) or "
                           "bfloat16_matmul (matmul_dtype, float32 compute)")
  parser.add_argument('--devices', type=int, default=1)
  parser.add_argument('--steps', type=int, default=200)
  parser.add_argument('--warmup', type=int, default=20)
  parser.add_argument('--in_flight', type=int, default=None,
                      help='calls dispatched ahead in the loop-like timing '
                           '(default: the training loop\'s)')
  parser.add_argument('--set', action='append', default=[],
                      help='config override KEY=VALUE (repeatable)')
  parser.add_argument('--xla_flags', default='',
                      help='extra XLA flags for every setting')
  parser.add_argument('--rounds', type=int, default=1,
                      help='times to run the table (medians over them)')
  parser.add_argument('--reference', default=None,
                      help='a python with PyTorch: also time the PyTorch '
                           're-implementation once a round')
  args = parser.parse_args()
  huge_pages.rerun_with_huge_pages()
  flags = os.environ.get('XLA_FLAGS', '')
  if args.one and 'xla_force_host_platform_device_count' not in flags:
    # Run directly (not from the table): XLA reads this once, before jax
    # is imported below.
    os.environ['XLA_FLAGS'] = (f'{flags} {args.xla_flags} '
                               '--xla_force_host_platform_device_count='
                               f'{args.devices}').strip()
  if args.in_flight is None:
    sys.path.insert(0, ROOT)
    from lm_jax.train import log_window
    args.in_flight = log_window.MAX_STEPS_IN_FLIGHT
  if args.one:
    print(json.dumps(_measure(args)))
    return
  rounds = [_round(args) for _ in range(args.rounds)]
  _summarise(rounds, args.reference is not None)


def _round(args) -> dict:
  """Every setting, then the PyTorch reference if asked: one round."""
  rows = []
  for dtype, devices in SETTINGS:
    env = dict(os.environ)
    env['XLA_FLAGS'] = (f'--xla_force_host_platform_device_count={devices} '
                        f'{args.xla_flags}').strip()
    out = subprocess.run(
        [sys.executable, __file__, '--one', '--dtype', dtype, '--devices',
         str(devices), '--steps', str(args.steps), '--warmup',
         str(args.warmup), '--in_flight', str(args.in_flight)]
        + [f'--set={o}' for o in args.set],
        env=env, check=True, capture_output=True, text=True).stdout
    rows.append(json.loads(out.strip().splitlines()[-1]))
    r = rows[-1]
    print(f"{dtype:15s} devices={devices} {r['median_ms_per_step']:6.2f} ms/step "
          f"(as the loop runs: {r['loop_ms_per_step']:6.2f}) "
          f"{r['tokens_per_sec']:8.0f} tok/s  MFU {r['mfu']:.1%} "
          f"(as the loop runs: {r['loop_mfu']:.1%}) of "
          f"{r['peak_matmul_gflops_per_sec']:.0f} GFLOP/s", flush=True)
  reference = None
  if args.reference:
    script = os.path.join(os.path.dirname(__file__), 'nanogpt_reference.py')
    out = subprocess.run(
        [args.reference, script, '--max_iters', '300', '--eval_interval',
         '1000'],
        check=True, capture_output=True, text=True).stdout
    reference = json.loads(out.strip().splitlines()[-1])
    print(f"PyTorch reference: {reference['median_ms_per_iter']:6.2f} ms/iter "
          f"(torch {reference['torch_version']}, "
          f"{reference['threads']} threads)", flush=True)
  return {'settings': rows, 'reference': reference}


def _summarise(rounds: list[dict], with_reference: bool) -> None:
  """Medians over the rounds, and the speed-ups within each round."""
  print('| setting | devices | ms/step as the loop runs (median) | MFU |'
        + (' speed-up over PyTorch (median; range) |' if with_reference
           else ''))
  print('| --- | ---: | ---: | ---: |' + (' ---: |' if with_reference else ''))
  for i, (dtype, devices) in enumerate(SETTINGS):
    rows = [r['settings'][i] for r in rounds]
    line = (f"| {dtype} | {devices} | "
            f"{statistics.median(r['loop_ms_per_step'] for r in rows):.2f} | "
            f"{statistics.median(r['loop_mfu'] for r in rows):.1%} |")
    if with_reference:
      ratios = [r['reference']['median_ms_per_iter'] / row['loop_ms_per_step']
                for r, row in zip(rounds, rows)]
      line += (f" {statistics.median(ratios):.2f}x; "
               f"{min(ratios):.2f}-{max(ratios):.2f}x |")
    print(line)
  print(json.dumps(rounds))


if __name__ == '__main__':
  sys.path.insert(0, ROOT)
  main()
