"""Several hosts, for real: `experiments.train` as two processes on this
machine that join through `jax.distributed.initialize()`, each with one CPU
device that feeds its half of every global batch.

They must train exactly as one process with two devices (the same global
batches, the same all-reduced gradients), write the workdir once, and leave
a checkpoint that a single process resumes.
"""

import itertools
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.command_line import CPU_PRESET, REPO_ROOT, TINY_GPT, command_env

TINY = [*TINY_GPT, '--config.warmup_steps=2',
        '--config.decay_steps=9', '--config.eval_every=3',
        '--config.eval_steps=2', '--config.log_every=3',
        '--config.checkpoint_every=3']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture
def train(tiny_corpus_dir, tmp_path):
  """`train(workdir, steps, *flags)`: starts `experiments.train` on the
  tiny corpus and returns the Popen, its output going to `proc.log`;
  `_wait` checks it succeeded."""
  env = command_env()  # --config.cpu_devices picks the devices
  launches = itertools.count()

  def start(workdir, steps, *flags):
    log = tmp_path / f'train-{next(launches)}.log'
    with open(log, 'w') as out:
      proc = subprocess.Popen(
          [sys.executable, '-m', 'experiments.train', f'--config={CPU_PRESET}',
           f'--workdir={workdir}', *TINY, f'--config.num_train_steps={steps}',
           f'--config.data_dir={tiny_corpus_dir}',
           f'--config.cache_dir={tmp_path / "cache"}', *flags],
          cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.log = log
    return proc

  return start


def _wait(*procs):
  for p in procs:
    assert p.wait(timeout=300) == 0, p.log.read_text()[-3000:]


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _losses(records):
  return {(r['step'], k): v for r in records for k, v in r.items()
          if k in ('train_loss', 'eval_loss')}


def test_two_hosts_train_as_one_host_with_two_devices(train, tmp_path):
  two_hosts, one_host = str(tmp_path / 'two_hosts'), str(tmp_path / 'one')
  port = _free_port()
  hosts = [train(two_hosts, 6, '--config.multihost=True',
                 f'--config.coordinator_address=127.0.0.1:{port}',
                 '--config.num_processes=2', f'--config.process_id={i}',
                 '--config.cpu_devices=1') for i in range(2)]
  _wait(*hosts)
  _wait(train(one_host, 6, '--config.cpu_devices=2'))

  records = _records(two_hosts)
  # Only the first process writes the records: each step once.
  steps = [r['step'] for r in records if 'train_loss' in r]
  assert steps == sorted(set(steps)) and steps[-1] == 6
  mine, reference = _losses(records), _losses(_records(one_host))
  assert mine.keys() == reference.keys() and len(mine) >= 4
  for key, value in reference.items():
    np.testing.assert_allclose(mine[key], value, rtol=1e-5, err_msg=key)

  # The two hosts' checkpoint goes on in one process with one device, as
  # the one-host run does with two.
  relaunch = train(two_hosts, 9, '--config.cpu_devices=1')
  _wait(relaunch)
  # Without the two hosts' checkpoint it would train from scratch on the
  # same batches and still match.
  log = relaunch.log.read_text()
  assert 'resumed from the checkpoint at step 6' in log, log[-3000:]
  _wait(train(one_host, 9, '--config.cpu_devices=2'))
  final = [_losses(_records(w)) for w in (two_hosts, one_host)]
  assert (9, 'eval_loss') in final[1]
  np.testing.assert_allclose(final[0][9, 'eval_loss'],
                             final[1][9, 'eval_loss'], rtol=1e-5)
