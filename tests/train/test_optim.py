"""Tests of lm_jax.train.optim: learning-rate schedules, the weight-decay
mask, clipping, and AdamW against optax's reference implementation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm_jax.train import optim
from lm_jax.train.steps import TrainState, make_train_step


@pytest.fixture
def gpt_params(make_tiny_gpt):
  return make_tiny_gpt(num_layers=1)[1]


def _leaf_names(params):
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key,
                                          params)


def _schedule_values(config, steps):
  schedule = optim.make_schedule(config)
  return np.array([float(schedule(s)) for s in steps])


def test_cosine_schedule_warms_up_to_peak_then_decays_to_the_floor(
    make_tiny_config):
  config = make_tiny_config(schedule='cosine', learning_rate=1e-3,
                            min_learning_rate=1e-4, warmup_steps=10,
                            decay_steps=0, num_train_steps=110)
  lr = _schedule_values(config, range(0, 131))
  np.testing.assert_allclose(lr[0], 1e-3 / 11, rtol=1e-6)  # not 0: nanoGPT's
  assert (np.diff(lr[:11]) > 0).all()          # warm-up rises...
  np.testing.assert_allclose(lr[10], 1e-3, rtol=1e-6)  # ...to the peak
  assert (np.diff(lr[10:111]) < 0).all()       # cosine decay...
  np.testing.assert_allclose(lr[60], 1e-4 + 0.5 * (1e-3 - 1e-4), rtol=1e-5)
  np.testing.assert_allclose(lr[110], 1e-4, rtol=1e-5)  # ...to the floor
  np.testing.assert_allclose(lr[110:], 1e-4, rtol=1e-5)  # and stays there


def test_cosine_schedule_decay_steps_overrides_num_train_steps(
    make_tiny_config):
  config = make_tiny_config(schedule='cosine', learning_rate=1e-3,
                            min_learning_rate=1e-4, warmup_steps=2,
                            decay_steps=12, num_train_steps=6)
  lr = _schedule_values(config, [2, 6, 12])
  np.testing.assert_allclose(lr[0], 1e-3, rtol=1e-6)
  np.testing.assert_allclose(lr[2], 1e-4, rtol=1e-5)
  assert 1e-4 < lr[1] < 1e-3


def test_inverse_sqrt_schedule_peaks_at_the_end_of_warmup(make_tiny_config):
  config = make_tiny_config(schedule='inverse_sqrt', learning_rate=2e-3,
                            warmup_steps=100)
  # optax's count of updates from 0; the paper's step is count + 1.
  lr = _schedule_values(config, range(0, 1000))
  np.testing.assert_allclose(lr[0], 2e-3 / 100, rtol=1e-6)  # step 1
  assert lr.argmax() == 100 - 1
  np.testing.assert_allclose(lr.max(), 2e-3, rtol=1e-6)
  np.testing.assert_allclose(lr[50 - 1], 1e-3, rtol=1e-6)   # linear warm-up
  np.testing.assert_allclose(lr[400 - 1], 1e-3, rtol=1e-6)  # 1/sqrt(step)
  np.testing.assert_allclose(lr[900 - 1], 2e-3 / 3, rtol=1e-6)
  assert (np.diff(lr[:100]) > 0).all()


def test_constant_schedule_holds_the_rate_after_warmup(make_tiny_config):
  config = make_tiny_config(schedule='constant', learning_rate=3e-4,
                            warmup_steps=5)
  lr = _schedule_values(config, range(0, 20))
  assert (np.diff(lr[:6]) > 0).all()
  np.testing.assert_allclose(lr[5:], 3e-4, rtol=1e-6)


def test_linear_schedule_falls_in_a_straight_line_to_the_floor(
    make_tiny_config):
  config = make_tiny_config(schedule='linear', learning_rate=1.0,
                            min_learning_rate=0.0, warmup_steps=0,
                            decay_steps=0, num_train_steps=100)
  lr = _schedule_values(config, [0, 25, 50, 100, 120])
  np.testing.assert_allclose(lr, [1.0, 0.75, 0.5, 0.0, 0.0], atol=1e-6)


def test_epoch_decay_halves_the_rate_each_epoch_after_the_fourth(
    make_tiny_config):
  # Zaremba et al. 2014: lr 1 for epochs 1-4, then halved every epoch.
  config = make_tiny_config(schedule='epoch_decay', learning_rate=1.0,
                            lr_decay_start_epoch=4, lr_decay_factor=0.5)
  schedule = optim.make_schedule(config, steps_per_epoch=10)
  epochs = [float(schedule(s)) for s in range(0, 70, 10)]
  assert epochs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]
  assert float(schedule(39)) == 1.0 and float(schedule(40)) == 0.5
  with pytest.raises(ValueError, match='epochs'):
    optim.make_schedule(config)


def test_adagrad_matches_optax_adagrad(make_tiny_config):
  config = make_tiny_config(optimizer='adagrad', schedule='constant',
                            warmup_steps=0, learning_rate=0.05,
                            grad_clip_norm=0.0, adagrad_initial=0.1)
  params = {'w': jnp.array([1.0, -2.0, 3.0])}
  ours, ref = optim.make_optimizer(config), optax.adagrad(
      0.05, initial_accumulator_value=0.1, eps=0.0)
  s_ours, s_ref = ours.init(params), ref.init(params)
  for g in ([0.5, -1.0, 2.0], [1.0, 0.0, -0.5]):
    grads = {'w': jnp.array(g)}
    u_ours, s_ours = ours.update(grads, s_ours, params)
    u_ref, s_ref = ref.update(grads, s_ref, params)
    np.testing.assert_allclose(u_ours['w'], u_ref['w'], rtol=1e-5)


def test_unknown_schedule_and_optimizer_raise_value_error(make_tiny_config):
  with pytest.raises(ValueError, match='triangle'):
    optim.make_schedule(make_tiny_config(schedule='triangle'))
  with pytest.raises(ValueError, match='lion'):
    optim.make_optimizer(make_tiny_config(optimizer='lion'))


def test_weight_decay_mask_selects_kernels_and_embeddings_only(gpt_params):
  mask = optim._decay_mask(gpt_params)
  names = _leaf_names(gpt_params)
  flat_mask = jax.tree.leaves(mask)
  flat_names = jax.tree.leaves(names)
  assert set(flat_names) == {'kernel', 'embedding', 'bias', 'scale'}
  for name, decays in zip(flat_names, flat_mask):
    assert decays == (name in ('kernel', 'embedding')), name


def test_adamw_decays_only_kernels_and_embeddings(make_tiny_config,
                                                  gpt_params):
  """With zero gradients AdamW's only update is the decoupled decay
  p <- p - lr * wd * p, on kernel and embedding leaves alone."""
  lr, wd = 0.1, 0.5
  config = make_tiny_config(optimizer='adamw', schedule='constant',
                            warmup_steps=0, learning_rate=lr, weight_decay=wd)
  tx = optim.make_optimizer(config)
  zeros = jax.tree.map(jnp.zeros_like, gpt_params)
  updates, _ = jax.jit(tx.update)(zeros, tx.init(gpt_params), gpt_params)
  new = optax.apply_updates(gpt_params, updates)
  names = jax.tree.leaves(_leaf_names(gpt_params))
  for name, before, after in zip(names, jax.tree.leaves(gpt_params),
                                 jax.tree.leaves(new)):
    expected = before * (1 - lr * wd) if name in ('kernel', 'embedding') \
        else before
    np.testing.assert_allclose(after, expected, rtol=1e-6, atol=1e-7,
                               err_msg=name)


@pytest.mark.parametrize('flatten', [True, False])
def test_adamw_with_clipping_matches_optax_reference(make_tiny_config,
                                                     gpt_params, flatten):
  config = make_tiny_config(optimizer='adamw', grad_clip_norm=0.5,
                            weight_decay=0.1, beta1=0.9, beta2=0.99,
                            warmup_steps=2, num_train_steps=10,
                            optimizer_flatten=flatten)
  tx = optim.make_optimizer(config)
  decays = lambda p: jax.tree_util.tree_map_with_path(  # noqa: E731
      lambda path, _: path[-1].key in ('kernel', 'embedding'), p)
  reference = optax.chain(
      optax.clip_by_global_norm(0.5),
      optax.adamw(optim.make_schedule(config), b1=0.9, b2=0.99,
                  weight_decay=0.1, mask=decays))
  params = ref_params = gpt_params
  state, ref_state = tx.init(params), reference.init(ref_params)
  step = jax.jit(lambda tx_, g, s, p: tx_.update(g, s, p), static_argnums=0)
  for i in range(3):
    grads = jax.tree.map(
        lambda x, k=jax.random.key(i): jax.random.normal(k, x.shape), params)
    updates, state = step(tx, grads, state, params)
    ref_updates, ref_state = step(reference, grads, ref_state, ref_params)
    params = optax.apply_updates(params, updates)
    ref_params = optax.apply_updates(ref_params, ref_updates)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7),
               params, ref_params)


@pytest.mark.parametrize('clip,expected_norm', [(1.0, 1.0), (0.0, 10.0)])
def test_gradient_clipping_bounds_the_global_norm(make_tiny_config,
                                                  gpt_params, clip,
                                                  expected_norm):
  config = make_tiny_config(optimizer='sgd', schedule='constant',
                            warmup_steps=0, learning_rate=1.0,
                            grad_clip_norm=clip)
  tx = optim.make_optimizer(config)
  leaves = jax.tree.leaves(gpt_params)
  size = sum(x.size for x in leaves)
  grads = jax.tree.map(lambda x: jnp.full_like(x, 10.0 / math.sqrt(size)),
                       gpt_params)
  updates, _ = tx.update(grads, tx.init(gpt_params), gpt_params)
  np.testing.assert_allclose(optax.tree.norm(updates), expected_norm,
                             rtol=1e-5)


def test_sgd_with_momentum_equals_optax_sgd(make_tiny_config, gpt_params):
  config = make_tiny_config(optimizer='sgd', schedule='constant',
                            warmup_steps=0, learning_rate=0.1, momentum=0.9,
                            grad_clip_norm=0.0)
  tx, ref = optim.make_optimizer(config), optax.sgd(0.1, momentum=0.9)
  state, ref_state = tx.init(gpt_params), ref.init(gpt_params)
  params = ref_params = gpt_params
  for i in range(3):  # the momentum only shows from the second step on
    grads = jax.tree.map(lambda x: jnp.full_like(x, 1.0 + i), gpt_params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    ref_updates, ref_state = ref.update(grads, ref_state, ref_params)
    ref_params = optax.apply_updates(ref_params, ref_updates)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7),
               params, ref_params)


def test_slanted_triangular_rises_fast_then_falls_slowly(make_tiny_config):
  config = make_tiny_config(schedule='slanted_triangular', learning_rate=0.01,
                            num_train_steps=100, stlr_cut_frac=0.1,
                            stlr_ratio=32.0)
  lr = _schedule_values(config, [0, 5, 10, 55, 100])
  np.testing.assert_allclose(
      lr, [0.01 / 32, 0.01 * (1 + 0.5 * 31) / 32, 0.01,
           0.01 * (1 + 0.5 * 31) / 32, 0.01 / 32], rtol=1e-5)


def test_layer_groups_run_from_embeddings_to_head():
  params = {'token_embedding': {'embedding': 0},
            'rnn': {'layer0_fwd': {'kernel': 0}, 'layer1_bwd': {'kernel': 0}},
            'block_2': {'kernel': 0}, 'output': {'kernel': 0, 'bias': 0}}
  groups = optim.layer_groups(params)
  assert groups == {'token_embedding': {'embedding': 0},
                    'rnn': {'layer0_fwd': {'kernel': 1},
                            'layer1_bwd': {'kernel': 2}},
                    'block_2': {'kernel': 3},  # GPT's and Transformers'
                    'output': {'kernel': 4, 'bias': 4}}


def test_discriminative_rates_and_gradual_unfreezing(make_tiny_config):
  """ULMFiT: the head first, one more layer group per epoch, each group at
  the rate of the one above / 2.6."""
  config = make_tiny_config(optimizer='sgd', schedule='constant',
                            warmup_steps=0, learning_rate=1.0,
                            grad_clip_norm=0.0, layer_lr_decay=2.6,
                            unfreeze_every_epochs=1)
  params = {'embed': {'embedding': jnp.zeros(2)},
            'rnn': {'layer0_fwd': {'kernel': jnp.zeros(2)}},
            'head': {'kernel': jnp.zeros(2)}}
  tx = optim.make_optimizer(config, steps_per_epoch=3)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  steps = []
  for _ in range(7):
    updates, state = tx.update(grads, state, params)
    steps.append({k: float(-jax.tree.leaves(v)[0][0])
                  for k, v in updates.items()})
  assert [s['head'] for s in steps] == [1.0] * 7
  np.testing.assert_allclose([s['rnn'] for s in steps],
                             [0.0] * 3 + [1 / 2.6] * 4, rtol=1e-6)
  np.testing.assert_allclose([s['embed'] for s in steps],
                             [0.0] * 6 + [1 / 2.6 ** 2], rtol=1e-6)
  with pytest.raises(ValueError, match='epochs'):
    optim.make_optimizer(config)


@pytest.mark.parametrize('num_layers, fits', [(31, True), (32, False)])
def test_per_layer_rates_name_their_depth_limit(make_tiny_config,
                                                num_layers, fits):
  """32 layers make 33 groups below the head: beyond the transforms built,
  which optax reported as unlabelled parameters."""
  config = make_tiny_config(optimizer='sgd', layer_lr_decay=1.1)
  params = {'token_embedding': {'embedding': jnp.zeros(2)},
            **{f'block_{i}': {'kernel': jnp.zeros(2)}
               for i in range(num_layers)},
            'final_norm': {'scale': jnp.zeros(2)}}
  tx = optim.make_optimizer(config)
  if fits:
    tx.update(params, tx.init(params), params)
  else:
    with pytest.raises(ValueError, match='at most 32 groups'):
      tx.init(params)


def _steps_of(tx, params, grads_at, num_steps):
  """Each update's step (minus the update) per top-level parameter."""
  state, steps, update = tx.init(params), [], jax.jit(tx.update)
  for i in range(num_steps):
    updates, state = update(grads_at(i), state, params)
    steps.append({k: -float(jax.tree.leaves(v)[0][0])
                  for k, v in updates.items()})
  return steps


