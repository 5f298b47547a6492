"""Autoregressive decoding, jit-compiled: greedy and temperature / top-k /
top-p sampling of language models, and greedy and beam search of sequence
to sequence models.

Language models must accept `decode=True` and keep their cache in the
'cache' collection (see `lm_jax.nn.attention.MultiHeadAttention`). Models
with absolute positions know `max_length` positions only; to generate
further, decoding restarts the cache from the last `max_length // 2`
tokens, the KV-cached counterpart of nanoGPT cropping its context.

Sequence to sequence models (`lm_jax.models.transformer_seq2seq`,
`lm_jax.models.seq2seq_rnn`) have `encode(inputs) -> memory` and
`decode(memory, tokens, decode=True)`, which continues from the decoder's
state in the 'cache' collection: a KV cache for the Transformer, the
recurrent state for RNNs. The searches below need nothing else.
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
    top_k: keep the k most likely tokens and any tied with the k-th (0, or
      more than the vocabulary: all).
    top_p: keep the smallest set of most likely tokens whose probability
      reaches p, and any tied with the least likely of them (1.0: all).

  Returns:
    `[batch, vocab]` logits, shifted so that each row's largest is 0 (the same
    distribution), removed tokens at -inf.
  """
  logits = logits.astype(jnp.float32)
  # Shifted first, the largest logit stays 0 however small the temperature;
  # the floor keeps a subnormal temperature, flushed to 0, from giving 0 / 0.
  temperature = jnp.maximum(temperature, jnp.finfo(jnp.float32).tiny)
  logits = (logits - jnp.max(logits, axis=-1, keepdims=True)) / temperature
  if 0 < top_k < logits.shape[-1]:
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
  out = [np.zeros((batch, 0), np.int32)]  # num_tokens may be 0
  remaining = num_tokens
  # Made once (tracing the model for it took 40 ms a window): prefill
  # returns a new cache and leaves this one zeroed.
  empty = empty_cache(model, batch, max_length) if num_tokens else None
  while remaining > 0:
    logits, cache = prefill(model, params, empty, jnp.asarray(context))
    n = min(remaining, max_length - context.shape[1] + 1)
    rng, sub = jax.random.split(rng)
    new = np.asarray(_generate(model, params, cache, logits[:, -1], sub, n,
                               float(temperature), int(top_k), float(top_p)))
    out.append(new)
    remaining -= n
    keep = max(1, max_length // 2)  # -0 would keep everything
    context = np.concatenate([context, new], axis=1)[:, -keep:]
  return np.concatenate(out, axis=1)


# Scores of impossible hypotheses: finite, so that sums and divisions of
# them never make NaNs.
_NEG = -1.0e9


def _seq2seq_start(model: nn.Module, params: Any, inputs: Array,
                   max_length: int, copies: int = 1) -> tuple[Any, Any]:
  """Encodes `inputs` and creates the decoder's state for `max_length`
  steps; with `copies` > 1 each row is repeated that many times (beams).

  Returns:
    (memory, cache), their leaves' leading dimension `batch * copies`.
  """
  memory = model.apply({'params': params}, inputs, method=model.encode)
  if copies > 1:
    memory = jax.tree.map(lambda x: jnp.repeat(x, copies, axis=0), memory)
  rows = inputs.shape[0] * copies
  _, created = model.apply(
      {'params': params}, memory, jnp.zeros((rows, max_length), jnp.int32),
      decode=True, method=model.decode, mutable=['cache'])
  return memory, created.get('cache', {})


def _seq2seq_step(model: nn.Module, params: Any, memory: Any, cache: Any,
                  tokens: Array) -> tuple[Array, Any]:
  """Feeds `tokens` `[rows]`; returns (float32 logits `[rows, vocab]`,
  cache)."""
  logits, updated = model.apply(
      {'params': params, 'cache': cache}, memory, tokens[:, None],
      decode=True, method=model.decode, mutable=['cache'])
  return logits[:, -1], updated['cache']


def _never_output(scores: Array, bos_id: int, eos_id: int) -> Array:
  """`scores` `[rows, vocab]` (logits or log-probabilities) with padding
  (0) and, unless it is also EOS, BOS out of reach: no target was either,
  so their scores were never trained, and in the searches' outputs a 0
  means "after EOS". Applied after the softmax, so that a hypothesis still
  scores the model's own log-probability (as fairseq does)."""
  banned = [0] if bos_id == eos_id else [0, bos_id]
  return scores.at[:, banned].set(_NEG)


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def greedy_search(model: nn.Module, params: Any, inputs: Array,
                  max_length: int, bos_id: int, eos_id: int) -> Array:
  """The likeliest token at each step, until EOS or `max_length` tokens.

  Args:
    model: a sequence to sequence model (see the module docstring).
    params: its parameters.
    inputs: source ids `[batch, src_length]`, 0 for padding.
    max_length: the most tokens generated, EOS included.
    bos_id: the decoder's first input.
    eos_id: ends a translation.

  Returns:
    int32 `[batch, max_length]`: the tokens, EOS, then 0.
  """
  batch = inputs.shape[0]
  memory, cache = _seq2seq_start(model, params, inputs, max_length)

  def not_done(state):
    i, _, _, done, _ = state
    return (i < max_length) & ~jnp.all(done)

  def step(state):
    i, token, cache, done, out = state
    logits, cache = _seq2seq_step(model, params, memory, cache, token)
    logits = _never_output(logits, bos_id, eos_id)
    token = jnp.where(done, 0, jnp.argmax(logits, -1).astype(jnp.int32))
    return (i + 1, token, cache, done | (token == eos_id),
            out.at[:, i].set(token))

  state = (jnp.array(0), jnp.full((batch,), bos_id, jnp.int32), cache,
           jnp.zeros((batch,), bool), jnp.zeros((batch, max_length), jnp.int32))
  return jax.lax.while_loop(not_done, step, state)[-1]


def length_penalty(length: Array, alpha: float) -> Array:
  """((5 + length) / 6) ** alpha, of Wu et al. (2016, GNMT) and
  tensor2tensor; a hypothesis scores log P / length_penalty. alpha = 0
  ranks by log-probability alone, which favours short outputs."""
  return ((5.0 + length) / 6.0) ** alpha


def _gather_beams(x: Array, index: Array) -> Array:
  """`x[b, index[b, j]]` for `x` `[batch, n, ...]`, `index` `[batch, k]`."""
  return jnp.take_along_axis(
      x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5, 6, 7))
