"""The train state and the pure step functions the loop jit-compiles.

`train_step(state, batch, rng) -> (state, metrics)` and
`eval_step(params, batch) -> metrics` close over the task and optimizer
only; they hold no Python state, so they compile once and run the same on
one device or many.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from lm_jax.tasks.base import Metrics, Task

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint needs to resume training.

  Attributes:
    step: int32 scalar, updates applied so far.
    params: the model's parameters (float32 master weights).
    opt_state: the optimizer's state.
  """

  step: Array
  params: Any
  opt_state: Any


def _add(a: Metrics, b: Metrics) -> Metrics:
  return jax.tree.map(jnp.add, a, b)


def make_train_step(task: Task, tx: optax.GradientTransformation,
                    grad_accum_steps: int = 1
                    ) -> Callable[[TrainState, dict, Array],
                                  tuple[TrainState, Metrics]]:
  """Builds the pure update function.

  Gradients are of the summed loss, divided by the number of target
  tokens of the whole global batch, so the update is exactly that of the
  mean loss whatever the device count or the number of micro-batches.

  Args:
    task: provides `loss(params, batch, rng, train)`.
    tx: the optimizer.
    grad_accum_steps: micro-batches per update; the batch's leading
      dimension must divide by it.
  """

  def grads_of(params, batch, rng):
    def objective(p):
      metrics = task.loss(p, batch, rng, train=True)
      return metrics['loss'][0], metrics
    return jax.grad(objective, has_aux=True)(params)

  def train_step(state: TrainState, batch: dict, rng: Array):
    rng = jax.random.fold_in(rng, state.step)
    if grad_accum_steps == 1:
      grads, metrics = grads_of(state.params, batch, rng)
    else:
      micro = jax.tree.map(
          lambda x: x.reshape(grad_accum_steps, -1, *x.shape[1:]), batch)

      def accumulate(carry, inputs):
        i, micro_batch = inputs
        g, m = grads_of(state.params, micro_batch, jax.random.fold_in(rng, i))
        return (jax.tree.map(jnp.add, carry[0], g), _add(carry[1], m)), None

      first = jax.tree.map(lambda x: x[0], micro)
      init = grads_of(state.params, first, jax.random.fold_in(rng, 0))
      rest = jax.tree.map(lambda x: x[1:], micro)
      (grads, metrics), _ = jax.lax.scan(
          accumulate, init, (jnp.arange(1, grad_accum_steps), rest))
    count = metrics['loss'][1]
    grads = jax.tree.map(lambda g: g / count, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, grad_norm=(optax.tree.norm(grads),
                                       jnp.float32(1.0)))
    return TrainState(state.step + 1, params, opt_state), metrics

  return train_step


def make_eval_step(task: Task) -> Callable[[Any, dict], Metrics]:
  """`eval_step(params, batch) -> summed metrics`, without dropout."""

  def eval_step(params, batch):
    return task.loss(params, batch, jax.random.key(0), train=False)

  return eval_step


def averages(metrics: Metrics) -> dict[str, float]:
  """Host-side sum / count for each metric."""
  return {k: float(s) / max(float(c), 1e-12) for k, (s, c) in metrics.items()}