def test_a_layer_joins_with_fresh_momentum(make_tiny_config):
  """While frozen, a layer's gradients must not build up momentum that
  its first steps then spend (3.44 instead of 1 here)."""
  config = make_tiny_config(optimizer='sgd', momentum=0.9,
                            schedule='constant', warmup_steps=0,
                            learning_rate=1.0, grad_clip_norm=0.0,
                            unfreeze_every_epochs=1)
  params = {'rnn': {'layer0_fwd': {'kernel': jnp.zeros(1)}},
            'head': {'kernel': jnp.zeros(1)}}
  ones = jax.tree.map(jnp.ones_like, params)
  steps = _steps_of(optim.make_optimizer(config, steps_per_epoch=3), params,
                    lambda i: ones, 6)
  np.testing.assert_allclose([s['rnn'] for s in steps],
                             [0, 0, 0, 1, 1.9, 2.71], rtol=1e-6)
  np.testing.assert_allclose([s['head'] for s in steps],
                             [1, 1.9, 2.71, 3.439, 4.0951, 4.68559],
                             rtol=1e-6)


def test_a_layer_joins_with_fresh_adam_moments(make_tiny_config):
  """Adam's moments and bias correction start when the layer does: with a
  constant gradient a fresh Adam steps by the rate, whatever gradients
  the layer had while frozen (100 here, which stored would shrink its
  first steps to 0.8, then 0.3, 0.03)."""
  config = make_tiny_config(optimizer='adamw', beta1=0.8, beta2=0.99,
                            weight_decay=0.0, schedule='constant',
                            warmup_steps=0, learning_rate=1.0,
                            grad_clip_norm=0.0, unfreeze_every_epochs=1)
  params = {'rnn': {'layer0_fwd': {'kernel': jnp.zeros(1)}},
            'head': {'kernel': jnp.zeros(1)}}

  def grads_at(i):
    return {'rnn': {'layer0_fwd': {'kernel': jnp.full(1, 100.0 if i < 4
                                                      else 1.0)}},
            'head': {'kernel': jnp.ones(1)}}
  steps = _steps_of(optim.make_optimizer(config, steps_per_epoch=4), params,
                    grads_at, 12)
  np.testing.assert_allclose([s['rnn'] for s in steps], [0] * 4 + [1] * 8,
                             rtol=1e-5)
  np.testing.assert_allclose([s['head'] for s in steps], [1] * 12, rtol=1e-5)


