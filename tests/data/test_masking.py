"""Tests of lm_jax.data.masking: packing sentences into BERT inputs, the
80/10/10 corruption of 15% of the tokens, whole-word masking, and
reproducible, resumable batches."""

import numpy as np
import pytest

from lm_jax.data import masking

PAD, CLS, SEP, MASK = 0, 2, 3, 4
VOCAB = 1000
SPECIAL = np.zeros(VOCAB, bool)
SPECIAL[:5] = True
CONTINUATION = np.zeros(VOCAB, bool)
CONTINUATION[500:] = True  # ids >= 500 are '##' pieces


def _masking(**kwargs):
  return masking.Masking(mask_id=MASK, special=SPECIAL,
                         continuation=CONTINUATION, **kwargs)


def _batch(rng, rows=64, length=128):
  lengths = rng.integers(3, length + 1, rows)
  ids = rng.integers(5, VOCAB, (rows, length)).astype(np.int32)
  ids[:, 0] = CLS
  ids[np.arange(rows), lengths - 1] = SEP
  ids[np.arange(length)[None] >= lengths[:, None]] = PAD
  return ids, lengths


def test_pack_sentences_keeps_sentences_whole():
  sentences = [np.arange(10, 13), np.arange(20, 25), np.arange(30, 32),
               np.array([], np.int32), np.arange(40, 53)]
  ids, lengths = masking.pack_sentences(sentences, 10, CLS, SEP, PAD)
  assert lengths.tolist() == [10, 4, 10, 7]
  assert ids[0].tolist() == [CLS, 10, 11, 12, 20, 21, 22, 23, 24, SEP]
  assert ids[1].tolist() == [CLS, 30, 31, SEP] + [PAD] * 6
  # 13 ids do not fit 8: the sentence is cut.
  assert ids[2, 1:9].tolist() == list(range(40, 48))
  assert ids[3, :7].tolist() == [CLS, 48, 49, 50, 51, 52, SEP]


def test_masking_statistics_on_a_large_sample():
  rng = np.random.default_rng(0)
  ids, lengths = _batch(rng, rows=4000)
  out = _masking(max_predictions=40)(ids, lengths, rng)
  live = out['mlm_weights'] > 0
  rows, slots = np.nonzero(live)
  positions = out['mlm_positions'][rows, slots]
  targets = out['mlm_targets'][rows, slots]
  np.testing.assert_array_equal(targets, ids[rows, positions])
  # round(15%) of the non-special tokens of every row.
  candidates = lengths - 2
  expected = np.minimum(np.maximum(np.floor(candidates * 0.15 + 0.5), 1), 40)
  np.testing.assert_array_equal(live.sum(1), expected)
  # Never a special token, never padding, no position twice.
  assert not SPECIAL[targets].any()
  assert (positions < lengths[rows]).all() and (positions > 0).all()
  assert len(set(zip(rows, positions))) == len(rows)
  got = out['inputs'][rows, positions]
  shares = [np.mean(got == MASK), np.mean((got != MASK) & (got != targets)),
            np.mean(got == targets)]
  # 10% kept includes none of the random draws that hit the same id
  # (1 in 995), so the tolerance covers sampling alone.
  np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.01)
  # Everything not chosen is untouched.
  untouched = np.ones(ids.shape, bool)
  untouched[rows, positions] = False
  np.testing.assert_array_equal(out['inputs'][untouched], ids[untouched])
  # Random replacements are never special tokens.
  assert not SPECIAL[got].any() or set(got[SPECIAL[got]]) == {MASK}


def test_rows_without_candidates_and_the_prediction_cap():
  ids = np.array([[CLS, SEP, PAD, PAD], [CLS, 9, 10, SEP]], np.int32)
  out = _masking(max_predictions=6)(ids, np.array([2, 4]),
                                    np.random.default_rng(0))
  assert out['mlm_positions'].shape == (2, 6)
  assert out['mlm_weights'].sum(1).tolist() == [0, 1]
  np.testing.assert_array_equal(out['inputs'][0], ids[0])
  rng = np.random.default_rng(1)
  ids = rng.integers(5, VOCAB, (8, 400)).astype(np.int32)
  out = _masking(max_predictions=20)(ids, np.full(8, 400), rng)
  assert out['mlm_weights'].sum(1).tolist() == [20] * 8


