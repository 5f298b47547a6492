"""What a relaunch of the training loop refuses (fewer steps, another
tokenizer, a workdir in training, checkpoints it cannot read, another
optimizer layout) leaving the workdir as it was, and what it repairs."""

import json
import logging
import os
import shutil

import numpy as np
import pytest

from lm_jax.train import checkpoint, loop
from tests.train.loop_runs import (train_run, final_params, read_records,
                                   assert_params_equal, run_files)


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
  before = run_files(workdir)
  config = uninterrupted['config'].copy_and_resolve_references()
  config.num_train_steps = 18
  with pytest.raises(ValueError, match='tokenizer.json differs'):
    loop.train_and_evaluate(config, workdir)
  assert run_files(workdir) == before


def test_a_second_launch_on_a_workdir_in_training_is_refused(uninterrupted,
                                                             tmp_path):
  """Two processes training one workdir interleaved their checkpoints
  and metrics.jsonl (a relaunched sweep still running, say)."""
  from lm_jax import atomic_files  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  before = run_files(workdir)
  config = uninterrupted['config'].copy_and_resolve_references()
  config.num_train_steps = 18
  with atomic_files.held_exclusively(workdir):  # as the first launch does
    with pytest.raises(BlockingIOError, match='another process is training'):
      loop.train_and_evaluate(config, workdir)
  assert run_files(workdir) == before


def test_the_launchs_workdir_check_runs_again_once_the_workdir_is_held(
    uninterrupted, tmp_path):
  """The command line checks a relaunch's settings before the workdir is
  held; another launch may train in it meanwhile, so the loop checks again
  once it holds it, before it reads or writes anything there."""
  from lm_jax import atomic_files  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  before = run_files(workdir)
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
  assert run_files(workdir) == before


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
  results, seen = train_run(uninterrupted['config'], workdir)
  assert 'resumed from the checkpoint at step 6' in caplog.text
  assert len(seen) == 6
  np.testing.assert_allclose(results['eval_loss'],
                             uninterrupted['results']['eval_loss'], rtol=1e-6)
  step, params = final_params(workdir, uninterrupted['config'])
  assert step == 12, (
      'the retrained step-12 state was not saved: the unreadable step-12 '
      'checkpoint is still the newest one')
  assert_params_equal(params, uninterrupted['params'])


def test_all_checkpoints_unreadable_refuses_to_start_over(uninterrupted,
                                                          tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  for root, _, names in os.walk(os.path.join(workdir, 'checkpoints')):
    for name in names:
      if os.sep + 'state' + os.sep in os.path.join(root, name):
        open(os.path.join(root, name), 'w').close()
  before = read_records(workdir, '')
  with pytest.raises(ValueError, match='readable'):
    loop.train_and_evaluate(uninterrupted['config'], workdir)
  assert read_records(workdir, '') == before


def test_a_changed_optimizer_layout_refuses_to_start_over(uninterrupted,
                                                          tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted['workdir'], workdir)
  config = uninterrupted['config'].copy_and_resolve_references()
  assert config.optimizer_flatten
  config.optimizer_flatten = False
  config.num_train_steps += 3
  before = read_records(workdir, '')
  assets = {name: open(os.path.join(workdir, name), 'rb').read()
            for name in ('config.json', 'tokenizer.json')}
  with pytest.raises(ValueError, match='optimizer_flatten'):
    loop.train_and_evaluate(config, workdir)
  assert read_records(workdir, '') == before
  for name, content in assets.items():  # the run's own settings survive
    assert open(os.path.join(workdir, name), 'rb').read() == content, name


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
  crashed, seen = train_run(make_run_config(), tmp_path, crash_at=8)
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