@pytest.mark.parametrize('prefixes, frozen', [
    ('elmo/bilm', True), ('embed, elmo/bilm', True), ('elmo/bilm/', True),
    ('elmo', True), ('elmo/bil', False), ('elmo/bilm/x', False), ('', False)])
def test_freezes_reads_prefixes_as_the_mask_does(prefixes, frozen):
  """ELMo's check that its bi-LM is frozen compared the prefixes as typed,
  and refused a space after the comma or a parent prefix."""
  assert optim.freezes(prefixes, 'elmo/bilm') is frozen


def test_frozen_params_never_move_not_even_by_weight_decay(make_tiny_config):
  config = make_tiny_config(frozen_params='elmo/bilm, head/bias',
                            weight_decay=0.5)
  params = {'elmo': {'bilm': {'kernel': jnp.ones(2)},
                     'mix': {'weights': jnp.ones(2)}},
            'head': {'kernel': jnp.ones(2), 'bias': jnp.ones(2)}}
  tx = optim.make_optimizer(config)
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params),
                         params)
  assert float(jnp.abs(updates['elmo']['bilm']['kernel']).max()) == 0.0
  assert float(jnp.abs(updates['head']['bias']).max()) == 0.0
  assert float(jnp.abs(updates['elmo']['mix']['weights']).min()) > 0.0
  assert float(jnp.abs(updates['head']['kernel']).min()) > 0.0
  # A misspelt prefix would freeze nothing.
  typo = optim.make_optimizer(make_tiny_config(frozen_params='head/bais'))
  with pytest.raises(ValueError, match="'head/bais' names no parameters"):
    typo.init(params)


