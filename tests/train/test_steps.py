"""Tests of lm_jax.train.steps: the train step is the same function of its
inputs jitted or not, on one device or four, in one batch or in
micro-batches; the eval step and `averages` report exact means."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm_jax import losses
from lm_jax.train import loop, optim, parallel
from lm_jax.train.steps import (TrainState, averages, make_eval_step,
                                make_train_step)


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  a, b = parallel.to_host(a), parallel.to_host(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  flat_a = jax.tree_util.tree_leaves_with_path(a)
  flat_b = jax.tree.leaves(b)
  for (path, x), y in zip(flat_a, flat_b):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


def _batches(task, num):
  stream = task.train_stream(parallel.process_rows(task.config.batch_size))
  return [next(stream) for _ in range(num)]


def _run_steps(task, mesh, batches, grad_accum_steps=1, jit=True):
  """Fresh state on `mesh`, then one train step per batch, as the loop
  compiles it (state replicated, batch split on `data`).

  Returns:
    (final state, [metrics of each step]).
  """
  tx = optim.make_optimizer(task.config)
  state = loop.init_state(task.model, tx, task.dummy_batch()['inputs'],
                          task.config.seed, mesh)
  step = make_train_step(task, tx, grad_accum_steps)
  if jit:
    step = jax.jit(step, in_shardings=(parallel.replicated(mesh),
                                       parallel.batch_sharded(mesh),
                                       parallel.replicated(mesh)),
                   out_shardings=(parallel.replicated(mesh),
                                  parallel.replicated(mesh)))
  rng = jax.random.key(task.config.seed + 1)
  all_metrics = []
  for batch in batches:
    state, metrics = step(state, parallel.to_global(batch, mesh), rng)
    all_metrics.append(metrics)
  return state, all_metrics


@pytest.fixture(scope='module')
def two_steps_on_one_device(tiny_task):
  """(batches, final state, metrics) of two jitted steps on one device."""
  batches = _batches(tiny_task, 2)
  state, metrics = _run_steps(tiny_task, parallel.make_data_mesh(1), batches)
  return batches, state, metrics


def test_test_processes_have_four_cpu_devices():
  assert jax.device_count() >= 4
  assert parallel.make_data_mesh(4).size == 4


def test_train_step_updates_params_and_counts_the_step(
    tiny_task, two_steps_on_one_device):
  mesh = parallel.make_data_mesh(1)
  batches, state, metrics = two_steps_on_one_device
  assert isinstance(state, TrainState)
  assert int(state.step) == 2
  assert set(metrics[0]) == {'loss', 'accuracy', 'grad_norm'}
  loss_sum, count = metrics[0]['loss']
  assert float(count) == batches[0]['weights'].sum()
  assert np.isfinite(float(loss_sum))
  assert float(metrics[0]['grad_norm'][1]) == 1.0
  fresh = loop.init_state(tiny_task.model,
                          optim.make_optimizer(tiny_task.config),
                          tiny_task.dummy_batch()['inputs'],
                          tiny_task.config.seed, mesh)
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                       state.params, fresh.params)
  assert all(v > 0 for v in jax.tree.leaves(moved))


def test_train_step_jit_equals_eager(tiny_task):
  mesh = parallel.make_data_mesh(1)
  batches = _batches(tiny_task, 1)
  jitted = _run_steps(tiny_task, mesh, batches, jit=True)
  eager = _run_steps(tiny_task, mesh, batches, jit=False)
  _assert_trees_close(jitted, eager)


def test_train_step_on_one_device_equals_four_devices(
    tiny_task, two_steps_on_one_device):
  batches, one_state, one_metrics = two_steps_on_one_device
  four_state, four_metrics = _run_steps(tiny_task,
                                        parallel.make_data_mesh(4), batches)
  some_param = jax.tree.leaves(four_state.params)[0]
  assert len(some_param.sharding.device_set) == 4
  _assert_trees_close(one_state, four_state)
  _assert_trees_close(one_metrics, four_metrics)


def test_train_step_with_dropout_on_one_device_equals_four_devices(
    make_tiny_task):
  """Dropout masks come from the step's key, not from the device layout."""
  task = make_tiny_task(dropout_rate=0.1)
  batches = _batches(task, 1)
  one_state, one_metrics = _run_steps(task, parallel.make_data_mesh(1),
                                      batches)
  four_state, four_metrics = _run_steps(task, parallel.make_data_mesh(4),
                                        batches)
  some_param = jax.tree.leaves(four_state.params)[0]
  assert len(some_param.sharding.device_set) == 4
  _assert_trees_close(one_state, four_state)
  _assert_trees_close(one_metrics, four_metrics)


