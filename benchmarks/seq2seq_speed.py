"""Speed of the translation presets: training tokens/s and decoding
sentences/s (greedy and beam search).

Training times the real `train_step` of `./launch.sh train` on real
Multi30k batches of the preset (length-bucketed; each bucket's shape is
compiled before timing), with the batch sharded over the XLA CPU devices
as the loop does. Decoding times the jit-compiled greedy and beam searches
of `lm_jax.decode` over test-split sentences, batches spread over the
devices as the task's final evaluation spreads them.

  python benchmarks/seq2seq_speed.py                      # both presets
  python benchmarks/seq2seq_speed.py --presets multi30k_transformer \\
      --workdir runs/multi30k_transformer                # trained weights

Without --workdir the weights are freshly initialised: an untrained model
never emits EOS, so every search runs all --decode_length steps; a trained
one stops at EOS, about 16 tokens in on Multi30k. The figures are then a
fixed-length upper bound on the time per sentence.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _config(preset: str, args):
  import importlib
  from experiments import cli
  if args.workdir:  # the run's own settings, with this machine's paths
    config = cli.load_run_config(args.workdir)
  else:
    config = importlib.import_module(
        f'experiments.configs.{preset}').get_config()
  config.data_dir = args.data_dir or config.data_dir
  config.cache_dir = args.cache_dir or config.cache_dir
  cli.resolve_paths(config)
  return config


def _train_speed(task, config, args) -> dict:
  import jax
  from lm_jax.train import optim, parallel
  from lm_jax.train.loop import init_state, state_sharding
  from lm_jax.train.steps import make_train_step

  mesh = parallel.make_data_mesh(0)
  tx = optim.make_optimizer(config, task.steps_per_epoch)
  state = init_state(task.model, tx, task.dummy_batch()['inputs'], 0, mesh)
  step = jax.jit(make_train_step(task, tx),
                 in_shardings=(state_sharding(mesh),
                               parallel.batch_sharded(mesh),
                               parallel.replicated(mesh)),
                 out_shardings=(state_sharding(mesh),
                                parallel.replicated(mesh)),
                 donate_argnums=0)
  stream = task.train_stream(slice(None))
  batches = [next(stream) for _ in range(args.train_steps)]
  key = jax.random.key(0)
  compiled = set()
  for batch in batches:  # compile every bucket before timing
    if batch['inputs'].shape not in compiled:
      compiled.add(batch['inputs'].shape)
      state, metrics = step(state, parallel.to_global(batch, mesh), key)
      jax.block_until_ready(metrics)
  times, cpu = [], time.process_time()
  for batch in batches:
    start = time.perf_counter()
    state, metrics = step(state, parallel.to_global(batch, mesh), key)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  cpu = time.process_time() - cpu
  targets = sum(float(b['weights'].sum()) for b in batches)
  sources = sum(float((b['inputs'] != 0).sum()) for b in batches)
  total = sum(times)
  return {'devices': mesh.size, 'steps': len(times),
          'shapes': len(compiled),
          'median_ms_per_step': 1e3 * statistics.median(times),
          'mean_ms_per_step': 1e3 * total / len(times),
          'cpu_ms_per_step': 1e3 * cpu / len(times),
          'target_tokens_per_sec': targets / total,
          'all_tokens_per_sec': (targets + sources) / total,
          'target_tokens_per_step': targets / len(times)}


def _decode_speed(task, config, params, args) -> dict:
  import jax
  from lm_jax.tasks.translation import Translator

  sentences = task.raw['test'][0][:args.decode_sentences]
  translator = Translator(task.model, task.source_tokenizer,
                          task.target_tokenizer, args.decode_length,
                          args.decode_batch, config.length_multiple)
  out = {}
  for beam in (1, 4):
    run = lambda: translator.translate_ids(  # noqa: E731
        params, sentences, beam, config.length_penalty,
        devices=jax.local_devices())
    start = time.perf_counter()
    run()  # compiles
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    ids = run()
    seconds = time.perf_counter() - start
    name = 'greedy' if beam == 1 else f'beam{beam}'
    out[f'{name}_sentences_per_sec'] = len(sentences) / seconds
    out[f'{name}_seconds'] = seconds
    out[f'{name}_first_call_seconds'] = compile_s
    out[f'{name}_mean_output_tokens'] = sum(map(len, ids)) / len(ids)
  out['sentences'] = len(sentences)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--presets', default='multi30k_transformer,'
                      'multi30k_gru_bahdanau')
  parser.add_argument('--workdir', default='',
                      help='a trained run of the (single) preset')
  parser.add_argument('--train_steps', type=int, default=20)
  parser.add_argument('--decode_sentences', type=int, default=512)
  parser.add_argument('--decode_batch', type=int, default=128)
  parser.add_argument('--decode_length', type=int, default=24)
  parser.add_argument('--data_dir', default='')
  parser.add_argument('--cache_dir', default='')
  parser.add_argument('--cpu_devices', type=int, default=0)
  parser.add_argument('--json', default='', help='also write results here')
  args = parser.parse_args()

  from experiments import before_jax, cli
  presets = args.presets.split(',')
  if args.workdir and len(presets) != 1:
    cli.fail('--workdir needs exactly one preset')
  before_jax.set_cpu_devices(
      before_jax.cpu_device_count(args.cpu_devices, 128))
  cli.setup_logging()
  import jax
  from lm_jax import tasks
  from lm_jax.train.loop import restore_params

  results = {}
  for preset in presets:
    config = _config(preset, args)
    task = tasks.make_task(config)
    task.prepare()
    if args.workdir:
      _, params = restore_params(args.workdir, config, task.model,
                                 task.dummy_batch()['inputs'])
    else:
      params = jax.jit(task.model.init)(
          jax.random.key(0), task.dummy_batch()['inputs'])['params']
    row = {'trained_weights': bool(args.workdir),
           'decode_length': args.decode_length}
    row.update(_train_speed(task, config, args))
    row.update(_decode_speed(task, config, params, args))
    results[preset] = row
    print(json.dumps({preset: row}, indent=1), flush=True)
  print('\n| preset | train ms/step (median) | CPU ms/step | target tok/s | '
        'all tok/s | greedy sent/s | beam-4 sent/s |')
  print('| --- | ---: | ---: | ---: | ---: | ---: | ---: |')
  for preset, r in results.items():
    print(f"| {preset} | {r['median_ms_per_step']:.0f} | "
          f"{r['cpu_ms_per_step']:.0f} | {r['target_tokens_per_sec']:,.0f} | "
          f"{r['all_tokens_per_sec']:,.0f} | "
          f"{r['greedy_sentences_per_sec']:.1f} | "
          f"{r['beam4_sentences_per_sec']:.1f} |")
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=1)


if __name__ == '__main__':
  main()
