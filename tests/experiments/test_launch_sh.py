"""launch.sh itself: its checks before any set-up, its help, the set-up
lock, and quickstart passing a signal on to its training."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.command_line import (REPO_ROOT, assert_one_error_line,
                                assert_unchanged, command_env, snapshot)


def test_launch_sh_refuses_a_flag_for_the_workdir(run_cli, tmp_path):
  """`--workdir --config.x=1` forgot the value: it must not train into a
  folder named after the flag."""
  flag = '--config.num_train_steps=3'
  result = run_cli(['bash', os.path.join(REPO_ROOT, 'launch.sh'), 'train',
                    'shakespeare_char_cpu', '--workdir', flag])
  assert_one_error_line(result)
  assert '--workdir needs a value' in result.stderr
  assert not os.path.exists(os.path.join(REPO_ROOT, flag))


@pytest.mark.parametrize('preset', ['nosuchpreset', 'base'])
def test_launch_sh_rejects_unknown_presets_before_any_setup(
    run_cli, workdir, preset):
  before = snapshot(workdir)
  result = run_cli(['bash', os.path.join(REPO_ROOT, 'launch.sh'), 'train',
                    preset, '--workdir', workdir])
  assert_one_error_line(result)
  assert 'shakespeare_char_cpu' in result.stderr  # lists the real presets
  assert_unchanged(workdir, before)


def test_launch_sh_help_lists_every_command(run_cli):
  """The help is the comment block at the top of launch.sh, all of it."""
  result = run_cli(['bash', os.path.join(REPO_ROOT, 'launch.sh'), 'help'])
  assert result.returncode == 0
  for verb in ('quickstart', 'test', 'train', 'sample', 'sweep', 'translate',
               'import-hf', 'encode', 'neighbors', 'bench', 'setup'):
    assert f'./launch.sh {verb}' in result.stdout, verb


_FAKE_PYTHON = '''#!/usr/bin/env bash
# Stands in for python3 and the venv's python: installs take a second.
case "$*" in
  "-m venv "*) mkdir -p "${@: -1}/bin"; cp "$0" "${@: -1}/bin/python" ;;
  "-m pip install"*) echo start >> "$INSTALL_LOG"; sleep 1
                     echo end >> "$INSTALL_LOG" ;;
esac
'''


@pytest.mark.skipif(shutil.which('flock') is None,
                    reason='no flock (util-linux): no set-up lock')
def test_two_launches_on_a_fresh_checkout_set_it_up_once(tmp_path):
  """The second waits for the first's set-up, then finds it done, instead of
  installing into the same .venv at the same time."""
  fake = tmp_path / 'python3'
  fake.write_text(_FAKE_PYTHON)
  fake.chmod(0o755)
  log = tmp_path / 'installs'
  env = command_env(PYTHON=str(fake), LM_JAX_VENV=str(tmp_path / 'venv'),
                    INSTALL_LOG=str(log))
  launches = [subprocess.Popen(
      ['bash', os.path.join(REPO_ROOT, 'launch.sh'), 'sample'], env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
  for launch in launches:
    _, err = launch.communicate(timeout=60)
    assert launch.returncode == 0, err.decode()
  assert log.read_text().split() == ['start', 'end']


# Stands in for the venv's python in quickstart: training sleeps, exits 0 or
# fails as $TRAINING says; sampling says so.
_FAKE_VENV_PYTHON = '''#!/usr/bin/env bash
case "$*" in
  *experiments.train*)
    echo $$ > "$TRAINING_PID"
    case "$TRAINING" in sleeps) exec sleep 600 ;; fails) exit 3 ;; esac ;;
  *experiments.sample*) echo sampled ;;
esac
'''


# Execs its arguments with the stop signals at their defaults: a test run
# under `nohup`, or in the background (where SIGINT is ignored), would
# hand them on ignored, and bash cannot trap a signal ignored on entry.
_DEFAULT_SIGNALS = ('import os, signal, sys\n'
                    'for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n'
                    '  signal.signal(s, signal.SIG_DFL)\n'
                    'os.execvp(sys.argv[1], sys.argv[1:])')


def _quickstart(tmp_path, training):
  """`launch.sh quickstart` in its own session, on a set-up fake venv."""
  venv = tmp_path / 'venv'
  (venv / 'bin').mkdir(parents=True)
  (venv / 'bin' / 'python').write_text(_FAKE_VENV_PYTHON)
  (venv / 'bin' / 'python').chmod(0o755)
  (venv / '.lm_jax-installed').touch()  # newer than the pins: set up
  pid_file = tmp_path / 'training.pid'
  env = command_env(LM_JAX_VENV=str(venv), TRAINING=training,
                    TRAINING_PID=str(pid_file))
  launch = subprocess.Popen(
      [sys.executable, '-c', _DEFAULT_SIGNALS, 'bash',
       os.path.join(REPO_ROOT, 'launch.sh'), 'quickstart'], env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      start_new_session=True)
  return launch, pid_file


@pytest.mark.parametrize('training, code, out', [('finishes', 0, 'sampled\n'),
                                                 ('fails', 3, '')])
def test_quickstart_samples_once_its_training_has_finished(tmp_path, training,
                                                            code, out):
  launch, _ = _quickstart(tmp_path, training)
  stdout, stderr = launch.communicate(timeout=60)
  assert (launch.returncode, stdout) == (code, out), stderr


@pytest.mark.parametrize('how, sent', [('ctrl_c', signal.SIGINT),
                                       ('kill', signal.SIGTERM),
                                       ('hangup', signal.SIGHUP)])
def test_stopping_quickstart_stops_its_training(tmp_path, how, sent):
  """Ctrl-C reaches the whole foreground group; `kill PID` and a closed
  terminal's SIGHUP, launch.sh alone. Either way the training must stop
  with it (in seconds: the fake training would sleep 10 minutes), and the
  launch ends by the signal it got."""
  launch, pid_file = _quickstart(tmp_path, 'sleeps')
  for _ in range(600):
    if pid_file.exists() and pid_file.read_text().strip():
      break
    time.sleep(0.1)
  training = int(pid_file.read_text())
  try:
    if how == 'ctrl_c':
      os.killpg(launch.pid, sent)
    else:
      os.kill(launch.pid, sent)
    launch.communicate(timeout=20)
    assert launch.returncode == -sent
    with pytest.raises(ProcessLookupError):
      os.kill(training, 0)
  finally:
    for pid in (training, launch.pid):
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
