"""Tests of lm_jax.train.loop.train_and_evaluate on a tiny GPT.

A run that is stopped and relaunched in the same workdir must end exactly
where an uninterrupted run ends: same parameters, same final evaluation,
same metrics.jsonl records and the same training batches. The stop is
either a clean end (a shorter run relaunched with more steps) or a crash in
the middle of training.
"""

import json
import logging
import math
import os
import re
import shutil
import time
import types

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from lm_jax import losses
from lm_jax.data import pipelines, tokenizers
from lm_jax.models import build_model
from lm_jax.tasks.language_modeling import LanguageModelingTask
from lm_jax.train import checkpoint, log_window, loop
from lm_jax.train import logging as train_logging
from lm_jax.train.logging import MetricWriter, read_metrics
from tests.command_line import REPO_ROOT


@pytest.fixture(scope='module')
def make_run_config(make_tiny_config):
  """`make_tiny_config` with dropout on: a resumed run must then restore
  its random keys too, or it no longer equals the uninterrupted one. (Not
  an override of that name: session fixtures such as `tiny_task` would
  take it, and other modules' tests would see dropout.)"""
  def make(**overrides):
    return make_tiny_config(**{'dropout_rate': 0.1, **overrides})
  return make


class _Crash(Exception):
  """Stands in for the process being killed."""


class _StreamSpy:
  """Wraps a task's train stream: records every batch it hands out and can
  crash when asked for batch number `crash_at` (1-based)."""

  def __init__(self, stream, seen, crash_at=None):
    self._stream, self._seen, self._crash_at = stream, seen, crash_at

  def __iter__(self):
    return self

  def __next__(self):
    if self._crash_at is not None and len(self._seen) + 1 >= self._crash_at:
      raise _Crash(f'killed before step {self._crash_at}')
    batch = next(self._stream)
    self._seen.append(batch['inputs'].copy())
    return batch

  def get_state(self):
    return self._stream.get_state()

  def set_state(self, state):
    self._stream.set_state(state)


def _train(config, workdir, crash_at=None):
  """train_and_evaluate, returning (results or None if it crashed, the
  input batches the run trained on)."""
  seen = []
  original = LanguageModelingTask.train_stream
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(LanguageModelingTask, 'train_stream',
                  lambda self, rows: _StreamSpy(original(self, rows), seen,
                                                crash_at))
    try:
      results = loop.train_and_evaluate(config, str(workdir))
    except _Crash:
      results = None
  return results, seen


def _final_params(workdir, config):
  """(step, params) of the newest checkpoint, loaded the way sampling does."""
  tokenizer = tokenizers.load(os.path.join(workdir, 'tokenizer.json'))
  model = build_model(config, tokenizer.vocab_size)
  step, params = loop.restore_params(
      str(workdir), config, model, np.zeros((1, config.block_size), np.int32))
  return step, params


def _records(workdir, prefix):
  """The metrics.jsonl records holding `prefix` keys, without timings."""
  out = []
  for record in read_metrics(str(workdir)):
    if any(k.startswith(prefix) for k in record):
      out.append({k: v for k, v in record.items() if k != 'tokens_per_sec'})
  return out


def _assert_records_close(a, b):
  assert [r['step'] for r in a] == [r['step'] for r in b]
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_allclose(x[key], y[key], rtol=1e-6,
                                 err_msg=f'step {x["step"]} {key}')


def _assert_params_equal(a, b, rtol=1e-6, atol=1e-7):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                          jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


def _assert_results_equal(results, expected, rtol=1e-6):
  for key, value in results.items():
    np.testing.assert_allclose(value, expected[key], rtol=rtol, err_msg=key)


def _assert_ends_as_uninterrupted(uninterrupted, workdir, config, results,
                                  rtol=1e-6):
  """Same final evaluation, parameters and train/eval records."""
  _assert_results_equal(results, uninterrupted['results'], rtol)
  _assert_params_equal(_final_params(workdir, config)[1],
                       uninterrupted['params'])
  for prefix in ('train_', 'eval_'):
    _assert_records_close(_records(workdir, prefix),
                          _records(uninterrupted['workdir'], prefix))


def _wait_for_checkpoint(workdir, step, timeout=30.0):
  """An interrupted process's asynchronous save may still be finishing."""
  path = os.path.join(workdir, 'checkpoints', str(step))
  deadline = time.monotonic() + timeout
  while not os.path.isdir(path) and time.monotonic() < deadline:
    time.sleep(0.1)
  assert os.path.isdir(path), f'no checkpoint at step {step}'


@pytest.fixture(scope='module')
def uninterrupted(make_run_config, tmp_path_factory):
  """The reference: 12 uninterrupted steps of the tiny config."""
  config = make_run_config()
  workdir = tmp_path_factory.mktemp('uninterrupted')
  results, seen = _train(config, workdir)
  return {'config': config, 'workdir': str(workdir), 'results': results,
          'seen': seen, 'params': _final_params(workdir, config)[1]}


