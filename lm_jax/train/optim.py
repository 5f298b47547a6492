"""Optimizers and learning-rate schedules built from the run config."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax


def make_schedule(config: ml_collections.ConfigDict,
                  steps_per_epoch: int = 0) -> optax.Schedule:
  """The learning rate as a function of the step.

  `config.schedule` is one of:
    'constant': `learning_rate` after a linear warm-up.
    'cosine': linear warm-up to `learning_rate`, cosine decay to
      `min_learning_rate` at `decay_steps` (default `num_train_steps`), as
      in nanoGPT.
    'inverse_sqrt': linear warm-up, then lr * sqrt(warmup / step) ("Attention
      is all you need", section 5.3, with the peak given explicitly).
    'linear': linear warm-up, then a straight line down to
      `min_learning_rate` at `decay_steps` (default `num_train_steps`), as
      word2vec and BERT fine-tuning decay.
    'epoch_decay': `learning_rate` for the first `lr_decay_start_epoch`
      epochs, then multiplied by `lr_decay_factor` at the start of every
      further epoch (Zaremba et al. 2014: 1.0, halved after epoch 4).
    'slanted_triangular': ULMFiT's (Howard & Ruder 2018): a short linear
      rise over the first `stlr_cut_frac` of `num_train_steps` from
      lr / `stlr_ratio` to lr, then a long linear fall back to lr / ratio.

  Args:
    config: the run config.
    steps_per_epoch: updates per pass over the training data; needed by
      'epoch_decay' only.
  """
  lr, warmup = config.learning_rate, config.warmup_steps
  # The first update already gets lr / (warmup + 1), as in nanoGPT, rather
  # than a wasted step at 0.
  first = lr / (warmup + 1)
  kind = config.schedule
  if kind == 'constant':
    return optax.join_schedules(
        [optax.linear_schedule(first, lr, max(warmup, 1)),
         optax.constant_schedule(lr)], [warmup])
  if kind == 'cosine':
    # optax counts the warm-up inside decay_steps, as nanoGPT does.
    decay_steps = max(config.get('decay_steps') or config.num_train_steps,
                      warmup + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=first, peak_value=lr, warmup_steps=warmup,
        decay_steps=decay_steps, end_value=config.min_learning_rate)
  if kind == 'inverse_sqrt':
    def schedule(count):
      # Vaswani et al. count steps from 1; optax counts updates from 0.
      step = jnp.asarray(count, jnp.float32) + 1
      return lr * jnp.minimum(step / max(warmup, 1),
                              jnp.sqrt(max(warmup, 1) / step))
    return schedule
  if kind == 'linear':
    decay_steps = max(config.get('decay_steps') or config.num_train_steps,
                      warmup + 1)
    return optax.join_schedules(
        [optax.linear_schedule(first, lr, max(warmup, 1)),
         optax.linear_schedule(lr, config.min_learning_rate,
                               decay_steps - warmup)], [warmup])
  if kind == 'slanted_triangular':
    total, ratio = config.num_train_steps, config.stlr_ratio
    cut = max(int(total * config.stlr_cut_frac), 1)

    def schedule(step):
      step = jnp.asarray(step, jnp.float32)
      p = jnp.where(step < cut, step / cut,
                    1 - (step - cut) / max(total - cut, 1))
      return lr * (1 + jnp.clip(p, 0, 1) * (ratio - 1)) / ratio
    return schedule
  if kind == 'epoch_decay':
    if steps_per_epoch <= 0:
      raise ValueError("schedule 'epoch_decay' needs a task with epochs")
    start, factor = config.lr_decay_start_epoch, config.lr_decay_factor

    def schedule(step):
      epoch = step // steps_per_epoch  # 0-based epoch of this update
      return lr * factor ** jnp.maximum(epoch + 1 - start, 0)
    return schedule
  raise ValueError(f"unknown schedule {kind!r}: use 'constant', 'cosine', "
                   "'inverse_sqrt', 'linear', 'epoch_decay' or "
                   "'slanted_triangular'")


def _decay_mask(params):
  """Weight decay on kernels and embedding tables, not on biases or norms.

  Decided by name, not rank: a fused q/k/v bias is 3-D but still a bias.
  """
  def decays(path, _):
    return getattr(path[-1], 'key', None) in ('kernel', 'embedding')
  return jax.tree_util.tree_map_with_path(decays, params)


_LAYER = re.compile(r'(?:layer|block)_?(\d+)')
_MAX_DEPTH = 32  # layer groups below the top one


def layer_groups(params: Any) -> Any:
  """Each parameter's depth group, bottom to top, for per-layer rates.

  Group 0 is the embeddings (a path through a name holding 'embed'), group
  i + 1 the recurrent or Transformer layer i (a name 'layer<i>...',
  'layer_<i>' or 'block_<i>'), and the highest group everything else:
  heads, final norms.

  Returns:
    A pytree like `params` of int groups.
  """
  def raw(path, _):
    names = [str(getattr(k, 'key', k)) for k in path]
    for name in names:
      match = _LAYER.match(name)
      if match:
        return int(match.group(1)) + 1
    return 0 if any('embed' in n for n in names) else -1
  groups = jax.tree_util.tree_map_with_path(raw, params)
  top = max(jax.tree.leaves(groups) + [0]) + 1
  return jax.tree.map(lambda g: top if g < 0 else g, groups)


def _depths(params: Any) -> Any:
  """Each parameter's distance from the top of `layer_groups` (0: the
  head), a pytree like `params` of ints."""
  groups = layer_groups(params)
  top = max(jax.tree.leaves(groups))
  return jax.tree.map(lambda g: top - g, groups)


def _unfrozen(count: jax.Array, depth: int, every: int,
              steps_per_epoch: int) -> jax.Array:
  """Gradual unfreezing: whether depth `depth` trains at step `count`
  (from its `depth * every`-th epoch on)."""
  return count >= depth * every * steps_per_epoch


def _per_group(config: ml_collections.ConfigDict, steps_per_epoch: int,
               moments: optax.GradientTransformation,
               tail: list[optax.GradientTransformation]
               ) -> optax.GradientTransformation:
  """ULMFiT's discriminative fine-tuning and gradual unfreezing: one
  `optax.multi_transform` branch per depth group of `layer_groups`.

  The group d levels below the top (the head: d = 0) runs `moments`, then
  `tail`, then a scale of `layer_lr_decay ** -d` (Howard & Ruder: 2.6).
  With `unfreeze_every_epochs` k > 0 it is frozen for its first d * k
  epochs: its updates are 0 and its optimizer state stands still
  (`optax.conditionally_mask`), so it joins with fresh moments and bias
  correction, as a PyTorch parameter whose `requires_grad` was off does,
  not with moments of gradients it never stepped on.
  """
  decay, every = config.layer_lr_decay, config.unfreeze_every_epochs
  if every and steps_per_epoch <= 0:
    raise ValueError('unfreeze_every_epochs needs a task with epochs')

  def labels(params):  # fails at init, before any step, if too deep
    depths = _depths(params)
    deepest = max(jax.tree.leaves(depths))
    if deepest > _MAX_DEPTH:
      raise ValueError(
          f'per-layer rates and gradual unfreezing take at most '
          f'{_MAX_DEPTH} groups below the top, and this model has '
          f'{deepest}; set layer_lr_decay and unfreeze_every_epochs to 0')
    return jax.tree.map(str, depths)

  def group(depth: int) -> optax.GradientTransformation:
    tx = optax.chain(moments, *tail, optax.scale((decay or 1.0) ** -depth))
    if not every or not depth:
      return tx
    return optax.conditionally_mask(
        tx, lambda count: _unfrozen(count, depth, every, steps_per_epoch))

  # Transforms are fixed before the parameters are seen: one per depth up
  # to a generous bound; depths a model lacks hold only step counters.
  transforms = {str(d): group(d) for d in range(_MAX_DEPTH + 1)}
  return optax.multi_transform(transforms, labels)


def trainable_weights(config: ml_collections.ConfigDict,
                      steps_per_epoch: int):
  """`(updates, count) -> tree of 1.0 / 0.0`: which parameters the update
  at step `count` trains, given `frozen_params` and gradual unfreezing; None
  when every parameter always trains."""
  every = config.get('unfreeze_every_epochs') or 0
  frozen = config.get('frozen_params') or ''
  if not every and not frozen:
    return None

  def weights(updates, count):
    def weight(depth, is_frozen):
      if is_frozen:
        return jnp.float32(0.0)
      if not every:
        return jnp.float32(1.0)
      return _unfrozen(count, depth, every, steps_per_epoch).astype(
          jnp.float32)
    return jax.tree.map(weight, _depths(updates),
                        frozen_mask(frozen)(updates))
  return weights


def trained_norm(grads: Any, trainable, count: jax.Array) -> jax.Array:
  """The global norm of `grads` over the parameters the update at step
  `count` trains (`trainable_weights`; None: all of them): what clipping
  holds to `grad_clip_norm`, and what the step logs as `grad_norm`."""
  if trainable is None:
    return optax.tree.norm(grads)
  return optax.tree.norm(jax.tree.map(jnp.multiply, grads,
                                      trainable(grads, count)))


def clip_trainable_by_global_norm(max_norm: float, trainable
                                  ) -> optax.GradientTransformation:
  """`optax.clip_by_global_norm` whose norm counts only the parameters the
  step trains (`trainable_weights`).

  The gradients of frozen parameters are still computed; counted in the
  norm they would shrink the trained parameters' updates (a frozen LSTM's
  gradient of 100 turns a head's SGD step of 1 into 0.01 under a clip of
  1). They are scaled alike and passed on to the transforms that freeze
  them (`_per_group`, `frozen_params`' mask). With `trainable` None this is
  `optax.clip_by_global_norm`.
  """
  if trainable is None:
    return optax.clip_by_global_norm(max_norm)

  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    del params
    norm = trained_norm(updates, trainable, state.count)
    scale = jnp.where(norm < max_norm, 1.0, max_norm / norm)
    updates = jax.tree.map(lambda g: (g * scale).astype(g.dtype), updates)
    return updates, optax.ScaleByScheduleState(
        count=optax.safe_int32_increment(state.count))
  return optax.GradientTransformation(init, update)


def _frozen_prefixes(prefixes: str) -> tuple[str, ...]:
  return tuple(p.strip().strip('/') for p in prefixes.split(',')
               if p.strip().strip('/'))


def _under(name: str, prefix: str) -> bool:
  return name == prefix or name.startswith(prefix + '/')


def freezes(prefixes: str, name: str) -> bool:
  """Whether `frozen_params` `prefixes` freeze the '/'-joined path `name`
  (it or a parent of it is one of them)."""
  return any(_under(name, p) for p in _frozen_prefixes(prefixes))


def frozen_mask(prefixes: str):
  """`params -> bool tree`: True under any of the comma-separated
  `prefixes` of '/'-joined parameter paths ('elmo/bilm' freezes
  params['elmo']['bilm'] and everything under it)."""
  wanted = _frozen_prefixes(prefixes)

  def mask(params):
    names = jax.tree_util.tree_map_with_path(
        lambda path, _: '/'.join(str(getattr(k, 'key', k)) for k in path),
        params)
    # A misspelt prefix would freeze nothing, silently.
    for p in wanted:
      if not any(_under(name, p) for name in jax.tree.leaves(names)):
        top = sorted({name.split('/')[0] for name in jax.tree.leaves(names)})
        raise ValueError(f'frozen_params {p!r} names no parameters; the '
                         f'model\'s start with {", ".join(top)}')
    return jax.tree.map(lambda name: freezes(prefixes, name), names)
  return mask


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int = 0
                   ) -> optax.GradientTransformation:
  """Gradient clipping followed by the configured optimizer.

  `config.optimizer` is 'adamw' (with `beta1`, `beta2`, `weight_decay`,
  decoupled as in Loshchilov & Hutter), 'sgd' (heavy-ball `momentum` when
  it is above 0) or 'adagrad' (as GloVe trains, accumulators starting at
  `adagrad_initial`). `grad_clip_norm` <= 0
  disables clipping. `steps_per_epoch` is passed to `make_schedule`.

  With `optimizer_flatten` (the default), clipping and Adam's moment updates
  run on all parameters raveled into one vector (`optax.flatten`): the same
  arithmetic in a handful of kernels instead of several per parameter array,
  which matters for small models whose step time is dominated by per-kernel
  overhead. For models of tens of millions of parameters the copies into and
  out of that vector cost more than they save (MiniLM, 22.6 M: 160 ms per
  update flattened, 60 ms not, on a 2-core CPU), so their presets turn it
  off. Per-layer rates and gradual unfreezing (`_per_group`) keep each
  group's state apart, unraveled.
  """
  schedule = make_schedule(config, steps_per_epoch)
  trainable = trainable_weights(config, steps_per_epoch)
  grouped = bool(config.get('layer_lr_decay')
                 or config.get('unfreeze_every_epochs'))
  moments, clip = [], []
  if config.grad_clip_norm > 0 and (trainable is not None or grouped):
    # On the tree, before any raveling or grouping: it needs the parameters'
    # names, and one norm over all groups.
    clip = [clip_trainable_by_global_norm(config.grad_clip_norm, trainable)]
  elif config.grad_clip_norm > 0:
    moments.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if config.optimizer == 'adamw':
    moments.append(optax.scale_by_adam(b1=config.beta1, b2=config.beta2))
    tail = [optax.add_decayed_weights(config.weight_decay, mask=_decay_mask)]
  elif config.optimizer == 'sgd':
    if config.get('momentum', 0.0) > 0:
      moments.append(optax.trace(decay=config.momentum))
    tail = []
  elif config.optimizer == 'adagrad':
    moments.append(optax.scale_by_rss(config.adagrad_initial))
    tail = []
  else:
    raise ValueError(f"unknown optimizer {config.optimizer!r}: use 'adamw', "
                     "'sgd' or 'adagrad'")
  head = []
  if grouped:
    # Unraveled: a depth the model lacks has no parameters to ravel.
    head = [_per_group(config, steps_per_epoch,
                       optax.chain(*moments) if moments else optax.identity(),
                       tail)]
    tail = []
  elif moments:
    head = [optax.chain(*moments)]
    if config.get('optimizer_flatten', True):
      head = [optax.flatten(head[0])]
  if config.get('frozen_params'):
    tail.append(optax.masked(optax.set_to_zero(),
                             frozen_mask(config.frozen_params)))
  tx = optax.chain(*clip, *head, *tail,
                   optax.scale_by_learning_rate(schedule))
  if config.get('param_average_decay'):
    tx = with_param_average(tx, config.param_average_decay)
  return tx


class ParamAverageState(NamedTuple):
  """`with_param_average`'s state: the wrapped optimizer's and the average."""
  inner: Any
  average: Any  # the parameters' moving average, the parameters' structure
  count: jax.Array  # int32 scalar: updates averaged so far


def with_param_average(tx: optax.GradientTransformation, decay: float
                       ) -> optax.GradientTransformation:
  """`tx`, also keeping an exponential moving average of the parameters.

  Polyak-style averaging: evaluating the average of the last few thousand
  iterates, rather than the last one, smooths out the noise of the final
  updates. After update n the average is
  `d * average + (1 - d) * params` with `d = min(decay, (1 + n) / (10 + n))`,
  as TensorFlow's `ExponentialMovingAverage` with `num_updates`, so the
  average forgets the initial parameters within the first few dozen steps.

  Args:
    tx: the optimizer; its updates are returned unchanged.
    decay: the average's decay per update, in (0, 1).

  Returns:
    A transformation whose state is a `ParamAverageState`; read the average
    with `eval_params`.
  """
  if not 0.0 < decay < 1.0:
    raise ValueError(f'param_average_decay must be in (0, 1), not {decay}')

  def init(params):
    # Copies: the train state is donated to each step, and one buffer
    # cannot be donated twice.
    return ParamAverageState(tx.init(params), jax.tree.map(jnp.copy, params),
                             jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError('with_param_average needs the params in update()')
    updates, inner = tx.update(updates, state.inner, params)
    count = state.count + 1
    d = jnp.minimum(decay, (1.0 + count) / (10.0 + count))
    average = jax.tree.map(lambda a, p, u: d * a + (1.0 - d) * (p + u),
                           state.average, params, updates)
    return updates, ParamAverageState(inner, average, count)

  return optax.GradientTransformation(init, update)


def eval_params(params: Any, opt_state: Any) -> Any:
  """The parameters to evaluate and save for inference: the optimizer's
  average when it keeps one (`param_average_decay`), else `params`.

  `opt_state` may also be a restored checkpoint's, where Orbax gives the
  `ParamAverageState` back as a dict of its fields.
  """
  if isinstance(opt_state, ParamAverageState):
    return opt_state.average
  if (isinstance(opt_state, dict)
      and set(opt_state) == set(ParamAverageState._fields)):
    return opt_state['average']
  return params
