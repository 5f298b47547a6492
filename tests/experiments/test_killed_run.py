"""A training process killed outright (SIGKILL: no handler runs) in the
middle of an asynchronous checkpoint save resumes from the last whole
checkpoint when relaunched, and ends where an uninterrupted run ends.

`tests/train/test_loop.py` interrupts runs in process, between steps; this
kills the real command line at a moment the test does not choose.
"""

import json
import os
import signal
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PRESET = os.path.join(REPO_ROOT, 'experiments', 'configs',
                      'shakespeare_char_cpu.py')
# Saves every 5 of 200 tiny steps: most of the run is spent saving.
_SETTINGS = ['--config.num_layers=1', '--config.embed_dim=32',
             '--config.num_heads=2', '--config.block_size=16',
             '--config.batch_size=4', '--config.num_train_steps=200',
             '--config.steps_per_call=1', '--config.eval_every=0',
             '--config.eval_steps=2', '--config.log_every=50',
             '--config.checkpoint_every=5', '--config.keep_checkpoints=2',
             '--config.final_eval_full=False']


def _train(workdir, env):
  return subprocess.Popen(
      [sys.executable, '-m', 'experiments.train', f'--config={PRESET}',
       f'--workdir={workdir}', *_SETTINGS],
      cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)


def _final_record(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  return [r for r in records if 'eval_loss' in r][-1]


def _saving_after_a_whole_checkpoint(workdir):
  """Whether a save is in progress (Orbax writes into a temporary folder,
  renamed when done) and an earlier one finished."""
  folder = os.path.join(workdir, 'checkpoints')
  names = os.listdir(folder) if os.path.isdir(folder) else []
  return (any(name.isdigit() for name in names)
          and any('tmp' in name for name in names))


def test_a_killed_run_resumes_to_the_uninterrupted_result(tiny_corpus_dir,
                                                          tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, LM_JAX_DATA=tiny_corpus_dir,
             LM_JAX_CACHE=str(tmp_path / 'cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  env.pop('XLA_FLAGS', None)  # the entry point picks its own devices
  reference = _train(tmp_path / 'uninterrupted', env)
  _, err = reference.communicate(timeout=300)
  assert reference.returncode == 0, err

  workdir = tmp_path / 'killed'
  killed = _train(workdir, env)
  deadline = time.monotonic() + 300
  while not _saving_after_a_whole_checkpoint(workdir) and (
      killed.poll() is None):
    assert time.monotonic() < deadline, 'no checkpoint saved within 300 s'
    time.sleep(0.002)
  killed.send_signal(signal.SIGKILL)
  killed.communicate(timeout=60)
  assert killed.returncode == -signal.SIGKILL, (
      'the run ended before it could be killed; give it more steps')

  resumed = _train(workdir, env)
  out, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err
  assert 'resumed from the checkpoint at step' in err, err
  final = _final_record(workdir)
  assert final['step'] == 200, out
  assert final == _final_record(tmp_path / 'uninterrupted')
