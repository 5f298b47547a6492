"""Tests of sequence to sequence decoding in lm_jax.decode: greedy search
against teacher-forced argmaxes, beam search against greedy, brute force
and the teacher-forced score of what it returns."""

import itertools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax import decode
from lm_jax.models.seq2seq_rnn import Seq2SeqRNN, Seq2SeqRNNConfig
from lm_jax.models.transformer_seq2seq import (TransformerSeq2Seq,
                                               TransformerSeq2SeqConfig)

BOS, EOS = 2, 3
SOURCE = np.array([[5, 6, 7, 8, EOS, 0], [9, 10, EOS, 0, 0, 0],
                   [11, 4, 4, 12, 5, EOS]], np.int32)


class MarkovTable(nn.Module):
  """A hand-made decoder: p(next | previous token) from a fixed table.

  It also counts the tokens each row was fed in its 'cache', as real
  decoders keep per-row state there.

  Attributes:
    log_probs: `[vocab][vocab]` log p(next | previous), as nested tuples.
  """

  log_probs: tuple

  def encode(self, inputs):
    return {'mask': inputs != 0}

  def decode(self, memory, tokens, train=False, decode=False):
    del train
    if decode:
      count = self.get_variable('cache', 'count', jnp.zeros(
          memory['mask'].shape[0], jnp.int32))
      self.put_variable('cache', 'count', count + tokens.shape[1])
    return jnp.asarray(self.log_probs, jnp.float32)[tokens]

  def __call__(self, inputs, decoder_inputs):
    return self.decode(self.encode(inputs), decoder_inputs)


def _table(transitions, vocab=8):
  """Log-probabilities with the given `{prev: {next: p}}` mass and the
  rest spread thinly over the other tokens."""
  table = np.full((vocab, vocab), 1e-6)
  for prev, row in transitions.items():
    for nxt, p in row.items():
      table[prev, nxt] = p
  table /= table.sum(-1, keepdims=True)
  return tuple(map(tuple, np.log(table).tolist()))


A, B, C, D = 4, 5, 6, 7
# Greedy takes A (0.6) then C: 0.6 x 0.55 = 0.33; B then EOS has 0.36.
TRAP = _table({BOS: {A: 0.6, B: 0.4}, A: {C: 0.55, D: 0.45},
               B: {EOS: 0.9, C: 0.1}, C: {EOS: 1.0}, D: {EOS: 1.0}})


def _teacher_forced(model, length):
  """`(params, sources, prefixes) -> logits` of one teacher-forced pass,
  jitted, the prefixes padded to `length` (one compilation for all): the
  decoders are causal, so what follows a position does not change it."""
  apply = jax.jit(model.apply)

  def logits(params, sources, prefixes):
    padded = np.zeros((len(prefixes), length), np.int32)
    for row, prefix in zip(padded, prefixes):
      row[:len(prefix)] = prefix
    return np.asarray(apply({'params': params}, sources, padded))

  return logits


def _sequence_log_prob(logits_of, params, source, tokens):
  """Teacher-forced log p(tokens | source), tokens ending in EOS or not."""
  decoder_inputs = np.concatenate([[BOS], tokens[:-1]])
  logits = logits_of(params, source[None], [decoder_inputs])
  logp = jax.nn.log_softmax(logits[0, :len(tokens)])
  return float(sum(logp[i, t] for i, t in enumerate(tokens)))


def test_beam_search_finds_what_greedy_misses():
  model = MarkovTable(TRAP)
  source = SOURCE[:1]
  greedy = decode.greedy_search(model, {}, source, 4, BOS, EOS)
  assert decode.until_eos(np.asarray(greedy)[0], EOS) == [A, C]
  tokens, score = decode.beam_search(model, {}, source, 2, 4, 0.0, BOS, EOS)
  assert np.asarray(tokens)[0].tolist() == [B, EOS, 0, 0]
  np.testing.assert_allclose(score, math.log(0.4 * 0.9), rtol=1e-4)


def test_neither_search_outputs_padding_or_bos():
  """Even where the model likes them best: neither was ever a target, and
  in the output a 0 means "after EOS"."""
  model = MarkovTable(_table({BOS: {0: 0.5, BOS: 0.3, A: 0.2},
                              A: {0: 0.5, BOS: 0.3, EOS: 0.2}}))
  greedy = decode.greedy_search(model, {}, SOURCE[:1], 4, BOS, EOS)
  assert np.asarray(greedy)[0].tolist() == [A, EOS, 0, 0]
  tokens, score = decode.beam_search(model, {}, SOURCE[:1], 2, 4, 0.0, BOS,
                                     EOS)
  assert np.asarray(tokens)[0].tolist() == [A, EOS, 0, 0]
  # Still the model's log-probability, not one renormalised without them.
  np.testing.assert_allclose(score, math.log(0.2 * 0.2), rtol=1e-4)


def test_a_negative_length_penalty_is_refused():
  """Its penalty shrinks with length, so the early stop (no live
  hypothesis can beat the best finished one) no longer holds."""
  with pytest.raises(ValueError, match='length penalty'):
    decode.beam_search(MarkovTable(TRAP), {}, SOURCE[:1], 2, 4, -1.0, BOS,
                       EOS)


