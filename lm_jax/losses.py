"""Losses returned as (sum, count) pairs so averages stay exact across
devices, micro-batches, steps and hosts."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from lm_jax.nn import fused_cross_entropy

Array = jax.Array


def _weighted_sum(values: Array, weights: Optional[Array]
                  ) -> tuple[Array, Array]:
  """(sum of `values * weights`, sum of `weights`), weights 1 when None."""
  if weights is None:
    weights = jnp.ones_like(values)
  weights = weights.astype(jnp.float32)
  return jnp.sum(values * weights), jnp.sum(weights)


def softmax_cross_entropy(logits: Array, targets: Array) -> Array:
  """-log softmax(logits)[target] for each position, `[...]`.

  The same values as optax's `softmax_cross_entropy_with_integer_labels`:
  log-sum-exp minus the target's logit, differentiated by JAX. (A
  hand-written gradient, softmax - one-hot in one fused pass, made
  `ptb_lstm_small`'s train step 6% slower than this on a quiet 2-core CPU;
  benchmarks/RESULTS.md. The C++ kernel `token_metrics` can use is faster.)

  Args:
    logits: float32 `[..., vocab]`.
    targets: int `[...]`.
  """
  target = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return jax.nn.logsumexp(logits, axis=-1) - target


def cross_entropy(logits: Array, targets: Array,
                  weights: Optional[Array] = None,
                  label_smoothing: float = 0.0) -> tuple[Array, Array]:
  """Summed token cross-entropy and the number of tokens it covers.

  Args:
    logits: `[..., vocab]` unnormalised log-probabilities.
    targets: int `[...]`.
    weights: `[...]` 0/1 (or real) weights; padding has weight 0.
    label_smoothing: the share of the target distribution spread uniformly
      over the vocabulary (Szegedy et al. 2016; 0.1 in "Attention is all
      you need"): the loss is (1 - e) * NLL + e * the mean over the
      vocabulary of -log p.

  Returns:
    (sum of weighted losses, sum of weights), both float32 scalars.
  """
  logits = logits.astype(jnp.float32)
  if label_smoothing:
    # The same as cross-entropy against optax.smooth_labels' targets,
    # without materialising a one-hot `[..., vocab]` array.
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    losses = ((1.0 - label_smoothing) * nll
              - label_smoothing * jnp.mean(log_probs, axis=-1))
  else:
    losses = softmax_cross_entropy(logits, targets)
  return _weighted_sum(losses, weights)


def accuracy(logits: Array, targets: Array,
             weights: Optional[Array] = None) -> tuple[Array, Array]:
  """(number of correct argmax predictions, number of weighted positions).

  A prediction is correct when the target's logit is the largest; where k
  classes tie for the largest, each counts 1/k, argmax's accuracy with ties
  broken at random. Ties are rare in float32 but common in logits computed
  in bfloat16, and counting each as a hit would flatter such a model (one
  with constant logits would score 100%).

  The common case costs one max-reduction over the rivals' logits, as the
  plain test did (argmax's index-carrying reduction runs several times
  slower on XLA's CPU backend: over a 10k-word vocabulary it alone took a
  tenth of an LSTM LM's training step); the ties are counted, in a second
  pass, only in a batch that has some.
  """
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)
  is_target = (jax.lax.broadcasted_iota(jnp.int32, logits.shape,
                                        logits.ndim - 1)
               == targets[..., None])
  # A NaN logit anywhere makes the best rival NaN: the row counts as wrong.
  best_rival = jnp.max(jnp.where(is_target, -jnp.inf, logits), axis=-1,
                       keepdims=True)
  tie = target_logit == best_rival
  if weights is not None:  # a tie at a padding position changes nothing
    tie &= (weights > 0)[..., None]

  def shared_ties():
    tied = jnp.sum(logits == target_logit, axis=-1, keepdims=True,
                   dtype=jnp.float32)  # the target among them
    return jnp.where(target_logit > best_rival, 1.0, jnp.where(
        target_logit == best_rival, 1.0 / jnp.maximum(tied, 1.0), 0.0))

  correct = jax.lax.cond(
      jnp.any(tie), shared_ties,
      lambda: (target_logit > best_rival).astype(jnp.float32))
  return _weighted_sum(correct[..., 0], weights)


def token_metrics(logits: Array, targets: Array,
                  weights: Optional[Array] = None,
                  fused: bool = False) -> dict[str, tuple[Array, Array]]:
  """`cross_entropy` and `accuracy` as a task's 'loss' and 'accuracy'.

  Args:
    logits: `[..., vocab]` unnormalised log-probabilities.
    targets: int `[...]`.
    weights: `[...]` 0/1 (or real) weights; padding has weight 0.
    fused: on XLA's CPU backend, compute both in one fused custom call
      each way (`lm_jax.nn.fused_cross_entropy`; the same values to float32
      rounding), unless the kernel cannot be built.

  Returns:
    {'loss': (sum, count), 'accuracy': (correct, count)}.
  """
  logits = logits.astype(jnp.float32)
  if not (fused and jax.default_backend() == 'cpu'
          and fused_cross_entropy.available()):
    return {'loss': cross_entropy(logits, targets, weights),
            'accuracy': accuracy(logits, targets, weights)}
  nll, correct = fused_cross_entropy.softmax_cross_entropy(logits, targets)
  return {'loss': _weighted_sum(nll, weights),
          'accuracy': _weighted_sum(correct, weights)}
