"""The worked self-attention example runs, shows every stage, and agrees
with lm_jax's attention."""

import re
import subprocess
import sys

import numpy as np

from experiments import self_attention_example as example
from tests.command_line import REPO_ROOT, command_env


def _run(*args):
  return subprocess.run([sys.executable, '-m',
                         'experiments.self_attention_example', *args],
                        cwd=REPO_ROOT, env=command_env(), capture_output=True,
                        text=True, timeout=300)


def test_prints_each_stage_and_matches_the_library():
  result = _run()
  assert result.returncode == 0, result.stderr
  out = result.stdout
  for stage in ('Queries Q = X W_Q', 'Scores Q K^T', 'sqrt(d_k), d_k = 3',
                'Attention weights', 'Outputs Z'):
    assert stage in out
  assert 'I study at school' in out
  difference = float(re.search(r'max \|difference\| = (\S+)', out).group(1))
  assert difference < 1e-5
  assert 'not scaled' in _run('--noscale').stdout


def test_weights_rows_sum_to_one():
  scores = (example.X @ example.W_Q) @ (example.X @ example.W_K).T
  weights = example.softmax(scores / np.sqrt(3))
  np.testing.assert_allclose(weights.sum(-1), 1.0)
  table = example.table('t', weights, example.WORDS, example.WORDS, 3)
  assert table.splitlines()[2].split()[0] == 'I'