@pytest.mark.parametrize('alpha', [0.0, 0.6, 2.0])
def test_a_wide_beam_equals_brute_force(alpha):
  rng = np.random.default_rng(1)
  table = rng.dirichlet(np.full(6, 0.5), size=6)
  table[:, :3] = 0.0  # never pad, unk or BOS; EOS is token 3
  table[:, 3] += 0.2
  table /= table.sum(-1, keepdims=True)
  model = MarkovTable(tuple(map(tuple, np.log(table + 1e-30).tolist())))
  max_length = 4
  best, best_score = None, -np.inf
  for length in range(1, max_length + 1):
    for body in itertools.product(range(3, 6), repeat=length - 1):
      if EOS in body:
        continue
      seq = [BOS, *body, EOS]
      logp = sum(math.log(table[a, b]) for a, b in zip(seq, seq[1:]))
      score = logp / decode.length_penalty(length, alpha)
      if score > best_score:
        best, best_score = list(body) + [EOS], score
  # 8 live prefixes x 3 tokens at most: a beam of 27 keeps every one.
  tokens, score = decode.beam_search(model, {}, SOURCE[:1], 27, max_length,
                                     alpha, BOS, EOS)
  assert np.asarray(tokens)[0, :len(best)].tolist() == best
  np.testing.assert_allclose(score, best_score, rtol=1e-4)


def _models():
  rnn = Seq2SeqRNN(Seq2SeqRNNConfig(14, 14, cell='gru', attention='bahdanau',
                                    embed_dim=8, encoder_dim=8,
                                    decoder_dim=16, attention_dim=8,
                                    readout_dim=8))
  transformer = TransformerSeq2Seq(TransformerSeq2SeqConfig(
      14, 14, num_layers=2, num_heads=2, embed_dim=16, mlp_dim=32))
  return {'rnn': rnn, 'transformer': transformer}


# Per model, an initialisation seed and a sharpening factor under which
# beams run for several steps, some ending in EOS: where every hypothesis
# ends at the first step, beams never reorder, and a search that lost
# track of its beams' states would pass.
_RANDOM_MODELS = {'rnn': (5, 2.0), 'transformer': (1, 1.0)}


@pytest.fixture(scope='module', params=sorted(_RANDOM_MODELS))
def model_and_params(request):
  model = _models()[request.param]
  seed, sharpening = _RANDOM_MODELS[request.param]
  params = jax.jit(model.init)(jax.random.key(seed), SOURCE[:1])['params']
  return model, jax.tree.map(lambda x: sharpening * x, params)


def test_greedy_is_the_argmax_of_teacher_forced_passes(model_and_params):
  model, params = model_and_params
  max_length = 7
  out = np.asarray(decode.greedy_search(model, params, SOURCE, max_length,
                                        BOS, EOS))
  logits_of = _teacher_forced(model, max_length)
  for row, source in zip(out, SOURCE):
    prefix = [BOS]
    for i in range(max_length):
      logits = logits_of(params, source[None], [prefix])[0, i].copy()
      logits[[0, BOS]] = -np.inf  # never outputs
      token = int(logits.argmax())
      assert row[i] == token
      if token == EOS:
        assert (row[i + 1:] == 0).all()
        break
      prefix.append(token)


def test_beam_of_one_is_greedy(model_and_params):
  model, params = model_and_params
  greedy = decode.greedy_search(model, params, SOURCE, 7, BOS, EOS)
  beam, _ = decode.beam_search(model, params, SOURCE, 1, 7, 0.0, BOS, EOS)
  np.testing.assert_array_equal(beam, greedy)


def test_the_score_is_the_length_penalised_log_probability(model_and_params):
  model, params = model_and_params
  alpha, max_length = 0.6, 7
  tokens, scores = decode.beam_search(model, params, SOURCE, 3, max_length,
                                      alpha, BOS, EOS)
  lengths = [len(decode.until_eos(row, EOS)) for row in np.asarray(tokens)]
  assert max(lengths) >= 3 and min(lengths) < max_length, (
      'the searches must run several steps, some ending in EOS', lengths)
  logits_of = _teacher_forced(model, max_length)
  for source, row, score in zip(SOURCE, np.asarray(tokens), scores):
    kept = decode.until_eos(row, EOS)
    finished = len(kept) < max_length
    seq = np.array(kept + [EOS] if finished else kept)
    logp = _sequence_log_prob(logits_of, params, source, seq)
    np.testing.assert_allclose(
        score, logp / decode.length_penalty(len(seq), alpha), rtol=1e-4,
        atol=1e-4)


def test_each_sentence_is_searched_independently(model_and_params):
  model, params = model_and_params
  batched, _ = decode.beam_search(model, params, SOURCE, 3, 7, 0.6, BOS, EOS)
  for i in range(len(SOURCE)):
    alone, _ = decode.beam_search(model, params, SOURCE[i:i + 1], 3, 7, 0.6,
                                  BOS, EOS)
    np.testing.assert_array_equal(alone[0], batched[i])


def test_length_penalty_is_gnmt_s():
  assert decode.length_penalty(1.0, 0.0) == 1.0
  np.testing.assert_allclose(decode.length_penalty(7.0, 0.6),
                             (12 / 6) ** 0.6)
