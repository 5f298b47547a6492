"""Each sequence to sequence model really learns: reversing digit strings,
a task that needs the whole source, to 100% sequence accuracy on unseen
strings, greedy and beam search, after a few hundred steps of a tiny
model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm_jax import decode, losses
from lm_jax.data.seq2seq_batches import pad_pairs
from lm_jax.models.seq2seq_rnn import Seq2SeqRNN, Seq2SeqRNNConfig
from lm_jax.models.transformer_seq2seq import (TransformerSeq2Seq,
                                               TransformerSeq2SeqConfig)

# Hundreds of steps repay XLA's optimisation passes (a quarter less time).
pytestmark = pytest.mark.usefixtures('optimized_compilation')

BOS, EOS = 2, 3
DIGITS = np.arange(4, 14)  # ids of 0..9
VOCAB = 14
LENGTH = 8  # padded length: up to 6 digits and EOS
BATCH = 64


def reversal_batch(rng, size):
  """Random strings of 3 to 6 digits and their reversals."""
  sources = [rng.choice(DIGITS, rng.integers(3, 7)).astype(np.int32)
             for _ in range(size)]
  return sources, [s[::-1].copy() for s in sources]


def _rnn(attention, cell='gru'):
  return Seq2SeqRNN(Seq2SeqRNNConfig(
      VOCAB, VOCAB, cell=cell, attention=attention, embed_dim=16,
      encoder_dim=64, decoder_dim=128, attention_dim=32, readout_dim=32,
      dropout_rate=0.0))


# model, steps, peak learning rate (cosine decay to 5%)
SETUPS = {
    'gru_context_vector': (lambda: _rnn('none'), 800, 1e-2),
    'gru_bahdanau': (lambda: _rnn('bahdanau'), 300, 1e-2),
    'lstm_luong_general': (lambda: _rnn('luong_general', 'lstm'), 400, 1e-2),
    'transformer': (lambda: TransformerSeq2Seq(TransformerSeq2SeqConfig(
        VOCAB, VOCAB, num_layers=2, num_heads=4, embed_dim=64, mlp_dim=128,
        dropout_rate=0.0)), 400, 2e-3),
}


def train(model, steps, learning_rate, seed=0):
  rng = np.random.default_rng(seed)
  params = jax.jit(model.init)(jax.random.key(seed),
                               jnp.zeros((1, LENGTH), jnp.int32))['params']
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, 0.05))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, batch):
    def loss(p):
      logits = model.apply({'params': p}, batch['inputs'],
                           batch['decoder_inputs'])
      total, count = losses.cross_entropy(logits, batch['targets'],
                                          batch['weights'])
      return total / count
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(steps):
    batch = pad_pairs(*reversal_batch(rng, BATCH), LENGTH, BATCH, BOS, EOS)
    params, opt_state = step(params, opt_state, batch)
  return params


# One set-up keeps the fast suite under its time; the other three run with
# ./launch.sh test-slow. (The Transformer's learning is also checked by
# tests/tasks/test_translation.py, on a tiny word-for-word corpus.)
_SLOW_SETUPS = ('gru_context_vector', 'lstm_luong_general', 'transformer')


@pytest.mark.parametrize('name', [
    pytest.param(name, marks=pytest.mark.slow) if name in _SLOW_SETUPS
    else name for name in sorted(SETUPS)])
def test_learns_to_reverse_digit_strings(name):
  make, steps, learning_rate = SETUPS[name]
  model = make()
  params = train(model, steps, learning_rate)
  sources, targets = reversal_batch(np.random.default_rng(123), 200)
  inputs = pad_pairs(sources, targets, LENGTH, 200, BOS, EOS)['inputs']
  greedy = decode.greedy_search(model, params, inputs, LENGTH, BOS, EOS)
  beam, _ = decode.beam_search(model, params, inputs, 3, LENGTH, 0.6, BOS,
                               EOS)
  for name_, out in (('greedy', greedy), ('beam', beam)):
    wrong = [(s.tolist(), decode.until_eos(row, EOS))
             for s, t, row in zip(sources, targets, np.asarray(out))
             if decode.until_eos(row, EOS) != t.tolist()]
    assert not wrong, f'{name_}: {len(wrong)} of 200 wrong, e.g. {wrong[:3]}'
