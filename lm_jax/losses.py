"""Losses returned as (sum, count) pairs so averages stay exact across
devices, micro-batches, steps and hosts."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


def cross_entropy(logits: Array, targets: Array,
                  weights: Optional[Array] = None,
                  label_smoothing: float = 0.0) -> tuple[Array, Array]:
  """Summed token cross-entropy and the number of tokens it covers.

  Args:
    logits: `[..., vocab]` unnormalised log-probabilities.
    targets: int `[...]`.
    weights: `[...]` 0/1 (or real) weights; padding has weight 0.
    label_smoothing: mass spread uniformly over the vocabulary.

  Returns:
    (sum of weighted losses, sum of weights), both float32 scalars.
  """
  logits = logits.astype(jnp.float32)
  if label_smoothing:
    vocab = logits.shape[-1]
    labels = optax.smooth_labels(jax.nn.one_hot(targets, vocab),
                                 label_smoothing)
    losses = optax.softmax_cross_entropy(logits, labels)
  else:
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  if weights is None:
    weights = jnp.ones_like(losses)
  weights = weights.astype(jnp.float32)
  return jnp.sum(losses * weights), jnp.sum(weights)


def accuracy(logits: Array, targets: Array,
             weights: Optional[Array] = None) -> tuple[Array, Array]:
  """(number of correct argmax predictions, number of weighted positions)."""
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  if weights is None:
    weights = jnp.ones_like(correct)
  weights = weights.astype(jnp.float32)
  return jnp.sum(correct * weights), jnp.sum(weights)