def test_gradient_accumulation_equals_one_big_batch(tiny_task):
  """Two micro-batches with different numbers of real targets update the
  parameters exactly as the whole batch would (gradient of the summed loss
  over the global token count)."""
  (batch,) = _batches(tiny_task, 1)
  batch = dict(batch, weights=batch['weights'].copy())
  batch['weights'][0, 5:] = 0.0  # micro-batch 1 has fewer real targets
  batch['weights'][3, :2] = 0.0
  mesh = parallel.make_data_mesh(1)
  whole, whole_metrics = _run_steps(tiny_task, mesh, [batch])
  micro, micro_metrics = _run_steps(tiny_task, mesh, [batch],
                                    grad_accum_steps=2)
  _assert_trees_close(whole, micro)
  _assert_trees_close(whole_metrics, micro_metrics)


class _RowStateTask:
  """A task whose loss depends on a per-row carry and whose new carry is
  each row's own: accumulation must hand every row its own state back."""

  @staticmethod
  def loss_and_carry(params, batch, rng, train, carry):
    del rng, train
    x = batch['inputs'].astype(jnp.float32)
    loss = jnp.sum(params['w'] * x * (1.0 + carry[:, None]))
    count = jnp.float32(x.size)
    return {'loss': (loss, count)}, carry + jnp.sum(x, axis=1)


def test_gradient_accumulation_hands_each_row_its_own_carry():
  params = {'w': jnp.arange(3, dtype=jnp.float32)}
  tx = optax.sgd(0.1)
  state = TrainState(jnp.array(0, jnp.int32), params, tx.init(params),
                     jnp.arange(8, dtype=jnp.float32))
  batch = {'inputs': np.arange(24, dtype=np.int32).reshape(8, 3) % 5,
           'targets': np.zeros((8, 3), np.int32)}
  rng = jax.random.key(0)
  whole, _ = make_train_step(_RowStateTask(), tx, 1)(state, batch, rng)
  for accum in (2, 4):
    micro, _ = make_train_step(_RowStateTask(), tx, accum)(state, batch, rng)
    _assert_trees_close(whole, micro)


def test_gradient_accumulation_on_two_devices_computes_each_row_once(
    make_tiny_task):
  """Per device, two micro-batches cost what one batch costs: each device
  computes its own rows of each. (Micro-batches of contiguous rows sat on
  one device each and were computed on both, twice the work.)"""
  task = make_tiny_task(batch_size=8, fused_attention=False)
  mesh = parallel.make_data_mesh(2)
  tx = optim.make_optimizer(task.config)
  state = loop.init_state(task.model, tx, task.dummy_batch()['inputs'],
                          task.config.seed, mesh)
  (batch,) = _batches(task, 1)
  flops = []
  for accum in (1, 2):
    step = jax.jit(make_train_step(task, tx, accum),
                   in_shardings=(parallel.replicated(mesh),
                                 parallel.batch_sharded(mesh),
                                 parallel.replicated(mesh)))
    compiled = step.lower(state, parallel.to_global(batch, mesh),
                          jax.random.key(0)).compile()
    cost = compiled.cost_analysis()
    flops.append((cost[0] if isinstance(cost, list) else cost)['flops'])
  assert flops[1] < 1.2 * flops[0], flops


def test_eval_step_sums_the_task_loss_without_dropout(make_tiny_task):
  task = make_tiny_task(dropout_rate=0.5)
  tx = optim.make_optimizer(task.config)
  mesh = parallel.make_data_mesh(1)
  state = loop.init_state(task.model, tx, task.dummy_batch()['inputs'],
                          task.config.seed, mesh)
  (batch,) = _batches(task, 1)
  metrics, carry = jax.jit(make_eval_step(task))(state.params, batch, ())
  assert carry == ()
  logits = task.model.apply({'params': state.params}, batch['inputs'])
  expected = losses.cross_entropy(logits, batch['targets'], batch['weights'])
  np.testing.assert_allclose(metrics['loss'], expected, rtol=1e-5)


