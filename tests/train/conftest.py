"""The training loop tests' configs and their shared reference run.

Session-scoped: each test process trains the reference once for the
loop's three test modules, not once per module."""

import pytest

from tests.train.loop_runs import train_run, final_params


@pytest.fixture(scope='session')
def make_run_config(make_tiny_config):
  """`make_tiny_config` with dropout on: a resumed run must then restore
  its random keys too, or it no longer equals the uninterrupted one. (Not
  an override of that name: session fixtures such as `tiny_task` would
  take it, and other modules' tests would see dropout.)"""
  def make(**overrides):
    return make_tiny_config(**{'dropout_rate': 0.1, **overrides})
  return make


@pytest.fixture(scope='session')
def uninterrupted(make_run_config, tmp_path_factory):
  """The reference: 12 uninterrupted steps of the tiny config."""
  config = make_run_config()
  workdir = tmp_path_factory.mktemp('uninterrupted')
  results, seen = train_run(config, workdir)
  return {'config': config, 'workdir': str(workdir), 'results': results,
          'seen': seen, 'params': final_params(workdir, config)[1]}
