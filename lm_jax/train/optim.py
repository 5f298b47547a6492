"""Optimizers and learning-rate schedules built from the run config."""

from __future__ import annotations

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
    def schedule(step):
      step = jnp.maximum(step, 1).astype(jnp.float32)
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
  if kind == 'epoch_decay':
    if steps_per_epoch <= 0:
      raise ValueError("schedule 'epoch_decay' needs a task with epochs")
    start, factor = config.lr_decay_start_epoch, config.lr_decay_factor

    def schedule(step):
      epoch = step // steps_per_epoch  # 0-based epoch of this update
      return lr * factor ** jnp.maximum(epoch + 1 - start, 0)
    return schedule
  raise ValueError(f"unknown schedule {kind!r}: use 'constant', 'cosine', "
                   "'inverse_sqrt', 'linear' or 'epoch_decay'")


def _decay_mask(params):
  """Weight decay on kernels and embedding tables, not on biases or norms.

  Decided by name, not rank: a fused q/k/v bias is 3-D but still a bias.
  """
  def decays(path, _):
    return getattr(path[-1], 'key', None) in ('kernel', 'embedding')
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int = 0
                   ) -> optax.GradientTransformation:
  """Gradient clipping followed by the configured optimizer.

  `config.optimizer` is 'adamw' (with `beta1`, `beta2`, `weight_decay`,
  decoupled as in Loshchilov & Hutter), 'sgd' or 'adagrad' (as GloVe trains,
  accumulators starting at `adagrad_initial`). `grad_clip_norm` <= 0
  disables clipping. `steps_per_epoch` is passed to `make_schedule`.

  Clipping and Adam's moment updates run on all parameters raveled into one
  vector (`optax.flatten`): the same arithmetic in a handful of kernels
  instead of several per parameter array, which matters for small models
  whose step time is dominated by per-kernel overhead.
  """
  schedule = make_schedule(config, steps_per_epoch)
  moments = []
  if config.grad_clip_norm > 0:
    moments.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if config.optimizer == 'adamw':
    moments.append(optax.scale_by_adam(b1=config.beta1, b2=config.beta2))
    tail = [optax.add_decayed_weights(config.weight_decay, mask=_decay_mask)]
  elif config.optimizer == 'sgd':
    tail = []
  elif config.optimizer == 'adagrad':
    moments.append(optax.scale_by_rss(config.adagrad_initial))
    tail = []
  else:
    raise ValueError(f"unknown optimizer {config.optimizer!r}: use 'adamw', "
                     "'sgd' or 'adagrad'")
  head = [optax.flatten(optax.chain(*moments))] if moments else []
  return optax.chain(*head, *tail, optax.scale_by_learning_rate(schedule))
