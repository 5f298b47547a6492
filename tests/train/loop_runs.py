"""Runs of the training loop as its tests drive them: a run that records
the batches it trains on and can crash part-way, what its workdir holds
afterwards, and checks that two runs ended alike."""

import os
import time

import jax
import numpy as np
import pytest

from lm_jax.data import tokenizers
from lm_jax.models import build_model
from lm_jax.tasks.language_modeling import LanguageModelingTask
from lm_jax.train import loop
from lm_jax.train.logging import read_metrics


class Crash(Exception):
  """Stands in for the process being killed."""


class StreamSpy:
  """Wraps a task's train stream: records every batch it hands out and can
  crash when asked for batch number `crash_at` (1-based)."""

  def __init__(self, stream, seen, crash_at=None):
    self._stream, self._seen, self._crash_at = stream, seen, crash_at

  def __iter__(self):
    return self

  def __next__(self):
    if self._crash_at is not None and len(self._seen) + 1 >= self._crash_at:
      raise Crash(f'killed before step {self._crash_at}')
    batch = next(self._stream)
    self._seen.append(batch['inputs'].copy())
    return batch

  def get_state(self):
    return self._stream.get_state()

  def set_state(self, state):
    self._stream.set_state(state)


def train_run(config, workdir, crash_at=None):
  """train_and_evaluate, returning (results or None if it crashed, the
  input batches the run trained on)."""
  seen = []
  original = LanguageModelingTask.train_stream
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(LanguageModelingTask, 'train_stream',
                  lambda self, rows: StreamSpy(original(self, rows), seen,
                                                crash_at))
    try:
      results = loop.train_and_evaluate(config, str(workdir))
    except Crash:
      results = None
  return results, seen


def final_params(workdir, config):
  """(step, params) of the newest checkpoint, loaded the way sampling does."""
  tokenizer = tokenizers.load(os.path.join(workdir, 'tokenizer.json'))
  model = build_model(config, tokenizer.vocab_size)
  step, params = loop.restore_params(
      str(workdir), config, model, np.zeros((1, config.block_size), np.int32))
  return step, params


def read_records(workdir, prefix):
  """The metrics.jsonl records holding `prefix` keys, without timings."""
  out = []
  for record in read_metrics(str(workdir)):
    if any(k.startswith(prefix) for k in record):
      out.append({k: v for k, v in record.items() if k != 'tokens_per_sec'})
  return out


def assert_records_close(a, b):
  assert [r['step'] for r in a] == [r['step'] for r in b]
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_allclose(x[key], y[key], rtol=1e-6,
                                 err_msg=f'step {x["step"]} {key}')


def assert_params_equal(a, b, rtol=1e-6, atol=1e-7):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                          jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


def assert_results_equal(results, expected, rtol=1e-6):
  for key, value in results.items():
    np.testing.assert_allclose(value, expected[key], rtol=rtol, err_msg=key)


def assert_ends_as_uninterrupted(uninterrupted, workdir, config, results,
                                  rtol=1e-6):
  """Same final evaluation, parameters and train/eval records."""
  assert_results_equal(results, uninterrupted['results'], rtol)
  assert_params_equal(final_params(workdir, config)[1],
                       uninterrupted['params'])
  for prefix in ('train_', 'eval_'):
    assert_records_close(read_records(workdir, prefix),
                          read_records(uninterrupted['workdir'], prefix))


def wait_for_checkpoint(workdir, step, timeout=30.0):
  """An interrupted process's asynchronous save may still be finishing."""
  path = os.path.join(workdir, 'checkpoints', str(step))
  deadline = time.monotonic() + timeout
  while not os.path.isdir(path) and time.monotonic() < deadline:
    time.sleep(0.1)
  assert os.path.isdir(path), f'no checkpoint at step {step}'


def run_files(workdir):
  snapshot = {}
  for name in ('config.json', 'tokenizer.json', 'metrics.jsonl'):
    with open(os.path.join(workdir, name), 'rb') as f:
      snapshot[name] = f.read()
  return snapshot
