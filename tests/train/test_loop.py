"""A run of lm_jax.train.loop.train_and_evaluate (a tiny GPT) that is
stopped and relaunched in the same workdir must end exactly where an
uninterrupted run ends: same parameters, same final evaluation, same
metrics.jsonl records and the same training batches. The stop is either a
clean end (a shorter run relaunched with more steps) or a crash in the
middle of training.
"""

import logging
import os
import shutil

import jax
import numpy as np
import pytest

from lm_jax.tasks.language_modeling import LanguageModelingTask
from lm_jax.train import checkpoint, loop
from tests.train.loop_runs import (Crash, train_run, final_params, read_records,
                                   assert_records_close, assert_params_equal,
                                   assert_results_equal,
                                   assert_ends_as_uninterrupted,
                                   wait_for_checkpoint)


def test_relaunch_with_more_steps_equals_uninterrupted_run(
    uninterrupted, make_run_config, tmp_path, caplog):
  """6 steps, then the same workdir relaunched for 12 (the schedule is
  pinned by decay_steps=12 in both)."""
  caplog.set_level(logging.INFO, logger='lm_jax')
  first, first_seen = train_run(make_run_config(num_train_steps=6), tmp_path)
  assert first is not None and len(first_seen) == 6
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  assert reader.steps() == [6]
  reader.close()

  results, seen = train_run(make_run_config(), tmp_path)
  assert 'resumed from the checkpoint at step 6' in caplog.text
  # The data iterator resumed where it stopped: the same 12 batches.
  assert len(seen) == 6
  for i, (got, expected) in enumerate(zip(first_seen + seen,
                                          uninterrupted['seen'])):
    np.testing.assert_array_equal(got, expected, err_msg=f'batch {i + 1}')
  assert results.keys() == uninterrupted['results'].keys()
  assert_results_equal(results, uninterrupted['results'])
  step, params = final_params(tmp_path, make_run_config())
  assert step == 12
  assert_params_equal(params, uninterrupted['params'])
  assert_records_close(read_records(tmp_path, 'train_'),
                        read_records(uninterrupted['workdir'], 'train_'))


def test_resume_after_crash_equals_uninterrupted_run(uninterrupted,
                                                     make_run_config,
                                                     tmp_path, caplog):
  """Killed while fetching the batch of step 10, after step 9's metrics
  were written but long after the step-6 checkpoint: the relaunch resumes
  at step 6, trains 7-12 again and rewrites metrics.jsonl from step 7."""
  caplog.set_level(logging.INFO, logger='lm_jax')
  config = make_run_config()
  crashed, crashed_seen = train_run(config, tmp_path, crash_at=10)
  assert crashed is None and len(crashed_seen) == 9
  assert [r['step'] for r in read_records(tmp_path, 'train_')] == [3, 6, 9]
  wait_for_checkpoint(str(tmp_path), 6)
  # A save a harder kill left unfinished, at a step this run never saves
  # again: the relaunch removes it.
  unfinished = tmp_path / 'checkpoints' / '8.orbax-checkpoint-tmp'
  unfinished.mkdir()

  results, seen = train_run(config, tmp_path)
  assert 'resumed from the checkpoint at step 6' in caplog.text
  assert not unfinished.exists()
  for i, (got, expected) in enumerate(zip(seen, uninterrupted['seen'][6:])):
    np.testing.assert_array_equal(got, expected, err_msg=f'batch {i + 7}')
  assert len(seen) == 6
  # Every record, train and eval, reads as if there had been no crash.
  assert_ends_as_uninterrupted(uninterrupted, tmp_path, config, results)


def test_a_run_resumed_on_fewer_devices_equals_the_uninterrupted_run(
    uninterrupted, make_run_config, tmp_path, caplog):
  """Steps 1-6 on all 4 devices, 7-12 on 2 (a host with fewer chips): the
  checkpoint is restored onto the smaller mesh and training goes on as if
  nothing had changed, dropout included, up to the all-reduces' order.
  (Step 6's records differ: that run's last evaluation was whole.)"""
  assert jax.device_count() == 4
  first, _ = train_run(make_run_config(num_train_steps=6), tmp_path)
  assert first is not None
  config = make_run_config(num_devices=2)
  caplog.set_level(logging.INFO, logger='lm_jax')
  caplog.clear()
  results, _ = train_run(config, tmp_path)
  # Equal results alone would also come from a relaunch that kept all 4
  # devices, or from one that trained again from scratch.
  assert ' parameters on 2 device(s)' in caplog.text, caplog.text
  assert 'resumed from the checkpoint at step 6' in caplog.text
  assert_results_equal(results, uninterrupted['results'], rtol=1e-5)
  assert_params_equal(final_params(tmp_path, config)[1],
                       uninterrupted['params'], rtol=1e-7, atol=1e-6)