def _frozen_layer(make_tiny_config, frozen):
  """(config, params): SGD at rate 1 and clip 1 on a head and an 'rnn'
  layer that is frozen, or unfrozen after an epoch (3 steps)."""
  overrides = ({'unfreeze_every_epochs': 1} if frozen == 'unfreezing'
               else {'frozen_params': 'rnn'})
  config = make_tiny_config(optimizer='sgd', schedule='constant',
                            warmup_steps=0, learning_rate=1.0,
                            grad_clip_norm=1.0, **overrides)
  params = {'rnn': {'layer0_fwd': {'kernel': jnp.zeros(1)}},
            'head': {'kernel': jnp.zeros(1)}}
  return config, params


@pytest.mark.parametrize('frozen', ['unfreezing', 'frozen_params'])
def test_clipping_counts_only_the_parameters_the_step_trains(
    make_tiny_config, frozen):
  """A frozen layer's huge gradient must not shrink the head's clipped
  step: SGD at rate 1, clip 1, head gradient 1 -> head step 1. Once the
  layer trains (after an epoch of 3 steps), the norm counts it."""
  config, params = _frozen_layer(make_tiny_config, frozen)
  grads = {'rnn': {'layer0_fwd': {'kernel': jnp.full(1, 100.0)}},
           'head': {'kernel': jnp.ones(1)}}
  tx = optim.make_optimizer(config, steps_per_epoch=3)
  state = tx.init(params)
  heads = []
  for _ in range(4):
    updates, state = tx.update(grads, state, params)
    heads.append(-float(updates['head']['kernel'][0]))
  after = 1 / np.hypot(100.0, 1.0) if frozen == 'unfreezing' else 1.0
  np.testing.assert_allclose(heads, [1.0] * 3 + [after], rtol=1e-6)