def test_whole_word_masking_masks_words_whole():
  rng = np.random.default_rng(2)
  ids, lengths = _batch(rng, rows=500, length=64)
  out = _masking(whole_word=True, max_predictions=20)(ids, lengths, rng)
  chosen = np.zeros(ids.shape, bool)
  rows, slots = np.nonzero(out['mlm_weights'])
  chosen[rows, out['mlm_positions'][rows, slots]] = True
  assert not SPECIAL[ids[chosen]].any()
  # A chosen continuation piece's word start is chosen too, and the piece
  # after a chosen one is chosen if it continues the word (a '##' piece
  # right after [CLS] starts a word of its own).
  position = np.arange(64)[None]
  cont = (CONTINUATION[ids] & (position >= 2)
          & (position < lengths[:, None] - 1))
  prev = np.roll(chosen, 1, axis=1)
  assert (~(chosen & cont) | prev).all()
  nxt_cont = np.roll(cont, -1, axis=1)
  nxt_chosen = np.roll(chosen, -1, axis=1)
  assert (~(chosen & nxt_cont) | nxt_chosen)[:, :-1].all()
  candidates = lengths - 2
  budget = np.minimum(np.maximum(np.floor(candidates * 0.15 + 0.5), 1), 20)
  assert (chosen.sum(1) <= budget).all()
  assert chosen.sum() > 0.8 * budget.sum()


def test_batches_are_reproducible_and_resumable():
  rng = np.random.default_rng(3)
  sequences, lengths = _batch(rng, rows=40, length=32)
  batches = masking.MaskedBatches(sequences, lengths, _masking(), 8, seed=0)
  assert batches.steps_per_epoch == 5
  stream = masking.train_stream(batches)
  first = [next(stream) for _ in range(7)]
  state = stream.get_state()
  later = next(stream)
  resumed = masking.train_stream(batches)
  resumed.set_state(state)
  got = next(resumed)
  for key, value in later.items():
    np.testing.assert_array_equal(got[key], value, err_msg=key)
  # Epoch 2 shows each sequence again, corrupted anew.
  again = batches(5)
  assert not np.array_equal(again['inputs'], first[0]['inputs'])
  assert batches(5)['inputs'].tolist() == again['inputs'].tolist()
  half = masking.MaskedBatches(sequences, lengths, _masking(), 8, seed=0,
                               rows=slice(4, 8))(3)
  np.testing.assert_array_equal(half['inputs'], first[3]['inputs'][4:8])


def test_each_epoch_order_and_each_batch_mask_have_their_own_stream(
    monkeypatch):
  # numpy pads short seeds with zeros, so [seed, 1] and [seed, 1, 0] give
  # the same numbers: epoch 1's order was drawn from batch 0's mask stream.
  states = []
  make = np.random.default_rng

  def recording(entropy):
    states.append(tuple(np.random.SeedSequence(entropy).generate_state(4)))
    return make(entropy)

  monkeypatch.setattr(masking.np.random, 'default_rng', recording)
  sequences, lengths = _batch(make(5), rows=16, length=16)
  batches = masking.MaskedBatches(sequences, lengths, _masking(), 8, seed=0)
  for k in range(6):  # three epochs of two batches
    batches(k)
  orders, masks = set(states[0::2]), set(states[1::2])
  assert len(orders) == 3 and len(masks) == 6
  assert not orders & masks


def test_eval_batches_cover_every_sequence_once():
  rng = np.random.default_rng(4)
  sequences, lengths = _batch(rng, rows=21, length=16)
  m = _masking()
  batches = masking.eval_batches(sequences, lengths, m, 8, seed=1)
  assert len(batches) == 3
  assert [b['lengths'].tolist().count(0) for b in batches] == [0, 0, 3]
  assert sum(b['mlm_weights'].sum() for b in batches) == m.budget(
      (np.arange(16)[None] < lengths[:, None]) & ~SPECIAL[sequences]).sum()
  again = masking.eval_batches(sequences, lengths, m, 8, seed=1)
  for a, b in zip(batches, again):
    np.testing.assert_array_equal(a['inputs'], b['inputs'])
  sample = masking.eval_batches(sequences, lengths, m, 8, seed=1,
                                max_batches=2)
  assert len(sample) == 2


def test_too_few_sequences_is_an_error():
  with pytest.raises(ValueError, match='too few'):
    masking.MaskedBatches(np.zeros((3, 8), np.int32), np.full(3, 8),
                          _masking(), 4, seed=0)