def test_data_mesh_refuses_a_device_subset_on_several_hosts(monkeypatch):
  """The first N of several hosts' devices would leave a host without a
  device for its rows: only the whole set is allowed."""
  assert parallel.make_data_mesh(2).size == 2  # one host: any subset
  with pytest.raises(ValueError, match=r'only 4 exist \(on CPU, '
                     'cpu_devices sets how many'):
    parallel.make_data_mesh(len(jax.devices()) + 1)
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  with pytest.raises(ValueError, match='num_devices to 0'):
    parallel.make_data_mesh(2)
  assert parallel.make_data_mesh(0).size == len(jax.devices())


def test_averages_divide_sums_by_counts():
  metrics = {'loss': (np.float32(6.0), np.float32(4.0)),
             'accuracy': (np.float32(1.0), np.float32(4.0)),
             'empty': (np.float32(0.0), np.float32(0.0))}
  assert averages(metrics) == {'loss': 1.5, 'accuracy': 0.25, 'empty': 0.0}


class _NoiseTask:
  """Hands on, as its carry, normal draws from the key it is given."""

  @staticmethod
  def loss_and_carry(params, batch, rng, train, carry):
    del train, carry
    rows = batch['inputs'].shape[0]
    return ({'loss': (jnp.sum(params['w']), jnp.float32(rows))},
            jax.random.normal(rng, (rows,)))


def test_every_step_and_micro_batch_draws_its_own_randomness():
  """Dropout masks must differ between steps (the step number folds into
  the key) and between a step's micro-batches."""
  params = {'w': jnp.zeros(1)}
  tx = optax.sgd(0.1)
  state = TrainState(jnp.array(0, jnp.int32), params, tx.init(params),
                     jnp.zeros(3))
  batch = {'inputs': np.zeros((3, 1), np.int32),
           'targets': np.zeros((3, 1), np.int32)}
  step = make_train_step(_NoiseTask(), tx, grad_accum_steps=3)
  first, _ = step(state, batch, jax.random.key(0))
  second, _ = step(first, batch, jax.random.key(0))
  draws = np.concatenate([first.carry, second.carry])
  assert len(np.unique(draws)) == 6


class _SumTask:
  """Loss: the sum over the targets of w, one 'token' per target."""

  @staticmethod
  def loss_and_carry(params, batch, rng, train, carry):
    del rng, train
    weights = jnp.ones(batch['targets'].shape, jnp.float32)
    return ({'loss': (jnp.sum(params['w'] * weights), jnp.sum(weights))},
            carry)


def test_sequence_normalisation_divides_by_the_sequences():
  """Zaremba et al.'s loss, summed over time and averaged over sequences:
  a [2, 8] batch's gradient is 8 times the per-token mean's."""
  params = {'w': jnp.zeros(())}
  batch = {'inputs': np.zeros((2, 8), np.int32),
           'targets': np.zeros((2, 8), np.int32)}
  tx = optax.sgd(1.0)
  moved = {}
  for by in ('token', 'sequence'):
    state = TrainState(jnp.array(0, jnp.int32), params, tx.init(params), ())
    new, _ = make_train_step(_SumTask(), tx, normalize_by=by)(
        state, batch, jax.random.key(0))
    moved[by] = -float(new.params['w'])
  np.testing.assert_allclose(moved['token'], 1.0, rtol=1e-6)
  np.testing.assert_allclose(moved['sequence'], 8.0, rtol=1e-6)


def test_the_loop_gives_its_train_step_the_trainable_weights(
    make_tiny_config, monkeypatch):
  """The loop's wiring of test_optim.py's logged-grad-norm test: its step
  gets the config's frozen parameters."""
  given = []
  monkeypatch.setattr(loop, 'make_train_step',
                      lambda *args, **kwargs: given.append(args) or (
                          lambda state, batch, rng: (state, {})))
  config = make_tiny_config(frozen_params='rnn')
  loop._compile_steps(  # pylint: disable=protected-access
      types.SimpleNamespace(steps_per_epoch=3), optax.sgd(1.0), config,
      parallel.make_data_mesh(1))
  trainable = given[0][4]
  weights = trainable({'rnn': jnp.ones(1), 'head': jnp.ones(1)}, 0)
  assert (float(weights['rnn']), float(weights['head'])) == (0.0, 1.0)