class _FrozenLayerTask:
  """Loss per token: 100 w_rnn + w_head, gradients 100 and 1."""

  @staticmethod
  def loss_and_carry(params, batch, rng, train, carry):
    del rng, train
    count = jnp.float32(batch['targets'].size)
    value = (100 * params['rnn']['layer0_fwd']['kernel'][0]
             + params['head']['kernel'][0])
    return {'loss': (value * count, count)}, carry


@pytest.mark.parametrize('frozen', ['frozen_params', 'unfreezing'])
def test_the_logged_grad_norm_counts_what_clipping_counts(make_tiny_config,
                                                          frozen):
  """A frozen layer's gradient is not the norm `grad_clip_norm` is held to:
  1 (the head's) until the layer trains, after an epoch of 3 steps."""
  config, params = _frozen_layer(make_tiny_config, frozen)
  tx = optim.make_optimizer(config, steps_per_epoch=3)
  step = make_train_step(_FrozenLayerTask(), tx, trainable=optim.
                         trainable_weights(config, steps_per_epoch=3))
  state = TrainState(jnp.array(0, jnp.int32), params, tx.init(params), ())
  batch = {'inputs': np.zeros((2, 4), np.int32),
           'targets': np.zeros((2, 4), np.int32)}
  norms = []
  for _ in range(4):
    state, metrics = step(state, batch, jax.random.key(0))
    norms.append(float(metrics['grad_norm'][0]))
  after = np.hypot(100.0, 1.0) if frozen == 'unfreezing' else 1.0
  np.testing.assert_allclose(norms, [1.0] * 3 + [after], rtol=1e-6)


