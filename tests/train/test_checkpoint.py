"""Tests of lm_jax.train.checkpoint: round trips of the train state and the
data-iterator state, restoring across device counts, pruning, and falling
back past a corrupt newest checkpoint."""

import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from lm_jax.train import checkpoint, loop, optim, parallel
from lm_jax.train.steps import TrainState, make_train_step


def _host(tree):
  return parallel.to_host(tree)


def _assert_trees_equal(a, b):
  a, b = _host(a), _host(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                          jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope='module')
def trained_state(tiny_task):
  """A 4-device train state after one step (non-trivial optimizer state)."""
  mesh = parallel.make_data_mesh(4)
  tx = optim.make_optimizer(tiny_task.config)
  state = loop.init_state(tiny_task.model, tx,
                          tiny_task.dummy_batch()['inputs'], 0, mesh)
  batch = next(tiny_task.train_stream(slice(None)))
  step = jax.jit(make_train_step(tiny_task, tx))
  state, _ = step(state, parallel.to_global(batch, mesh), jax.random.key(0))
  return state


def _abstract(state, num_devices):
  mesh = parallel.make_data_mesh(num_devices)
  return checkpoint.abstract_like(state, parallel.replicated(mesh))


def _save(workdir, steps, state, async_save=False, **kwargs):
  ckpt = checkpoint.Checkpointer(str(workdir), async_save=async_save, **kwargs)
  for step in steps:
    ckpt.save(step, jax.tree.map(lambda x, s=step: x + s, state),
              {'next_index': step}, {'num_train_steps': 12})
  ckpt.close()


@pytest.mark.parametrize('async_save', [False, True])
def test_round_trip_restores_state_and_data_state(tmp_path, trained_state,
                                                  async_save):
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=async_save)
  assert ckpt.save(7, trained_state, {'next_index': 7}, {'seed': 0})
  ckpt.wait()
  assert ckpt.steps() == [7]
  assert not ckpt.save(7, trained_state, {'next_index': 99}, {'seed': 0})
  ckpt.close()

  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  step, state, data_state = reader.restore_latest(_abstract(trained_state, 4))
  reader.close()
  assert step == 7
  assert data_state == {'next_index': 7}
  assert isinstance(state, TrainState)
  _assert_trees_equal(state, trained_state)


def test_checkpoint_saved_on_four_devices_restores_on_one(tmp_path,
                                                          trained_state):
  assert len(trained_state.step.sharding.device_set) == 4
  _save(tmp_path, [3], trained_state)
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  step, state, _ = reader.restore_latest(_abstract(trained_state, 1))
  reader.close()
  assert step == 3
  for leaf in jax.tree.leaves(state):
    assert leaf.sharding.device_set == {jax.devices()[0]}
  _assert_trees_equal(state, jax.tree.map(lambda x: x + 3, trained_state))


def test_checkpoint_saved_on_one_device_restores_on_four(tmp_path,
                                                         trained_state):
  on_one = jax.device_put(trained_state, parallel.replicated(
      parallel.make_data_mesh(1)))
  _save(tmp_path, [1], on_one)
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  _, state, _ = reader.restore_latest(_abstract(trained_state, 4))
  reader.close()
  assert len(jax.tree.leaves(state)[0].sharding.device_set) == 4
  _assert_trees_equal(state, jax.tree.map(lambda x: x + 1, trained_state))


def test_restore_latest_without_checkpoints_returns_none(tmp_path,
                                                        trained_state):
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  assert reader.restore_latest(_abstract(trained_state, 1)) is None
  with pytest.raises(FileNotFoundError):
    reader.restore_params(_abstract(trained_state, 1))
  reader.close()


def test_only_the_newest_max_to_keep_checkpoints_survive(tmp_path,
                                                        trained_state):
  _save(tmp_path, [2, 4, 6, 8], trained_state, max_to_keep=2)
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  assert reader.steps() == [6, 8]
  assert reader.restore_latest(_abstract(trained_state, 1))[0] == 8
  reader.close()


def test_the_running_process_removes_saves_a_killed_one_left_unfinished(
    tmp_path, trained_state):
  """Orbax writes a save into '<step>.orbax-checkpoint-tmp' and renames it
  when done; a process killed before that leaves the folder behind."""
  _save(tmp_path, [2], trained_state)
  folder = tmp_path / 'checkpoints'
  shutil.copytree(folder / '2', folder / '5.orbax-checkpoint-tmp')
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  reader.close()  # a reader leaves it: a live run's save may be in progress
  assert sorted(os.listdir(folder)) == ['2', '5.orbax-checkpoint-tmp']
  owner = checkpoint.Checkpointer(str(tmp_path), remove_unfinished=True)
  assert owner.steps() == [2]
  # Removed in the background; the run's next save waits for that.
  owner.save(6, trained_state, {'next_index': 6}, {})
  owner.close()
  assert sorted(os.listdir(folder)) == ['2', '6']