def test_resume_between_two_log_steps_logs_the_uninterrupted_window(
    make_run_config, tmp_path):
  """Logs every 4 steps, checkpoints every 6, killed fetching step 8's
  batch: the relaunch from step 6 logs step 8's train loss over steps 5-8,
  as the uninterrupted run does, not over 7-8 alone."""
  config = make_run_config(log_every=4)
  reference = tmp_path / 'uninterrupted'
  train_run(config, reference)
  resumed = tmp_path / 'resumed'
  crashed, _ = train_run(config, resumed, crash_at=8)
  assert crashed is None
  wait_for_checkpoint(str(resumed), 6)
  train_run(config, resumed)
  expected = read_records(reference, 'train_')
  assert [r['step'] for r in expected] == [4, 8, 12]
  assert_records_close(read_records(resumed, 'train_'), expected)


@pytest.mark.parametrize('steps_per_call', [2, 3])
def test_several_steps_per_call_equal_one_per_call(uninterrupted,
                                                   make_run_config,
                                                   tmp_path, steps_per_call):
  """Steps scanned inside one jit call (2: mixed with single steps up to
  each log step; 3: every call) train on the same batches to the same
  parameters, records and checkpoints as one step per call."""
  config = make_run_config(steps_per_call=steps_per_call)
  results, seen = train_run(config, tmp_path)
  for i, (got, expected) in enumerate(zip(seen, uninterrupted['seen'])):
    np.testing.assert_array_equal(got, expected, err_msg=f'batch {i + 1}')
  assert len(seen) == 12
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  assert reader.steps() == [6, 12]
  reader.close()
  assert_ends_as_uninterrupted(uninterrupted, tmp_path, config, results,
                                rtol=1e-5)


def test_resume_after_crash_with_several_steps_per_call(uninterrupted,
                                                        make_run_config,
                                                        tmp_path):
  """Killed while fetching the batches of steps 10-12 (one call): the
  relaunch resumes at the step-6 checkpoint and ends as the others do."""
  config = make_run_config(steps_per_call=3)
  crashed, crashed_seen = train_run(config, tmp_path, crash_at=10)
  assert crashed is None and len(crashed_seen) == 9
  wait_for_checkpoint(str(tmp_path), 6)
  results, seen = train_run(config, tmp_path)
  assert len(seen) == 6
  assert_ends_as_uninterrupted(uninterrupted, tmp_path, config, results,
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
  before = read_records(workdir, '')
  results, seen = train_run(uninterrupted['config'], workdir)
  assert seen == []
  assert_results_equal(results, uninterrupted['results'])
  assert read_records(workdir, '') == before


def test_a_kill_during_the_final_evaluation_loses_no_training(
    uninterrupted, tmp_path):
  """The final checkpoint is written before the final evaluation; the
  relaunch trains nothing and records that evaluation."""
  workdir = str(tmp_path / 'run')
  original = loop._evaluate_state

  def killed_when_final(*args, final, **kwargs):
    if final:
      raise Crash('killed during the final evaluation')
    return original(*args, final=final, **kwargs)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(loop, '_evaluate_state', killed_when_final)
    results, _ = train_run(uninterrupted['config'], workdir)
  assert results is None
  wait_for_checkpoint(workdir, 12)
  results, seen = train_run(uninterrupted['config'], workdir)
  assert seen == []
  assert_ends_as_uninterrupted(uninterrupted, workdir,
                                uninterrupted['config'], results)


def test_a_run_shortened_to_a_step_it_had_not_logged_ends_as_that_run(
    make_run_config, tmp_path, monkeypatch):
  """A 12-step run logging every 4 steps, killed after its step-6
  checkpoint (steps 5-6 not logged, evaluated at 6 on 2 batches),
  relaunched as a 6-step run: its records, and TensorBoard's, end as those
  of a 6-step run, which a sweep then summarises."""
  import tensorboardX
  run, six = tmp_path / 'run', tmp_path / 'six'
  results, _ = train_run(make_run_config(log_every=4), run, crash_at=9)
  assert results is None
  wait_for_checkpoint(run, 6)
  sampled = read_records(run, 'eval_')
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
  assert read_records(run, 'eval_')[0]['eval_loss'] != sampled[0]['eval_loss']
  last_purge = max(i for i, e in enumerate(events) if e[0] == 'purge')
  assert events[last_purge] == ('purge', 6)
  tags = [tag for tag, _ in events[last_purge + 1:]]
  assert len(tags) == len(set(tags)) and {'train_loss', 'eval_loss'} <= set(
      tags)  # once each
  expected = loop.train_and_evaluate(short, str(six))
  assert_results_equal(results, expected)
  for prefix in ('train_', 'eval_'):
    assert_records_close(read_records(run, prefix), read_records(six, prefix))


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
    _, params = final_params(tmp_path, config)
    assert all(np.all(np.asarray(x) == 0.5) for x in jax.tree.leaves(params))
    loop.train_and_evaluate(make_run_config(
        num_train_steps=4, checkpoint_every=3, schedule='constant',
        warmup_steps=0, learning_rate=0.0, weight_decay=0.0,
        param_average_decay=average), str(tmp_path))
    assert calls == [1]  # the relaunch resumed from the checkpoint


def test_training_steps_copy_nothing_between_devices(make_run_config,
                                                     tmp_path):
  """What every step reads is where it is read: the state and the key
  replicated, the batch split. (An uncommitted key was copied to every
  device at every call.)"""
  config = make_run_config(num_train_steps=3, eval_every=0,
                           checkpoint_every=0, num_devices=2)
  with jax.transfer_guard_device_to_device('disallow'):
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
