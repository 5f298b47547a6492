"""A training process killed outright (SIGKILL: no handler runs) in the
middle of an asynchronous checkpoint save resumes from the last whole
checkpoint when relaunched, and ends where an uninterrupted run ends.

`tests/train/test_loop.py` interrupts runs in process, between steps; this
kills the real command line while Orbax is still writing a checkpoint.
"""

import json
import os
import signal
import subprocess
import sys
import time

from tests.command_line import CPU_PRESET, REPO_ROOT, TINY_GPT, command_env

# Saves every 5 of 200 tiny steps: most of the run is spent saving.
_SETTINGS = [*TINY_GPT, '--config.num_train_steps=200',
             '--config.steps_per_call=1', '--config.eval_every=0',
             '--config.eval_steps=2', '--config.log_every=50',
             '--config.checkpoint_every=5', '--config.keep_checkpoints=2',
             '--config.final_eval_full=False']


def _train(workdir, env):
  return subprocess.Popen(
      [sys.executable, '-m', 'experiments.train', f'--config={CPU_PRESET}',
       f'--workdir={workdir}', *_SETTINGS],
      cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)


def _final_record(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  return [r for r in records if 'eval_loss' in r][-1]


def _checkpoint_folders(workdir):
  folder = os.path.join(workdir, 'checkpoints')
  return os.listdir(folder) if os.path.isdir(folder) else []


def _saving_after_a_whole_checkpoint(workdir):
  """Whether a save is in progress (Orbax writes into a temporary folder,
  renamed when done) and an earlier one finished."""
  names = _checkpoint_folders(workdir)
  return (any(name.isdigit() for name in names)
          and any('tmp' in name for name in names))


def _run_to_the_end(workdir, env):
  process = _train(workdir, env)
  try:
    out, err = process.communicate(timeout=300)
  finally:
    process.kill()
  assert process.returncode == 0, err
  return out, err


def _kill_in_the_middle_of_a_save(workdir, env):
  """Whether the kill landed while a save was unfinished: the run may
  finish the save between the test's look and the signal."""
  process = _train(workdir, env)
  try:
    deadline = time.monotonic() + 300
    while not _saving_after_a_whole_checkpoint(workdir) and (
        process.poll() is None):
      assert time.monotonic() < deadline, 'no checkpoint saved within 300 s'
      time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=60)
  finally:
    process.kill()
  assert process.returncode == -signal.SIGKILL, (
      f'the run ended (exit code {process.returncode}) before it could be '
      f'killed:\n{err}')
  return any('tmp' in name for name in _checkpoint_folders(workdir))


def test_a_killed_run_resumes_to_the_uninterrupted_result(tiny_corpus_dir,
                                                          tmp_path):
  env = command_env(LM_JAX_DATA=tiny_corpus_dir,
                    LM_JAX_CACHE=str(tmp_path / 'cache'),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  _run_to_the_end(tmp_path / 'uninterrupted', env)
  for attempt in range(3):
    workdir = tmp_path / f'killed_{attempt}'
    if _kill_in_the_middle_of_a_save(workdir, env):
      break
  else:
    raise AssertionError('three kills in a row missed the saves')
  _, err = _run_to_the_end(workdir, env)
  assert 'resumed from the checkpoint at step' in err, err
  final = _final_record(workdir)
  assert final['step'] == 200, final
  assert final == _final_record(tmp_path / 'uninterrupted')