def test_is_save_step_follows_save_every(tmp_path):
  every_three = checkpoint.Checkpointer(str(tmp_path / 'a'), save_every=3)
  never = checkpoint.Checkpointer(str(tmp_path / 'b'), save_every=0)
  assert [s for s in range(1, 10) if every_three.is_save_step(s)] == [3, 6, 9]
  assert not any(never.is_save_step(s) for s in range(1, 10))
  every_three.close()
  never.close()


def _corrupt(step_dir, how):
  files = [os.path.join(root, f) for root, _, names in os.walk(step_dir)
           for f in names]
  state_files = [f for f in files
                 if os.sep + 'state' + os.sep in f and 'commit' not in f]
  assert state_files
  if how == 'truncate_state':
    for f in state_files:
      open(f, 'w').close()
  elif how == 'delete_state_data':
    for f in state_files:
      os.remove(f)
  elif how == 'truncate_everything':
    for f in files:
      open(f, 'w').close()
  elif how == 'truncate_data_state':
    data_files = [f for f in files if os.sep + 'data' + os.sep in f
                  and 'commit' not in f]
    assert data_files
    for f in data_files:
      with open(f, 'w') as out:
        out.write('{"next_ind')


@pytest.mark.parametrize('how', ['truncate_state', 'delete_state_data',
                                 'truncate_everything',
                                 'truncate_data_state'])
def test_corrupt_newest_checkpoint_falls_back_to_previous_with_warning(
    tmp_path, trained_state, caplog, how):
  _save(tmp_path, [6, 12], trained_state)
  _corrupt(os.path.join(tmp_path, 'checkpoints', '12'), how)
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  with caplog.at_level(logging.WARNING, logger='lm_jax'):
    step, state, data_state = reader.restore_latest(
        _abstract(trained_state, 1))
  reader.close()
  assert step == 6
  assert data_state == {'next_index': 6}
  _assert_trees_equal(state, jax.tree.map(lambda x: x + 6, trained_state))
  warnings = [r for r in caplog.records
              if r.name == 'lm_jax' and r.levelno == logging.WARNING]
  assert len(warnings) == 1
  assert 'step 12' in warnings[0].getMessage()


def test_a_read_error_without_a_message_still_falls_back(
    tmp_path, trained_state, monkeypatch):
  # pylint: disable=protected-access
  _save(tmp_path, [6, 12], trained_state)
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  restore = reader._manager.restore

  def failing(step, *args, **kwargs):
    if step == 12:
      raise AssertionError()  # str() is ''
    return restore(step, *args, **kwargs)

  monkeypatch.setattr(reader._manager, 'restore', failing)
  step, _, _ = reader.restore_latest(_abstract(trained_state, 1))
  reader.close()
  assert step == 6


def test_data_item_round_trips_and_reads_the_old_layout():
  window = {'loss': (np.float64(12.5), np.float64(64.0))}
  item = json.loads(json.dumps(checkpoint.data_item({'next_index': 7}, window)))
  assert checkpoint.split_data_item(item) == ({'next_index': 7},
                                              {'loss': (12.5, 64.0)})
  empty = json.loads(json.dumps(checkpoint.data_item({'next_index': 7}, None)))
  assert checkpoint.split_data_item(empty) == ({'next_index': 7}, None)
  # Checkpoints written before the window was kept: the iterator alone.
  assert checkpoint.split_data_item({'next_index': 7}) == ({'next_index': 7},
                                                           None)


def test_a_save_on_cpu_devices_compiles_nothing(tmp_path, caplog):
  """Orbax's default on CPU hosts slices each replicated array among its
  replicas before writing it: a program compiled per shape and device, at
  a run's first save. lm_jax has each array written whole, once."""
  replicated = parallel.replicated(parallel.make_data_mesh(4))
  # Shapes of no other test (a program compiled before would not show),
  # each with an axis the 4 replicas divide (others are written whole).
  state = {'w': jax.device_put(np.ones((12, 20), np.float32), replicated),
           'b': jax.device_put(np.arange(36, dtype=np.float32), replicated)}
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  with jax.log_compiles(), caplog.at_level(logging.WARNING):
    assert ckpt.save(1, state, {}, {})
  compiled = [r.getMessage() for r in caplog.records
              if 'Compiling' in r.getMessage()]
  assert not compiled, compiled
  _, restored, _ = ckpt.restore_latest(_abstract(state, 4))
  ckpt.close()
  _assert_trees_equal(restored, state)
