"""PyTorch reference baseline: Zaremba et al.'s small LSTM LM on PTB.

A self-contained PyTorch implementation of the recipe of
experiments/configs/ptb_lstm_small.py, to measure the training speed (and,
with --epochs 13, the perplexity) that lm_jax is compared against; nothing
in lm_jax imports it. 2 x 200 `nn.LSTM`, 10k-word softmax, batches of 20
contiguous streams x 35 steps, SGD lr 1 halved every epoch after the 4th,
gradient norm clipped at 5 (loss summed over time, averaged over the batch),
weights U(-0.1, 0.1), no dropout.

PyTorch is a benchmark-only dependency, in its own venv::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.13.0 numpy
    .venv-bench/bin/python benchmarks/lstm_ptb_reference.py --threads 2 --batches 200
    .venv-bench/bin/python benchmarks/lstm_ptb_reference.py --autocast   # bfloat16

The last line printed is a JSON summary (median ms per batch, tokens/s and,
after whole epochs, valid/test perplexity: read as 20 streams, as lm_jax's
`eval_perplexity` / `test_perplexity`, and the test also as one text, as
Zaremba et al. and `--config.eval_streams=1`). `--seed S` seeds the
initialisation (the only random draw; the data order is fixed).
"""

import argparse
import collections
import gzip
import json
import math
import os
import statistics
import time

import numpy as np
import torch
from torch import nn

import huge_pages  # beside this script

DATA = os.environ.get('LM_JAX_DATA') or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data')
B, T, H, V = 20, 35, 200, 10000


def _read(split):
  path = os.path.join(DATA, 'ptb', f'ptb.{split}.txt')
  opener = (lambda: gzip.open(path + '.gz', 'rt', encoding='utf-8')) if (
      not os.path.exists(path)) else (lambda: open(path, encoding='utf-8'))
  with opener() as f:
    return f.read().replace('\n', ' <eos> ').split()


class Model(nn.Module):

  def __init__(self):
    super().__init__()
    self.embed = nn.Embedding(V, H)
    self.lstm = nn.LSTM(H, H, 2, batch_first=True)
    self.out = nn.Linear(H, V)
    for name, p in self.named_parameters():
      nn.init.uniform_(p, -0.1, 0.1) if 'bias' not in name else nn.init.zeros_(p)

  def forward(self, x, state):
    y, state = self.lstm(self.embed(x), state)
    return self.out(y), state


def _streams(ids, batch):
  n = len(ids) // batch
  return torch.tensor(np.array(ids[:n * batch]).reshape(batch, n))


def _evaluate(model, ids, streams=B):
  data = _streams(ids, streams)
  state, total, count = None, 0.0, 0
  with torch.no_grad():
    for i in range(0, data.shape[1] - 1, T):
      x, y = data[:, i:i + T], data[:, i + 1:i + 1 + T]
      x = x[:, :y.shape[1]]
      logits, state = model(x, state)
      total += nn.functional.cross_entropy(
          logits.reshape(-1, V), y.reshape(-1), reduction='sum').item()
      count += y.numel()
  return math.exp(total / count)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--threads', type=int,
                      default=len(os.sched_getaffinity(0)),
                      help='every core this process may use, as XLA does')
  parser.add_argument('--batches', type=int, default=200,
                      help='timed batches when --epochs is 0')
  parser.add_argument('--epochs', type=int, default=0)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--autocast', action='store_true',
                      help='bfloat16 mixed precision (torch.autocast), to '
                           "compare with lm_jax's --matmul_dtype bfloat16")
  args = parser.parse_args()
  huge_pages.rerun_with_huge_pages()
  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  words = _read('train')
  counts = collections.Counter(words)
  vocab = {w: i for i, w in enumerate(sorted(counts, key=lambda w: (-counts[w], w)))}
  ids = {s: [vocab[w] for w in (words if s == 'train' else _read(s))]
         for s in ('train', 'valid', 'test')}
  data = _streams(ids['train'], B)
  epoch_size = (data.shape[1] - 1) // T
  model = Model()
  opt = torch.optim.SGD(model.parameters(), lr=1.0)
  times, total_batches = [], (args.epochs * epoch_size or args.batches)
  result = {}
  for k in range(total_batches):
    epoch, i = divmod(k, epoch_size)
    if i == 0:
      state = None
      for g in opt.param_groups:
        g['lr'] = 0.5 ** max(epoch + 1 - 4, 0)
    x = data[:, i * T:(i + 1) * T]
    y = data[:, i * T + 1:(i + 1) * T + 1]
    start = time.perf_counter()
    if state is not None:
      state = tuple(s.detach() for s in state)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=args.autocast):
      logits, state = model(x, state)
    loss = nn.functional.cross_entropy(
        logits.float().reshape(-1, V), y.reshape(-1)) * T
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    times.append(time.perf_counter() - start)
    if i == epoch_size - 1:
      result[f'epoch{epoch + 1}_valid_ppl'] = round(
          _evaluate(model, ids['valid']), 2)
      print(json.dumps(result), flush=True)
  ms = statistics.median(times[5:]) * 1e3
  result.update(median_ms_per_batch=round(ms, 2),
                tokens_per_sec=round(B * T / ms * 1e3), threads=args.threads,
                autocast=args.autocast, seed=args.seed,
                torch=torch.__version__)
  if args.epochs:
    result['test_ppl'] = round(_evaluate(model, ids['test']), 2)
    result['test_ppl_one_stream'] = round(_evaluate(model, ids['test'], 1), 2)
  print(json.dumps(result))


if __name__ == '__main__':
  main()
