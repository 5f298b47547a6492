"""Optimizers and learning-rate schedules built from the run config."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """The learning rate as a function of the step.

  `config.schedule` is one of:
    'constant': `learning_rate` after a linear warm-up.
    'cosine': linear warm-up to `learning_rate`, cosine decay to
      `min_learning_rate` at `decay_steps` (default `num_train_steps`), as
      in nanoGPT.
    'inverse_sqrt': linear warm-up, then lr * sqrt(warmup / step) ("Attention
      is all you need", section 5.3, with the peak given explicitly).
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
  raise ValueError(f"unknown schedule {kind!r}: use 'constant', 'cosine' or "
                   "'inverse_sqrt'")


def _decay_mask(params):
  """Weight decay on kernels and embedding tables, not on biases or norms.

  Decided by name, not rank: a fused q/k/v bias is 3-D but still a bias.
  """
  def decays(path, _):
    return getattr(path[-1], 'key', None) in ('kernel', 'embedding')
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(config: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """Gradient clipping followed by the configured optimizer.

  `config.optimizer` is 'adamw' (with `beta1`, `beta2`, `weight_decay`,
  decoupled as in Loshchilov & Hutter) or 'sgd'. `grad_clip_norm` <= 0
  disables clipping.

  Clipping and Adam's moment updates run on all parameters raveled into one
  vector (`optax.flatten`): the same arithmetic in a handful of kernels
  instead of several per parameter array, which matters for small models
  whose step time is dominated by per-kernel overhead.
  """
  schedule = make_schedule(config)
  moments = []
  if config.grad_clip_norm > 0:
    moments.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if config.optimizer == 'adamw':
    moments.append(optax.scale_by_adam(b1=config.beta1, b2=config.beta2))
    tail = [optax.add_decayed_weights(config.weight_decay, mask=_decay_mask)]
  elif config.optimizer == 'sgd':
    tail = []
  else:
    raise ValueError(f"unknown optimizer {config.optimizer!r}: use 'adamw' "
                     "or 'sgd'")
  head = [optax.flatten(optax.chain(*moments))] if moments else []
  return optax.chain(*head, *tail, optax.scale_by_learning_rate(schedule))
