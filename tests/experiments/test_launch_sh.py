"""launch.sh itself: its checks before any set-up, its help, the set-up
lock."""

import os
import shutil
import subprocess

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