def test_run_writes_its_artifacts_and_logs_on_schedule(uninterrupted):
  workdir = uninterrupted['workdir']
  for name in ('config.json', 'tokenizer.json', 'metrics.jsonl', 'loss.png'):
    assert os.path.isfile(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['num_train_steps'] == 12
  reader = checkpoint.Checkpointer(workdir, async_save=False)
  assert reader.steps() == [6, 12]
  reader.close()
  assert [r['step'] for r in _records(workdir, 'train_')] == [3, 6, 9, 12]
  assert [r['step'] for r in _records(workdir, 'eval_')] == [6, 12]
  assert len(uninterrupted['seen']) == 12
  results = uninterrupted['results']
  assert set(results) >= {'eval_loss', 'eval_accuracy', 'eval_perplexity',
                          'eval_bits_per_token'}
  np.testing.assert_allclose(results['eval_perplexity'],
                             math.exp(results['eval_loss']), rtol=1e-6)
  np.testing.assert_allclose(results['eval_bits_per_token'],
                             results['eval_loss'] / math.log(2), rtol=1e-6)
  final_eval = _records(workdir, 'eval_')[-1]
  np.testing.assert_allclose(final_eval['eval_loss'], results['eval_loss'])


def _validation_loss(task, config, params):
  """(mean loss, tokens) of `params` over the whole validation split,
  computed here without the loop."""
  apply = jax.jit(lambda tokens: task.model.apply({'params': params}, tokens))
  total = count = 0.0
  for batch in pipelines.lm_full_pass(task.tokens['validation'],
                                      config.block_size, config.batch_size):
    loss_sum, weight_sum = losses.cross_entropy(
        apply(batch['inputs']), batch['targets'], batch['weights'])
    total, count = total + float(loss_sum), count + float(weight_sum)
  return total / count, count


def test_evaluation_adds_the_batches_sums_in_float64():
  """Each batch's float32 sums are exact; their total over a long split
  must not round: in float32, 2**24 + 1 + 1 + 1 is 2**24."""
  mesh = loop.parallel.make_data_mesh(1)
  task = types.SimpleNamespace(init_carry=lambda rows: ())
  batches = [{'sum': np.full((1,), v, np.float32)}
             for v in (2.0**24, 1.0, 1.0, 1.0)]

  def eval_step(params, batch, carry):
    del params
    return {'loss': (batch['sum'][0], np.float32(1.0))}, carry

  result = loop.evaluate(eval_step, None, batches, mesh, task)
  assert result['loss'] == (2.0**24 + 3) / 4


def test_final_evaluation_is_the_exact_mean_over_the_validation_split(
    uninterrupted, tiny_task):
  config, params = uninterrupted['config'], uninterrupted['params']
  loss, count = _validation_loss(tiny_task, config, params)
  assert count == len(tiny_task.tokens['validation']) - 1
  np.testing.assert_allclose(uninterrupted['results']['eval_loss'], loss,
                             rtol=1e-5)


def test_relaunch_with_more_steps_equals_uninterrupted_run(
    uninterrupted, make_run_config, tmp_path, caplog):
  """6 steps, then the same workdir relaunched for 12 (the schedule is
  pinned by decay_steps=12 in both)."""
  caplog.set_level(logging.INFO, logger='lm_jax')
  first, first_seen = _train(make_run_config(num_train_steps=6), tmp_path)
  assert first is not None and len(first_seen) == 6
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  assert reader.steps() == [6]
  reader.close()

  results, seen = _train(make_run_config(), tmp_path)
  assert 'resumed from the checkpoint at step 6' in caplog.text
  # The data iterator resumed where it stopped: the same 12 batches.
  assert len(seen) == 6
  for i, (got, expected) in enumerate(zip(first_seen + seen,
                                          uninterrupted['seen'])):
    np.testing.assert_array_equal(got, expected, err_msg=f'batch {i + 1}')
  assert results.keys() == uninterrupted['results'].keys()
  _assert_results_equal(results, uninterrupted['results'])
  step, params = _final_params(tmp_path, make_run_config())
  assert step == 12
  _assert_params_equal(params, uninterrupted['params'])
  _assert_records_close(_records(tmp_path, 'train_'),
                        _records(uninterrupted['workdir'], 'train_'))


def test_resume_after_crash_equals_uninterrupted_run(uninterrupted,
                                                     make_run_config,
                                                     tmp_path, caplog):
  """Killed while fetching the batch of step 10, after step 9's metrics
  were written but long after the step-6 checkpoint: the relaunch resumes
  at step 6, trains 7-12 again and rewrites metrics.jsonl from step 7."""
  caplog.set_level(logging.INFO, logger='lm_jax')
  config = make_run_config()
  crashed, crashed_seen = _train(config, tmp_path, crash_at=10)
  assert crashed is None and len(crashed_seen) == 9
  assert [r['step'] for r in _records(tmp_path, 'train_')] == [3, 6, 9]
  _wait_for_checkpoint(str(tmp_path), 6)
  # A save a harder kill left unfinished, at a step this run never saves
  # again: the relaunch removes it.
  unfinished = tmp_path / 'checkpoints' / '8.orbax-checkpoint-tmp'
  unfinished.mkdir()

  results, seen = _train(config, tmp_path)
  assert 'resumed from the checkpoint at step 6' in caplog.text
  assert not unfinished.exists()
  for i, (got, expected) in enumerate(zip(seen, uninterrupted['seen'][6:])):
    np.testing.assert_array_equal(got, expected, err_msg=f'batch {i + 7}')
  assert len(seen) == 6
  # Every record, train and eval, reads as if there had been no crash.
  _assert_ends_as_uninterrupted(uninterrupted, tmp_path, config, results)


def test_a_run_resumed_on_fewer_devices_equals_the_uninterrupted_run(
    uninterrupted, make_run_config, tmp_path, caplog):
  """Steps 1-6 on all 4 devices, 7-12 on 2 (a host with fewer chips): the
  checkpoint is restored onto the smaller mesh and training goes on as if
  nothing had changed, dropout included, up to the all-reduces' order.
  (Step 6's records differ: that run's last evaluation was whole.)"""
  assert jax.device_count() == 4
  first, _ = _train(make_run_config(num_train_steps=6), tmp_path)
  assert first is not None
  config = make_run_config(num_devices=2)
  caplog.set_level(logging.INFO, logger='lm_jax')
  caplog.clear()
  results, _ = _train(config, tmp_path)
  # Equal results alone would also come from a relaunch that kept all 4
  # devices, or from one that trained again from scratch.
  assert ' parameters on 2 device(s)' in caplog.text, caplog.text
  assert 'resumed from the checkpoint at step 6' in caplog.text
  _assert_results_equal(results, uninterrupted['results'], rtol=1e-5)
  _assert_params_equal(_final_params(tmp_path, config)[1],
                       uninterrupted['params'], rtol=1e-7, atol=1e-6)


def test_resume_between_two_log_steps_logs_the_uninterrupted_window(
    make_run_config, tmp_path):
  """Logs every 4 steps, checkpoints every 6, killed fetching step 8's
  batch: the relaunch from step 6 logs step 8's train loss over steps 5-8,
  as the uninterrupted run does, not over 7-8 alone."""
  config = make_run_config(log_every=4)
  reference = tmp_path / 'uninterrupted'
  _train(config, reference)
  resumed = tmp_path / 'resumed'
  crashed, _ = _train(config, resumed, crash_at=8)
  assert crashed is None
  _wait_for_checkpoint(str(resumed), 6)
  _train(config, resumed)
  expected = _records(reference, 'train_')
  assert [r['step'] for r in expected] == [4, 8, 12]
  _assert_records_close(_records(resumed, 'train_'), expected)


@pytest.mark.parametrize('steps_per_call', [2, 3])
def test_several_steps_per_call_equal_one_per_call(uninterrupted,
                                                   make_run_config,
                                                   tmp_path, steps_per_call):
  """Steps scanned inside one jit call (2: mixed with single steps up to
  each log step; 3: every call) train on the same batches to the same
  parameters, records and checkpoints as one step per call."""
  config = make_run_config(steps_per_call=steps_per_call)
  results, seen = _train(config, tmp_path)
  for i, (got, expected) in enumerate(zip(seen, uninterrupted['seen'])):
    np.testing.assert_array_equal(got, expected, err_msg=f'batch {i + 1}')
  assert len(seen) == 12
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  assert reader.steps() == [6, 12]
  reader.close()
  _assert_ends_as_uninterrupted(uninterrupted, tmp_path, config, results,
                                rtol=1e-5)


def test_resume_after_crash_with_several_steps_per_call(uninterrupted,
                                                        make_run_config,
                                                        tmp_path):
  """Killed while fetching the batches of steps 10-12 (one call): the
  relaunch resumes at the step-6 checkpoint and ends as the others do."""
  config = make_run_config(steps_per_call=3)
  crashed, crashed_seen = _train(config, tmp_path, crash_at=10)
  assert crashed is None and len(crashed_seen) == 9
  _wait_for_checkpoint(str(tmp_path), 6)
  results, seen = _train(config, tmp_path)
  assert len(seen) == 6
  _assert_ends_as_uninterrupted(uninterrupted, tmp_path, config, results,
                                rtol=1e-5)


def test_steps_per_call_below_one_is_refused(make_run_config, tmp_path):
  with pytest.raises(ValueError, match='steps_per_call'):
    loop.train_and_evaluate(make_run_config(steps_per_call=0),
                            str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


def test_relaunching_a_finished_run_trains_nothing_and_reports_it(
    uninterrupted, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  before = _records(workdir, '')
  results, seen = _train(uninterrupted['config'], workdir)
  assert seen == []
  _assert_results_equal(results, uninterrupted['results'])
  assert _records(workdir, '') == before


def test_a_kill_during_the_final_evaluation_loses_no_training(
    uninterrupted, tmp_path):
  """The final checkpoint is written before the final evaluation; the
  relaunch trains nothing and records that evaluation."""
  workdir = str(tmp_path / 'run')
  original = loop._evaluate_state

  def killed_when_final(*args, final, **kwargs):
    if final:
      raise _Crash('killed during the final evaluation')
    return original(*args, final=final, **kwargs)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(loop, '_evaluate_state', killed_when_final)
    results, _ = _train(uninterrupted['config'], workdir)
  assert results is None
  _wait_for_checkpoint(workdir, 12)
  results, seen = _train(uninterrupted['config'], workdir)
  assert seen == []
  _assert_ends_as_uninterrupted(uninterrupted, workdir,
                                uninterrupted['config'], results)


def test_a_run_shortened_to_a_step_it_had_not_logged_ends_as_that_run(
    make_run_config, tmp_path, monkeypatch):
  """A 12-step run logging every 4 steps, killed after its step-6
  checkpoint (steps 5-6 not logged, evaluated at 6 on 2 batches),
  relaunched as a 6-step run: its records, and TensorBoard's, end as those
  of a 6-step run, which a sweep then summarises."""
  import tensorboardX
  run, six = tmp_path / 'run', tmp_path / 'six'
  results, _ = _train(make_run_config(log_every=4), run, crash_at=9)
  assert results is None
  _wait_for_checkpoint(run, 6)
  sampled = _records(run, 'eval_')
  assert [r['step'] for r in sampled] == [6]
  events = []
  init = tensorboardX.SummaryWriter.__init__
  add = tensorboardX.SummaryWriter.add_scalar

  def logged_init(self, *args, **kwargs):
    events.append(('purge', kwargs.get('purge_step')))
    init(self, *args, **kwargs)

  def logged_add(self, tag, value, step):
    events.append((tag, step))
    add(self, tag, value, step)

  monkeypatch.setattr(tensorboardX.SummaryWriter, '__init__', logged_init)
  monkeypatch.setattr(tensorboardX.SummaryWriter, 'add_scalar', logged_add)
  short = make_run_config(log_every=4, num_train_steps=6)
  results = loop.train_and_evaluate(short, str(run))
  assert _records(run, 'eval_')[0]['eval_loss'] != sampled[0]['eval_loss']
  last_purge = max(i for i, e in enumerate(events) if e[0] == 'purge')
  assert events[last_purge] == ('purge', 6)
  tags = [tag for tag, _ in events[last_purge + 1:]]
  assert len(tags) == len(set(tags)) and {'train_loss', 'eval_loss'} <= set(
      tags)  # once each
  expected = loop.train_and_evaluate(short, str(six))
  _assert_results_equal(results, expected)
  for prefix in ('train_', 'eval_'):
    _assert_records_close(_records(run, prefix), _records(six, prefix))


def test_relaunching_with_fewer_steps_than_trained_is_refused(
    uninterrupted, tmp_path):
  """The workdir would otherwise report the longer run under a config.json
  that says it stopped earlier."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  config = uninterrupted['config'].copy_and_resolve_references()
  config.num_train_steps = 6
  with open(os.path.join(workdir, 'config.json')) as f:
    before = f.read()
  with pytest.raises(ValueError, match=r'has trained 12 steps, more than '
                     r'num_train_steps=6; relaunch it with at least 12'):
    loop.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, 'config.json')) as f:
    assert f.read() == before


def test_a_resume_whose_tokenizer_would_change_is_refused(uninterrupted,
                                                         tmp_path):
  """The launch builds its tokenizer again (from the data, or from the run
  named by init_from); were it another, the checkpoints' ids would be
  read with the wrong characters, words or pieces."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  path = os.path.join(workdir, 'tokenizer.json')
  with open(path, encoding='utf-8') as f:
    saved = json.load(f)
  chars = saved['chars']
  chars[1], chars[2] = chars[2], chars[1]  # the run was trained on these
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(saved, f)
  before = _snapshot_files(workdir)
  config = uninterrupted['config'].copy_and_resolve_references()
  config.num_train_steps = 18
  with pytest.raises(ValueError, match='tokenizer.json differs'):
    loop.train_and_evaluate(config, workdir)
  assert _snapshot_files(workdir) == before


def test_a_second_launch_on_a_workdir_in_training_is_refused(uninterrupted,
                                                             tmp_path):
  """Two processes training one workdir interleaved their checkpoints
  and metrics.jsonl (a relaunched sweep still running, say)."""
  from lm_jax import atomic_files  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  before = _snapshot_files(workdir)
  config = uninterrupted['config'].copy_and_resolve_references()
  config.num_train_steps = 18
  with atomic_files.held_exclusively(workdir):  # as the first launch does
    with pytest.raises(BlockingIOError, match='another process is training'):
      loop.train_and_evaluate(config, workdir)
  assert _snapshot_files(workdir) == before


def test_the_launchs_workdir_check_runs_again_once_the_workdir_is_held(
    uninterrupted, tmp_path):
  """The command line checks a relaunch's settings before the workdir is
  held; another launch may train in it meanwhile, so the loop checks again
  once it holds it, before it reads or writes anything there."""
  from lm_jax import atomic_files  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  before = _snapshot_files(workdir)
  config = uninterrupted['config'].copy_and_resolve_references()
  config.num_train_steps = 18
  checked = []

  def check_workdir():
    with pytest.raises(BlockingIOError):  # the loop holds it
      with atomic_files.held_exclusively(workdir):
        pass
    checked.append(True)
    raise SystemExit(2)  # as the command line refuses

  with pytest.raises(SystemExit):
    loop.train_and_evaluate(config, workdir, check_workdir)
  assert checked
  assert _snapshot_files(workdir) == before


def _snapshot_files(workdir):
  snapshot = {}
  for name in ('config.json', 'tokenizer.json', 'metrics.jsonl'):
    with open(os.path.join(workdir, name), 'rb') as f:
      snapshot[name] = f.read()
  return snapshot


def test_a_diverged_value_is_written_as_strict_json_and_read_as_nan(
    tmp_path):
  writer = MetricWriter(str(tmp_path))
  writer.write(1, {'train_loss': float('nan'), 'eval_loss': float('inf'),
                   'tokens_per_sec': 5.0})
  writer.close()
  with open(tmp_path / 'metrics.jsonl') as f:
    line = f.read()
  # No bare NaN / Infinity, which strict JSON readers reject.
  assert json.loads(line, parse_constant=pytest.fail) == {
      'step': 1, 'train_loss': None, 'eval_loss': None,
      'tokens_per_sec': 5.0}
  record, = read_metrics(str(tmp_path))
  assert math.isnan(record['train_loss']) and math.isnan(record['eval_loss'])
  # A resume rewrites the kept records as strictly.
  MetricWriter(str(tmp_path), resume_step=1).close()
  with open(tmp_path / 'metrics.jsonl') as f:
    assert f.read() == line


def test_relaunch_replaces_a_corrupt_newest_checkpoint(uninterrupted,
                                                       tmp_path, caplog):
  """With the step-12 checkpoint unreadable, a relaunch falls back to step
  6, trains 7-12 again, and must leave a readable step-12 checkpoint."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  state_dir = os.path.join(workdir, 'checkpoints', '12', 'state')
  for root, _, names in os.walk(state_dir):
    for name in names:
      open(os.path.join(root, name), 'w').close()
  caplog.set_level(logging.INFO, logger='lm_jax')
  results, seen = _train(uninterrupted['config'], workdir)
  assert 'resumed from the checkpoint at step 6' in caplog.text
  assert len(seen) == 6
  np.testing.assert_allclose(results['eval_loss'],
                             uninterrupted['results']['eval_loss'], rtol=1e-6)
  step, params = _final_params(workdir, uninterrupted['config'])
  assert step == 12, (
      'the retrained step-12 state was not saved: the unreadable step-12 '
      'checkpoint is still the newest one')
  _assert_params_equal(params, uninterrupted['params'])


def test_all_checkpoints_unreadable_refuses_to_start_over(uninterrupted,
                                                          tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  for root, _, names in os.walk(os.path.join(workdir, 'checkpoints')):
    for name in names:
      if os.sep + 'state' + os.sep in os.path.join(root, name):
        open(os.path.join(root, name), 'w').close()
  before = _records(workdir, '')
  with pytest.raises(ValueError, match='readable'):
    loop.train_and_evaluate(uninterrupted['config'], workdir)
  assert _records(workdir, '') == before


def test_a_changed_optimizer_layout_refuses_to_start_over(uninterrupted,
                                                          tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  config = uninterrupted['config'].copy_and_resolve_references()
  assert config.optimizer_flatten
  config.optimizer_flatten = False
  config.num_train_steps += 3
  before = _records(workdir, '')
  assets = {name: open(os.path.join(workdir, name), 'rb').read()
            for name in ('config.json', 'tokenizer.json')}
  with pytest.raises(ValueError, match='optimizer_flatten'):
    loop.train_and_evaluate(config, workdir)
  assert _records(workdir, '') == before
  for name, content in assets.items():  # the run's own settings survive
    assert open(os.path.join(workdir, name), 'rb').read() == content, name


def test_tokens_per_sec_and_ms_per_step_leave_evaluation_and_saving_out(
    make_run_config, tmp_path, caplog):
  """On a clock where each training batch takes 1 s, each evaluation 100 s,
  each checkpoint save 50 s and each metrics record 10 s, every logged
  window reads 64 tokens (4 rows of 16) a second and the console 1000 ms a
  step, the window 4-8 around the evaluation and save at step 6 included."""
  clock = [0.0]
  original_stream = LanguageModelingTask.train_stream
  original_evaluate = loop.evaluate
  original_save = checkpoint.Checkpointer.save
  original_write = MetricWriter.write

  class TimedStream(_StreamSpy):
    def __next__(self):
      clock[0] += 1.0
      return super().__next__()

  def slow(seconds, original):
    def call(*args, **kwargs):
      clock[0] += seconds
      return original(*args, **kwargs)
    return call

  caplog.set_level(logging.INFO, logger='lm_jax')
  with pytest.MonkeyPatch.context() as patch:
    fake_time = types.SimpleNamespace(perf_counter=lambda: clock[0])
    patch.setattr(log_window, 'time', fake_time)
    patch.setattr(loop, 'evaluate', slow(100.0, original_evaluate))
    patch.setattr(checkpoint.Checkpointer, 'save', slow(50.0, original_save))
    patch.setattr(MetricWriter, 'write', slow(10.0, original_write))
    patch.setattr(LanguageModelingTask, 'train_stream',
                  lambda self, rows: TimedStream(original_stream(self, rows),
                                                 []))
    loop.train_and_evaluate(make_run_config(log_every=4), str(tmp_path))
  rates = [(r['step'], r['tokens_per_sec']) for r in read_metrics(str(tmp_path))
           if 'tokens_per_sec' in r]
  assert rates == [(4, 64.0), (8, 64.0), (12, 64.0)]
  assert re.findall(r'\(([\d.]+) ms/step', caplog.text) == ['1000.0'] * 3


def test_progress_line_writes_counts_whole():
  line = train_logging.progress_line(
      5, 100, {'loss': 1.23456, 'tok/s': 18_410.4}, 0.1115)
  assert line == ('step 5/100 loss=1.235 tok/s=18410 (111.5 ms/step, '
                  'ETA 11s)'), line


def test_log_every_0_logs_at_the_end_and_eval_steps_0_evaluates_whole_splits(
    make_run_config, tmp_path):
  config = make_run_config(log_every=0, eval_steps=0)
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert [r['step'] for r in _records(tmp_path, 'train_')] == [12]
  evals = _records(tmp_path, 'eval_')
  assert [r['step'] for r in evals] == [6, 12]
  np.testing.assert_allclose(evals[-1]['eval_loss'], results['eval_loss'])


def test_relaunching_a_finished_run_with_eval_steps_0_evaluates_it_whole(
    make_run_config, tmp_path):
  """eval_steps 0 means the whole split, final_eval_full or not, on the
  relaunch of a finished run too (it found no batch to score)."""
  config = make_run_config(eval_steps=0, final_eval_full=False)
  first = loop.train_and_evaluate(config, str(tmp_path))
  again = loop.train_and_evaluate(config, str(tmp_path))
  np.testing.assert_allclose(again['eval_loss'], first['eval_loss'],
                             rtol=1e-6)


def test_a_resume_has_tensorboard_purge_the_steps_it_trains_again(
    make_run_config, tmp_path, monkeypatch):
  import tensorboardX
  purges = []
  original = tensorboardX.SummaryWriter.__init__

  def init(self, *args, **kwargs):
    purges.append(kwargs.get('purge_step'))
    original(self, *args, **kwargs)

  monkeypatch.setattr(tensorboardX.SummaryWriter, '__init__', init)
  _train(make_run_config(), tmp_path, crash_at=8)
  _train(make_run_config(), tmp_path)
  assert purges == [1, 7]  # resumed from the checkpoint at step 6
  # Killed before its first checkpoint, after logging step 3: the relaunch
  # starts over and must drop that attempt's events too.
  purges.clear()
  _train(make_run_config(), tmp_path / 'early', crash_at=5)
  _train(make_run_config(), tmp_path / 'early')
  assert purges == [1, 1]


def test_metrics_summed_early_on_a_long_unlogged_run_log_the_same(
    make_run_config, tmp_path, monkeypatch):
  """With log_every=0 the loop folds older steps' metrics into host sums
  (here every 3 steps) instead of keeping them all on device."""
  config = make_run_config(log_every=0, checkpoint_every=0)
  loop.train_and_evaluate(config, str(tmp_path / 'kept'))
  monkeypatch.setattr(log_window, 'MAX_PENDING', 3)
  sums, original = [], log_window.window_sums
  monkeypatch.setattr(log_window, 'window_sums',
                      lambda pending: sums.append(len(pending))
                      or original(pending))
  loop.train_and_evaluate(config, str(tmp_path / 'folded'))
  assert sums[:3] == [4, 4, 4]  # folded as it went, not once at the end
  kept, folded = (_records(tmp_path / name, 'train_')
                  for name in ('kept', 'folded'))
  assert [r['step'] for r in folded] == [12]
  np.testing.assert_allclose(folded[0]['train_loss'], kept[0]['train_loss'],
                             rtol=1e-9)


def test_training_reduces_the_loss(make_run_config, tmp_path):
  """A sanity check no equivalence test can make: the gradient points
  downhill. 48 steps at a high learning rate take the tiny model well
  below the uniform guess on both splits."""
  config = make_run_config(num_train_steps=48, decay_steps=48,
                            learning_rate=1e-2, min_learning_rate=1e-3,
                            warmup_steps=4, log_every=8, eval_every=0,
                            checkpoint_every=0)
  results = loop.train_and_evaluate(config, str(tmp_path))
  train_losses = [r['train_loss'] for r in _records(tmp_path, 'train_')]
  vocab_size = tokenizers.load(
      os.path.join(tmp_path, 'tokenizer.json')).vocab_size
  assert train_losses[-1] < train_losses[0] - 0.4, train_losses
  assert results['eval_loss'] < math.log(vocab_size) - 0.3, results


_MANY_EVAL_STEPS = '''
import os, sys
os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
sys.path.insert(0, sys.argv[1])
import jax, jax.numpy as jnp, numpy as np
from experiments.configs import shakespeare_char_cpu
from lm_jax.models import build_model
from lm_jax.tasks.language_modeling import LanguageModelingTask
from lm_jax.train import loop, parallel
from lm_jax.train.steps import make_eval_step
config = shakespeare_char_cpu.get_config()
task = LanguageModelingTask(config)
task._model = build_model(config, 65)
mesh = parallel.make_data_mesh(2)
params = jax.jit(lambda r: task.model.init(r, jnp.zeros((1, 64), jnp.int32))[
    'params'], out_shardings=parallel.replicated(mesh))(jax.random.key(0))
eval_step = jax.jit(make_eval_step(task),
                    in_shardings=(parallel.replicated(mesh),
                                  parallel.batch_sharded(mesh),
                                  parallel.batch_sharded(mesh)),
                    out_shardings=(parallel.replicated(mesh),
                                   parallel.batch_sharded(mesh)))
rng = np.random.default_rng(0)
batches = [{'inputs': rng.integers(0, 65, (12, 64), dtype=np.int32),
            'targets': rng.integers(0, 65, (12, 64), dtype=np.int32),
            'weights': np.ones((12, 64), np.float32)} for _ in range(300)]
print(loop.evaluate(eval_step, params, batches, mesh, task)['loss'])
'''


def test_evaluation_over_many_batches_on_two_cpu_devices_does_not_hang(
    tmp_path):
  """Regression: independent eval steps left in flight deadlocked the
  all-reduces of two XLA CPU devices (seen in 2 of 3 runs of this script
  before `evaluate` waited for each step)."""
  import subprocess
  import sys
  script = tmp_path / 'many_eval_steps.py'
  script.write_text(_MANY_EVAL_STEPS)
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  result = subprocess.run(
      [sys.executable, str(script), REPO_ROOT],
      capture_output=True, text=True, timeout=120, env=env)
  assert result.returncode == 0, result.stderr[-2000:]
  assert math.isfinite(float(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize('average', [0.0, 0.5])  # param_average_decay
def test_pretrained_params_are_put_in_once_and_not_on_resume(
    make_run_config, tmp_path, average):
  calls = []

  def pretrained(self, params):
    calls.append(1)
    return jax.tree.map(lambda x: x * 0 + 0.5, params)

  config = make_run_config(num_train_steps=3, checkpoint_every=3,
                            schedule='constant', warmup_steps=0,
                            learning_rate=0.0, weight_decay=0.0,
                            param_average_decay=average)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(LanguageModelingTask, 'pretrained_params', pretrained)
    loop.train_and_evaluate(config, str(tmp_path))
    assert calls == [1]
    _, params = _final_params(tmp_path, config)
    assert all(np.all(np.asarray(x) == 0.5) for x in jax.tree.leaves(params))
    loop.train_and_evaluate(make_run_config(
        num_train_steps=4, checkpoint_every=3, schedule='constant',
        warmup_steps=0, learning_rate=0.0, weight_decay=0.0,
        param_average_decay=average), str(tmp_path))
    assert calls == [1]  # the relaunch resumed from the checkpoint


def test_with_a_param_average_evaluations_and_checkpoints_use_it(
    make_run_config, tiny_task, tmp_path):
  config = make_run_config(param_average_decay=0.5)
  results = loop.train_and_evaluate(config, str(tmp_path))
  _, average = _final_params(tmp_path, config)  # as sampling loads it
  saved = ocp.StandardCheckpointer().restore(
      os.path.join(str(tmp_path), 'checkpoints', '12', 'state'))
  _assert_params_equal(average, saved['opt_state']['average'])
  _assert_params_equal(checkpoint.load_params(str(tmp_path)), average)
  assert not all(np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(saved['params']), jax.tree.leaves(average)))
  np.testing.assert_allclose(
      results['eval_loss'], _validation_loss(tiny_task, config, average)[0],
      rtol=1e-5)


def test_profile_steps_write_a_trace_and_a_resume_past_them_skips_it(
    make_run_config, tmp_path, caplog):
  """Steps 2-3 traced; a relaunch after step 6 with a window that began
  before it trains on, without a trace (stopping one never started
  failed)."""
  caplog.set_level(logging.INFO, logger='lm_jax')
  loop.train_and_evaluate(
      make_run_config(num_train_steps=6, profile_steps='2:3'), str(tmp_path))
  traces = [f for _, _, files in os.walk(tmp_path / 'profile') for f in files]
  assert any(f.endswith('.xplane.pb') for f in traces), traces
  results = loop.train_and_evaluate(
      make_run_config(profile_steps='4:8'), str(tmp_path))
  assert np.isfinite(results['eval_loss'])
  assert 'profile_steps 4:8 began before step 6' in caplog.text


def test_a_profile_window_past_the_end_is_traced_to_the_end(make_run_config,
                                                            tmp_path):
  loop.train_and_evaluate(
      make_run_config(num_train_steps=6, profile_steps='5:100'),
      str(tmp_path))
  traces = [f for _, _, files in os.walk(tmp_path / 'profile') for f in files]
  assert any(f.endswith('.xplane.pb') for f in traces), traces


def test_a_run_failing_inside_its_profile_window_stops_and_keeps_the_trace(
    make_run_config, tmp_path):
  """The steps traced before the error are written; a trace left running
  would also refuse the next run's (one per process)."""
  crashed, _ = _train(make_run_config(profile_steps='2:6'), tmp_path,
                      crash_at=4)
  assert crashed is None
  traces = [f for _, _, files in os.walk(tmp_path / 'profile') for f in files]
  assert any(f.endswith('.xplane.pb') for f in traces), traces
  results = loop.train_and_evaluate(
      make_run_config(num_train_steps=6, profile_steps='5:6'),
      str(tmp_path / 'next'))
  assert np.isfinite(results['eval_loss'])


def test_a_failed_run_closes_its_checkpointer(make_run_config, tmp_path,
                                              monkeypatch):
  """An open asynchronous checkpointer left to the interpreter's exit can
  hang it: the error's way out closes it (and the error still surfaces)."""
  closed = []
  original = checkpoint.Checkpointer.close

  def close(self):
    closed.append(True)
    original(self)

  monkeypatch.setattr(checkpoint.Checkpointer, 'close', close)
  crashed, seen = _train(make_run_config(), tmp_path, crash_at=8)
  assert crashed is None and len(seen) == 7
  assert closed == [True]
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  assert reader.steps() == [6]  # the save before the crash completed
  reader.close()


def test_an_unwritable_config_json_names_it_and_leaves_no_temporary_file(
    tmp_path):
  from lm_jax.atomic_files import write_text
  target = tmp_path / 'config.json'
  target.mkdir()  # a folder where the file should go
  with pytest.raises(OSError) as error:
    write_text(str(target), '{}')
  assert error.value.filename == str(target)
  assert os.listdir(tmp_path) == ['config.json']


@pytest.mark.parametrize('content, message', [
    (None, 'holds no run'), ('{"task": "lm", "mod', 'is not JSON'),
    ('[1, 2]', 'no task'), ('{"model": "gpt"}', 'no task')])
def test_read_run_config_names_what_is_wrong(tmp_path, content, message):
  from lm_jax.train.logging import read_run_config
  if content is not None:
    (tmp_path / 'config.json').write_text(content)
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    read_run_config(str(tmp_path))
  (tmp_path / 'config.json').write_text('{"task": "lm", "seed": 3}')
  assert read_run_config(str(tmp_path)) == {'task': 'lm', 'seed': 3}
