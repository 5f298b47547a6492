"""The train state and the pure step functions the loop jit-compiles.

`train_step(state, batch, rng) -> (state, metrics)` and
`eval_step(params, batch, carry) -> (metrics, carry)` (the carry: a
recurrent LM's state between batches, else empty) close over the task and
optimizer only; they hold no Python state, so they compile once and run
the same on one device or many.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from lm_jax.tasks.base import Metrics, Task
from lm_jax.train import optim

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint needs to resume training.

  Attributes:
    step: int32 scalar, updates applied so far.
    params: the model's parameters (float32 master weights).
    opt_state: the optimizer's state.
    carry: what the last batch handed to the next (a recurrent LM's hidden
      state for truncated BPTT), leading dimension the global batch; `()`
      for most tasks.
  """

  step: Array
  params: Any
  opt_state: Any
  carry: Any = ()


def _add(a: Metrics, b: Metrics) -> Metrics:
  return jax.tree.map(jnp.add, a, b)


# What `make_train_step` divides the summed loss by (`normalize_by`).
NORMALIZE_BY = ('token', 'sequence')


def make_train_step(task: Task, tx: optax.GradientTransformation,
                    grad_accum_steps: int = 1, normalize_by: str = 'token',
                    trainable: Optional[Callable] = None
                    ) -> Callable[[TrainState, dict, Array],
                                  tuple[TrainState, Metrics]]:
  """Builds the pure update function.

  Gradients are of the summed loss, divided by the number of target
  tokens of the whole global batch, so the update is exactly that of the
  mean loss whatever the device count or the number of micro-batches.

  Args:
    task: provides `loss_and_carry(params, batch, rng, train, carry)`.
    tx: the optimizer.
    grad_accum_steps: micro-batches per update; the batch's leading
      dimension must divide by it.
    normalize_by: 'token' divides the summed loss by the target tokens;
      'sequence' by the sequences (tokens / length, for unpadded
      `[batch, length]` targets), the loss summed over time that Zaremba
      et al.'s learning rate of 1 and clip of 5 assume.
    trainable: `optim.trainable_weights`, where some parameters are frozen:
      the logged `grad_norm` then counts only the trained ones, as clipping
      does (None: all).

  The metrics add `grad_norm`: the global norm of the gradient before
  clipping, the figure `grad_clip_norm` is compared with.
  """
  if normalize_by not in NORMALIZE_BY:
    raise ValueError(f"normalize_by is 'token' or 'sequence', not "
                     f"{normalize_by!r}")

  def grads_of(params, batch, rng, carry):
    def objective(p):
      metrics, new_carry = task.loss_and_carry(p, batch, rng, True, carry)
      return metrics['loss'][0], (metrics, new_carry)
    grads, (metrics, new_carry) = jax.grad(objective, has_aux=True)(params)
    return grads, metrics, jax.lax.stop_gradient(new_carry)

  def train_step(state: TrainState, batch: dict, rng: Array):
    rng = jax.random.fold_in(rng, state.step)
    if grad_accum_steps == 1:
      grads, metrics, carry = grads_of(state.params, batch, rng, state.carry)
    else:
      # Micro-batch i is rows i, i + A, i + 2A, ... of the batch and of
      # the carry (A micro-batches): every device's contiguous block of
      # rows holds its share of each, so no rows move between devices.
      # Contiguous blocks of rows put each micro-batch on one device, and
      # XLA then computed every micro-batch on all of them.
      split = lambda x: x.reshape(-1, grad_accum_steps,
                                  *x.shape[1:]).swapaxes(0, 1)
      micro, micro_carry = jax.tree.map(split, (batch, state.carry))

      def accumulate(total, inputs):
        i, micro_batch, c = inputs
        g, m, c = grads_of(state.params, micro_batch,
                           jax.random.fold_in(rng, i), c)
        return (jax.tree.map(jnp.add, total[0], g), _add(total[1], m)), c

      first = jax.tree.map(lambda x: x[0], (micro, micro_carry))
      g0, m0, c0 = grads_of(state.params, first[0], jax.random.fold_in(rng, 0),
                            first[1])
      rest = jax.tree.map(lambda x: x[1:], (micro, micro_carry))
      (grads, metrics), rest_carry = jax.lax.scan(
          accumulate, (g0, m0), (jnp.arange(1, grad_accum_steps), *rest))
      carry = jax.tree.map(
          lambda a, b: jnp.concatenate([a[None], b]).swapaxes(0, 1).reshape(
              -1, *a.shape[1:]), c0, rest_carry)
    count = metrics['loss'][1]
    if normalize_by == 'sequence':
      # Zaremba et al.'s loss: summed over time, averaged over sequences.
      count = count / batch['targets'].shape[1]
    grads = jax.tree.map(lambda g: g / count, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, grad_norm=(
        optim.trained_norm(grads, trainable, state.step), jnp.float32(1.0)))
    return TrainState(state.step + 1, params, opt_state, carry), metrics

  return train_step


def make_multi_step(train_step: Callable, num_steps: int) -> Callable:
  """`num_steps` train steps in one call, for models whose steps are too
  short for the per-call overhead (dispatch, launch, the devices'
  rendezvous) to vanish: 8-9% of the step of the CPU GPT recipe.

  Returns:
    `multi_step(state, batches, rng) -> (state, metrics)`, where each leaf
    of `batches` stacks the steps' batches on a new leading axis
    `[num_steps, batch, ...]` and each metric leaf stacks the steps' values
    the same way; the same updates as `num_steps` calls of `train_step`.
  """
  def multi_step(state: TrainState, batches: dict, rng: Array):
    return jax.lax.scan(lambda s, batch: train_step(s, batch, rng), state,
                        batches, length=num_steps)

  return multi_step


def make_eval_step(task: Task) -> Callable[[Any, dict, Any],
                                           tuple[Metrics, Any]]:
  """`eval_step(params, batch, carry) -> (summed metrics, carry)`, without
  dropout."""

  def eval_step(params, batch, carry):
    return task.loss_and_carry(params, batch, jax.random.key(0), False, carry)

  return eval_step


def averages(metrics: Metrics) -> dict[str, float]:
  """Host-side sum / count for each metric."""
  return {k: float(s) / max(float(c), 1e-12) for k, (s, c) in metrics.items()}
