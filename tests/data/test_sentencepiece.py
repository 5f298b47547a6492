"""Tests of the SentencePiece tokenizer: special ids, round trips, save and
load through the one tokenizer interface, and the cache of trained models."""

import os

import numpy as np
import pytest
import sentencepiece

from lm_jax.data import tokenizers
from lm_jax.data.tokenizers import SentencePieceTokenizer

SENTENCES = [
    'Two young, White males are outside near many bushes.',
    'Several men in hard hats are operating a giant pulley system.',
    'A little girl climbing into a wooden playhouse.',
    'A man in a blue shirt is standing on a ladder cleaning windows.',
    'Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.',
    'Ein kleines Mädchen klettert in ein Spielhaus aus Holz.',
] * 20


@pytest.fixture(scope='module', params=['unigram', 'bpe'])
def tokenizer(request):
  return SentencePieceTokenizer.train(SENTENCES, 120, request.param)


def test_special_ids_are_fixed_and_not_produced_by_encode(tokenizer):
  assert (tokenizer.pad_id, tokenizer.UNK_ID, tokenizer.bos_id,
          tokenizer.eos_id) == (0, 1, 2, 3)
  ids = np.concatenate([tokenizer.encode(s) for s in SENTENCES[:6]])
  assert ids.dtype == np.int32
  assert ids.min() >= 4 and ids.max() < tokenizer.vocab_size


def test_round_trip_restores_the_raw_text(tokenizer):
  for sentence in SENTENCES[:6]:
    assert tokenizer.decode(tokenizer.encode(sentence)) == sentence


def test_decode_drops_padding_bos_and_eos_and_writes_unk_visibly(tokenizer):
  ids = tokenizer.encode('A little girl.').tolist()
  assert tokenizer.decode([2, *ids, 3, 0, 0]) == 'A little girl.'
  assert tokenizer.decode([*ids, tokenizer.UNK_ID]) == 'A little girl. ⁇ '


def test_encode_batch_equals_encode_one_by_one(tokenizer):
  batch = tokenizer.encode_batch(SENTENCES[:6])
  for sentence, ids in zip(SENTENCES[:6], batch):
    np.testing.assert_array_equal(ids, tokenizer.encode(sentence))


def test_unknown_characters_map_to_unk(tokenizer):
  assert tokenizers.SentencePieceTokenizer.UNK_ID in tokenizer.encode('漢字')


def test_save_and_load_through_the_tokenizer_interface(tokenizer, tmp_path):
  path = str(tmp_path / 'tokenizer.json')
  tokenizer.save(path)
  loaded = tokenizers.load(path)
  assert isinstance(loaded, SentencePieceTokenizer)
  assert loaded.vocab_size == tokenizer.vocab_size
  for sentence in SENTENCES[:6]:
    np.testing.assert_array_equal(loaded.encode(sentence),
                                  tokenizer.encode(sentence))


def test_a_corpus_too_small_for_the_vocabulary_gets_fewer_pieces():
  small = SentencePieceTokenizer.train(['a b c', 'b c d'] * 5, 500)
  assert small.vocab_size < 500


def test_unknown_model_type_is_rejected():
  with pytest.raises(ValueError, match='unigram'):
    SentencePieceTokenizer.train(SENTENCES, 100, 'wordpiece')


def test_training_is_deterministic():
  a = SentencePieceTokenizer.train(SENTENCES, 120)
  b = SentencePieceTokenizer.train(SENTENCES, 120)
  assert a.proto == b.proto


def _refuse_to_train(*args, **kwargs):
  raise AssertionError('trained again instead of reading the cache')


def test_cache_returns_the_stored_model_and_retrains_for_new_data(
    tmp_path, monkeypatch):
  cache = str(tmp_path)
  first = tokenizers.cached_sentencepiece(SENTENCES, cache, 'toy', 120)
  stored = [f for f in os.listdir(tmp_path / 'sentencepiece')
            if f.endswith('.model')]
  assert len(stored) == 1
  # Training is deterministic, so only a refusal to train tells the stored
  # model from a retrained one.
  with monkeypatch.context() as patch:
    patch.setattr(SentencePieceTokenizer, 'train', _refuse_to_train)
    again = tokenizers.cached_sentencepiece(SENTENCES, cache, 'toy', 120)
  assert again.proto == first.proto
  tokenizers.cached_sentencepiece(SENTENCES[:60], cache, 'toy', 120)
  tokenizers.cached_sentencepiece(SENTENCES, cache, 'toy', 100)
  # The same characters cut into other sentences are other data.
  joined = ['\n'.join(SENTENCES[i:i + 2]) for i in range(0, 60, 2)]
  tokenizers.cached_sentencepiece(joined, cache, 'toy', 120)
  # Another sentencepiece may train another model from the same input.
  monkeypatch.setattr(sentencepiece, '__version__', '0.0.0-other')
  tokenizers.cached_sentencepiece(SENTENCES, cache, 'toy', 120)
  stored = [f for f in os.listdir(tmp_path / 'sentencepiece')
            if f.endswith('.model')]
  assert len(stored) == 5