def beam_search(model: nn.Module, params: Any, inputs: Array, beam_size: int,
                max_length: int, alpha: float, bos_id: int, eos_id: int
                ) -> tuple[Array, Array]:
  """Beam search with a length penalty, batched.

  Each step extends the `beam_size` live hypotheses of every sentence by
  every token and keeps the best 2 x beam_size extensions: those ending in
  EOS, if among the best `beam_size`, compete by log P / `length_penalty`
  for the `beam_size` finished slots; the best `beam_size` others live on,
  the decoder's state of each gathered from its parent. A sentence is done
  when its best finished hypothesis outscores anything its live ones could
  still reach (their log-probabilities can only fall, and the penalty
  grows at most to that of `max_length`); the loop ends when all are done
  or after `max_length` steps.

  With beam_size 1 and alpha 0 this is greedy search.

  Args:
    model: a sequence to sequence model (see the module docstring).
    params: its parameters.
    inputs: source ids `[batch, src_length]`, 0 for padding.
    beam_size: hypotheses kept per sentence.
    max_length: the most tokens generated, EOS included.
    alpha: the length penalty's exponent (Wu et al.: 0.6 to 1.0), >= 0:
      a negative one would favour short hypotheses, and the search could
      stop before finding the best.
    bos_id: the decoder's first input.
    eos_id: ends a hypothesis.

  Returns:
    (int32 `[batch, max_length]` best hypothesis: tokens, EOS, then 0;
    float32 `[batch]` its score). A sentence with no finished hypothesis
    after `max_length` steps gets its best live one.
  """
  if alpha < 0:
    raise ValueError(f'the length penalty must be 0 or more, not {alpha}')
  batch, k = inputs.shape[0], beam_size
  memory, cache = _seq2seq_start(model, params, inputs, max_length, k)
  best_possible = length_penalty(float(max_length), alpha)

  def not_done(state):
    i, alive_logp, _, finished_score, finished, *_ = state
    done = finished.any(-1) & (finished_score.max(-1)
                               >= alive_logp[:, 0] / best_possible)
    return (i < max_length) & ~jnp.all(done)

  def step(state):
    (i, alive_logp, alive_seq, finished_score, finished, finished_seq, cache,
     last) = state
    logits, cache = _seq2seq_step(model, params, memory, cache, last)
    vocab = logits.shape[-1]
    logp = _never_output(jax.nn.log_softmax(logits), bos_id, eos_id)
    logp = logp.reshape(batch, k, vocab)
    candidates = (alive_logp[:, :, None] + logp).reshape(batch, k * vocab)
    top_logp, top = jax.lax.top_k(candidates, 2 * k)
    parent, token = top // vocab, (top % vocab).astype(jnp.int32)
    seqs = _gather_beams(alive_seq, parent).at[:, :, i].set(token)
    ends = token == eos_id

    alive_logp, keep = jax.lax.top_k(jnp.where(ends, _NEG, top_logp), k)
    alive_seq = _gather_beams(seqs, keep)
    parent = _gather_beams(parent, keep)
    last = _gather_beams(token, keep).reshape(-1)
    rows = (jnp.arange(batch)[:, None] * k + parent).reshape(-1)
    cache = jax.tree.map(
        lambda x: x[rows] if x.ndim and x.shape[0] == batch * k else x, cache)

    # As in fairseq, only an EOS among the best `k` extensions finishes a
    # hypothesis: a beam of one then ends exactly where greedy search does.
    ends = ends & (jnp.arange(2 * k) < k)
    score = jnp.where(ends, top_logp / length_penalty(i + 1.0, alpha), _NEG)
    finished_score, keep = jax.lax.top_k(
        jnp.concatenate([finished_score, score], 1), k)
    finished = _gather_beams(jnp.concatenate([finished, ends], 1), keep)
    finished_seq = _gather_beams(
        jnp.concatenate([finished_seq, seqs], 1), keep)
    return (i + 1, alive_logp, alive_seq, finished_score, finished,
            finished_seq, cache, last)

  # Only the first of the identical start beams may grow, or the beam
  # would fill up with copies of one hypothesis.
  alive_logp = jnp.tile(jnp.array([0.0] + [_NEG] * (k - 1)), (batch, 1))
  empty = jnp.zeros((batch, k, max_length), jnp.int32)
  state = (jnp.array(0), alive_logp, empty, jnp.full((batch, k), _NEG),
           jnp.zeros((batch, k), bool), empty, cache,
           jnp.full((batch * k,), bos_id, jnp.int32))
  (i, alive_logp, alive_seq, finished_score, finished, finished_seq, *_
   ) = jax.lax.while_loop(not_done, step, state)
  any_finished = finished[:, 0]
  tokens = jnp.where(any_finished[:, None], finished_seq[:, 0],
                     alive_seq[:, 0])
  scores = jnp.where(any_finished, finished_score[:, 0],
                     alive_logp[:, 0] / length_penalty(i * 1.0, alpha))
  return tokens, scores


def until_eos(row: np.ndarray, eos_id: int) -> list[int]:
  """The ids of a searched row before its first EOS."""
  ends = np.flatnonzero(row == eos_id)
  return [int(t) for t in row[:ends[0] if len(ends) else len(row)]]