def test_param_average_follows_the_iterates_and_leaves_updates_alone():
  sgd = optax.sgd(0.1)
  averaged = optim.with_param_average(sgd, decay=0.5)
  params = {'w': jnp.array([1.0, -2.0])}
  plain_state, state = sgd.init(params), averaged.init(params)
  want = params['w']
  for n in range(1, 13):
    grads = {'w': params['w'] * n}
    plain, plain_state = sgd.update(grads, plain_state, params)
    updates, state = averaged.update(grads, state, params)
    np.testing.assert_array_equal(updates['w'], plain['w'])
    params = optax.apply_updates(params, updates)
    d = min(0.5, (1 + n) / (10 + n))  # TF's num_updates warm-up
    want = d * want + (1 - d) * params['w']
    np.testing.assert_allclose(optim.eval_params(params, state)['w'], want,
                               rtol=1e-6)
  assert optim.eval_params(params, state) is state.average
  assert optim.eval_params(params, plain_state) is params
  # A restored checkpoint's state: Orbax gives the NamedTuple back as a dict.
  assert optim.eval_params(params, state._asdict()) is state.average
  assert optim.eval_params(params, {'average': 1}) is params


def test_param_average_decay_from_the_config(make_tiny_config):
  config = make_tiny_config(param_average_decay=0.99)
  params = {'w': jnp.ones(3)}
  state = optim.make_optimizer(config).init(params)
  assert isinstance(state, optim.ParamAverageState)
  with pytest.raises(ValueError, match='param_average_decay'):
    optim.make_optimizer(make_tiny_config(param_average_decay=1.0))


def test_per_layer_rates_clip_by_one_norm_over_all_groups(make_tiny_config):
  """Discriminative rates scale each group's update after one clip by the
  norm over all of them (ULMFiT's), not after a clip per group."""
  config = make_tiny_config(optimizer='sgd', schedule='constant',
                            warmup_steps=0, learning_rate=1.0,
                            grad_clip_norm=1.0, layer_lr_decay=2.6)
  params = {'rnn': {'layer0_fwd': {'kernel': jnp.zeros(1)}},
            'head': {'kernel': jnp.zeros(1)}}
  grads = {'rnn': {'layer0_fwd': {'kernel': jnp.full(1, 100.0)}},
           'head': {'kernel': jnp.ones(1)}}
  tx = optim.make_optimizer(config)
  updates, _ = tx.update(grads, tx.init(params), params)
  norm = np.hypot(100.0, 1.0)
  np.testing.assert_allclose(-updates['head']['kernel'], [1 / norm],
                             rtol=1e-6)
  np.testing.assert_allclose(-updates['rnn']['layer0_fwd']['kernel'],
                             [100 / norm / 2.6], rtol=1e-6)
