"""Fixtures of the command-line tests: a command runner and a workdir."""

import json
import subprocess

import pytest

from tests.command_line import REPO_ROOT, command_env


@pytest.fixture
def run_cli(tmp_path):
  """`run_cli(args, **env)`: runs a command from the repository root with
  the repository (and the offline shim) on PYTHONPATH, empty data and
  cache folders unless `env` says otherwise; returns the CompletedProcess."""
  empty = tmp_path / 'empty_data'
  empty.mkdir()

  def run(args, **env_overrides):
    env = command_env(offline=True, **{
        'LM_JAX_DATA': str(empty),
        'LM_JAX_CACHE': str(tmp_path / 'empty_cache'), **env_overrides})
    return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)

  return run


@pytest.fixture(params=['new', 'existing'])
def workdir(request, tmp_path):
  """A workdir that does not exist yet, or one holding an earlier run."""
  path = tmp_path / 'run'
  if request.param == 'existing':
    (path / 'checkpoints' / '6' / 'state').mkdir(parents=True)
    (path / 'checkpoints' / '6' / 'state' / 'manifest.ocdbt').write_bytes(
        b'\x00\x01 earlier run')
    (path / 'config.json').write_text(json.dumps(
        {'task': 'lm', 'model': 'gpt', 'corpus': 'tiny_shakespeare',
         'num_train_steps': 6}))
    (path / 'tokenizer.json').write_text(
        json.dumps({'kind': 'char', 'chars': ['\n', ' ', 'a', 'b']}))
    (path / 'metrics.jsonl').write_text('{"step": 6, "train_loss": 3.2}\n')
  return str(path)
