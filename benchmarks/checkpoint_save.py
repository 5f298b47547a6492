"""How long a checkpoint save holds up training on XLA CPU devices.

Times `lm_jax.train.checkpoint.Checkpointer.save` (asynchronous, as
training saves) of the `shakespeare_char_cpu` GPT's train state (parameters
and AdamW moments, replicated over the devices) up to its return, when
training goes on: the part of a save that is training's time. Two ways of
writing the replicated arrays:
  orbax_default: Orbax's default on CPU hosts, each array's write split
    among its replicas, slicing it first;
  whole: each array written once from its first replica, as lm_jax sets
    for CPU hosts (`checkpoint._write_replicated_arrays_whole`).
Each process (`--processes` per way, alternating) saves `--saves` times
and reports its first save (compiling the slicing programs where there are
any) and the median of the others.

  python benchmarks/checkpoint_save.py [--devices 2] [--processes 5]
      [--saves 10]

Figures: milliseconds, the median over the processes of each process's
first save and of its median later save.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAYS = ('orbax_default', 'whole')


def _measure(way: str, saves: int) -> dict:
  """Runs in a child process whose XLA_FLAGS are already set."""
  sys.path.insert(0, ROOT)
  import jax
  import numpy as np
  import orbax.checkpoint as ocp
  from experiments.configs import shakespeare_char_cpu
  from lm_jax.models import build_model
  from lm_jax.train import checkpoint, loop, optim, parallel

  config = shakespeare_char_cpu.get_config()
  mesh = parallel.make_data_mesh(jax.device_count())
  tx = optim.make_optimizer(config)
  state = loop.init_state(build_model(config, 65), tx,
                          np.zeros((1, config.block_size), np.int32), 0, mesh)
  times = []
  with tempfile.TemporaryDirectory() as workdir:
    ckpt = checkpoint.Checkpointer(workdir, max_to_keep=2, save_every=1)
    if way == 'orbax_default':  # undoes what the Checkpointer set
      handler = ocp.type_handlers.get_type_handler(jax.Array)
      handler._use_replica_parallel = True  # pylint: disable=protected-access
    for step in range(1, saves + 1):
      start = time.perf_counter()
      ckpt.save(step, state, {}, {})
      times.append(1000 * (time.perf_counter() - start))
      ckpt.wait()  # each save alone, as training's are far apart
    ckpt.close()
  return {'first_ms': times[0], 'later_ms': statistics.median(times[1:])}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--devices', type=int, default=2)
  parser.add_argument('--processes', type=int, default=5)
  parser.add_argument('--saves', type=int, default=10)
  parser.add_argument('--child', choices=WAYS, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(_measure(args.child, args.saves)))
    return
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=(
      f'--xla_force_host_platform_device_count={args.devices}'))
  results = {way: [] for way in WAYS}
  for _ in range(args.processes):
    for way in WAYS:
      out = subprocess.run(
          [sys.executable, __file__, '--child', way, '--saves',
           str(args.saves)], env=env, check=True, capture_output=True,
          text=True).stdout
      results[way].append(json.loads(out.splitlines()[-1]))
  print(f'{args.devices} CPU devices, {args.processes} processes a way, '
        f'{args.saves} saves each; median ms')
  for way in WAYS:
    first = statistics.median(r['first_ms'] for r in results[way])
    later = statistics.median(r['later_ms'] for r in results[way])
    print(f'{way:14s} first save {first:7.1f}   later saves {later:6.1f}')


if __name__ == '__main__':
  main()
