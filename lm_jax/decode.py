"""Autoregressive decoding with a KV cache: greedy and temperature / top-k /
top-p sampling, jit-compiled.

The model must accept `decode=True` and keep its cache in the 'cache'
collection (see `lm_jax.nn.attention.MultiHeadAttention`). Models with
absolute positions know `max_length` positions only; to generate further,
decoding restarts the cache from the last `max_length // 2` tokens, the
KV-cached counterpart of nanoGPT cropping its context.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def filter_logits(logits: Array, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> Array:
  """Temperature-scaled logits with all but the top-k / top-p tokens removed.

  Args:
    logits: `[batch, vocab]`.
    temperature: > 0; lower is greedier.
    top_k: keep the k most likely tokens (0: all).
    top_p: keep the smallest set of most likely tokens whose probability
      reaches p (1.0: all).

  Returns:
    `[batch, vocab]` logits, removed tokens at -inf.
  """
  logits = logits.astype(jnp.float32) / temperature
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # A token stays if the mass of the tokens strictly above it is < p.
    before = jnp.cumsum(probs, axis=-1) - probs
    cutoff = jnp.min(jnp.where(before < top_p, sorted_logits, jnp.inf),
                     axis=-1, keepdims=True)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
  return logits


def _next_token(logits, rng, temperature, top_k, top_p):
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return jax.random.categorical(
      rng, filter_logits(logits, temperature, top_k, top_p)).astype(jnp.int32)


def empty_cache(model: nn.Module, batch_size: int, max_length: int) -> Any:
  """A zeroed cache for `batch_size` sequences of up to `max_length` tokens."""
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0),
                         jnp.zeros((batch_size, max_length), jnp.int32),
                         decode=True))['cache']
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@functools.partial(jax.jit, static_argnums=0)
def prefill(model: nn.Module, params: Any, cache: Any, tokens: Array):
  """Runs `tokens` `[batch, length]` through the model, filling the cache.

  Returns:
    (logits `[batch, length, vocab]`, updated cache).
  """
  logits, updated = model.apply({'params': params, 'cache': cache}, tokens,
                                decode=True, mutable=['cache'])
  return logits, updated['cache']


@functools.partial(jax.jit, static_argnums=(0, 5, 6, 7, 8))
def _generate(model, params, cache, logits, rng, num_tokens, temperature,
              top_k, top_p):
  """Samples `num_tokens` tokens, feeding all but the last one back in.

  Feeding writes `num_tokens - 1` cache positions, so a cache holding C
  tokens can produce up to `max_length - C + 1` more.
  """
  rngs = jax.random.split(rng, num_tokens)
  first = _next_token(logits, rngs[0], temperature, top_k, top_p)

  def step(carry, rng):
    cache, token = carry
    new_logits, cache = prefill.__wrapped__(model, params, cache,
                                            token[:, None])
    token = _next_token(new_logits[:, -1], rng, temperature, top_k, top_p)
    return (cache, token), token

  _, rest = jax.lax.scan(step, (cache, first), rngs[1:])
  return jnp.concatenate([first[:, None], rest.T], axis=1)


def generate(model: nn.Module, params: Any, prompt: np.ndarray,
             num_tokens: int, rng: Array, max_length: int,
             temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0) -> np.ndarray:
  """Continues each prompt by `num_tokens` tokens.

  Args:
    model: a decoder supporting `decode=True`.
    params: its parameters.
    prompt: int `[batch, prompt_length]`, prompt_length >= 1.
    num_tokens: how many tokens to generate.
    rng: PRNG key.
    max_length: positions the model knows (its training block size).
    temperature: 0 for greedy decoding.
    top_k: see `filter_logits`.
    top_p: see `filter_logits`.

  Returns:
    int32 `[batch, num_tokens]` new tokens.
  """
  prompt = np.asarray(prompt, np.int32)
  if prompt.ndim != 2 or prompt.shape[1] < 1:
    raise ValueError('prompt must be [batch, length] with length >= 1')
  batch = prompt.shape[0]
  context = prompt[:, -max_length:]
  out = []
  remaining = num_tokens
  while remaining > 0:
    cache = empty_cache(model, batch, max_length)
    logits, cache = prefill(model, params, cache, jnp.asarray(context))
    n = min(remaining, max_length - context.shape[1] + 1)
    rng, sub = jax.random.split(rng)
    new = np.asarray(_generate(model, params, cache, logits[:, -1], sub, n,
                               float(temperature), int(top_k), float(top_p)))
    out.append(new)
    remaining -= n
    context = np.concatenate([context, new], axis=1)[:, -(max_length // 2):]
  return np.concatenate(out, axis=1)
