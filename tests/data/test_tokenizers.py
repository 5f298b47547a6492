"""Tests of lm_jax.data.tokenizers: round trips, save/load, bad input."""

import json

import numpy as np
import pytest

from lm_jax.data import tokenizers
from lm_jax.data.wordpiece import WordPieceTokenizer

TEXT = 'First Citizen:\nBefore we proceed any further, hear me speak.\n'


def test_char_tokenizer_vocabulary_is_the_sorted_set_of_characters():
  tok = tokenizers.CharTokenizer.from_text(TEXT)
  assert tok.chars == sorted(set(TEXT))
  assert tok.vocab_size == len(set(TEXT))


def test_char_tokenizer_round_trips_text():
  tok = tokenizers.CharTokenizer.from_text(TEXT)
  ids = tok.encode(TEXT)
  assert ids.dtype == np.int32
  assert ids.shape == (len(TEXT),)
  assert ids.min() >= 0 and ids.max() < tok.vocab_size
  assert tok.decode(ids) == TEXT
  assert tok.decode(ids.tolist()) == TEXT
  assert tok.encode('').shape == (0,)


def test_char_tokenizer_ids_follow_the_sorted_vocabulary():
  tok = tokenizers.CharTokenizer(['\n', ' ', 'a', 'b'])
  np.testing.assert_array_equal(tok.encode('ba \n'), [3, 2, 1, 0])


def test_char_tokenizer_handles_non_ascii_and_astral_characters():
  text = 'naïve café — 東京 🙂\n'
  tok = tokenizers.CharTokenizer.from_text(text)
  assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize('text', [
    'Zebra',        # 'Z' is below the largest known code point
    'hear me €',    # '€' is above every known code point
    '🙂',            # outside the Basic Multilingual Plane
])
def test_unknown_characters_raise_value_error_naming_them(text):
  tok = tokenizers.CharTokenizer.from_text(TEXT)
  with pytest.raises(ValueError, match='vocabulary') as info:
    tok.encode(text)
  unknown = sorted(set(text) - set(TEXT))
  assert repr(unknown) in str(info.value)


def test_save_and_load_round_trip(tmp_path):
  text = TEXT + 'ünïcödé 🙂'
  tok = tokenizers.CharTokenizer.from_text(text)
  path = str(tmp_path / 'tokenizer.json')
  tok.save(path)
  with open(path, encoding='utf-8') as f:
    assert json.load(f)['kind'] == 'char'
  loaded = tokenizers.load(path)
  assert isinstance(loaded, tokenizers.CharTokenizer)
  assert loaded.chars == tok.chars
  np.testing.assert_array_equal(loaded.encode(text), tok.encode(text))
  assert loaded.decode(tok.encode(text)) == text


def test_save_replaces_the_file_whole(tmp_path, monkeypatch):
  """A relaunch rewrites tokenizer.json; a kill mid-write (here, json.dump
  failing) must leave the old file as it was."""
  path = str(tmp_path / 'tokenizer.json')
  tokenizers.CharTokenizer.from_text('ab').save(path)
  with open(path, encoding='utf-8') as f:
    before = f.read()

  def killed(obj, f, **kwargs):
    f.write('{"kind": "ch')
    raise KeyboardInterrupt

  monkeypatch.setattr(json, 'dump', killed)
  with pytest.raises(KeyboardInterrupt):
    tokenizers.CharTokenizer.from_text('abc').save(path)
  with open(path, encoding='utf-8') as f:
    assert f.read() == before


@pytest.mark.parametrize('make', [
    lambda: tokenizers.CharTokenizer.from_text('ab'),
    lambda: tokenizers.WordTokenizer.from_text('a b a'),
    lambda: WordPieceTokenizer(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]',
                                'a']),
])
def test_decoding_an_id_outside_the_vocabulary_is_an_error(make):
  tok = make()
  for bad in (-1, 10**6):  # -1 would otherwise read the last entry
    with pytest.raises(ValueError, match='outside the vocabulary'):
      tok.decode([0, bad])


def test_load_rejects_unknown_tokenizer_kinds(tmp_path):
  path = tmp_path / 'tokenizer.json'
  path.write_text(json.dumps({'kind': 'bpe', 'merges': []}))
  with pytest.raises(ValueError, match='bpe'):
    tokenizers.load(str(path))


def test_load_rejects_a_tokenizer_file_with_a_foreign_field(tmp_path):
  path = tmp_path / 'tokenizer.json'
  path.write_text(json.dumps({'kind': 'char', 'chars': 'ab', 'merges': []}))
  with pytest.raises(ValueError, match='not a char tokenizer file'):
    tokenizers.load(str(path))


PTB_LIKE = 'the cat sat\non the mat\nthe end\n'


def test_word_tokenizer_ranks_words_by_count_after_the_specials():
  tok = tokenizers.WordTokenizer.from_text(PTB_LIKE)
  assert tok.words[:2] == ['<unk>', '<eos>']
  assert tok.words[2] == 'the'  # the most frequent word
  assert tok.words[3:] == sorted(tok.words[3:])  # the rest tie at one
  assert tok.vocab_size == 2 + len(set(PTB_LIKE.split()))


def test_word_tokenizer_spells_line_breaks_as_eos_and_round_trips():
  tok = tokenizers.WordTokenizer.from_text(PTB_LIKE)
  ids = tok.encode(PTB_LIKE)
  assert ids.dtype == np.int32
  assert [tok.words[i] for i in ids[:4]] == ['the', 'cat', 'sat', '<eos>']
  assert tok.decode(ids) == PTB_LIKE


def test_word_tokenizer_maps_unseen_and_rare_words_to_unk():
  tok = tokenizers.WordTokenizer.from_text(PTB_LIKE, min_count=2)
  assert tok.words == ['<unk>', '<eos>', 'the']
  np.testing.assert_array_equal(tok.encode('the dog'), [2, 0])
  capped = tokenizers.WordTokenizer.from_text(PTB_LIKE, max_size=4)
  assert capped.vocab_size == 4


def test_word_tokenizer_without_eos_drops_line_breaks():
  tok = tokenizers.WordTokenizer.from_text(
      'a b\nb c\n', specials=('<pad>', '<unk>'), eos='')
  assert tok.words == ['<pad>', '<unk>', 'b', 'a', 'c']
  np.testing.assert_array_equal(tok.encode('a b\nc\n'), [3, 2, 4])


def test_word_tokenizer_save_load_and_a_missing_unk(tmp_path):
  tok = tokenizers.WordTokenizer.from_text(PTB_LIKE)
  path = str(tmp_path / 'tokenizer.json')
  tok.save(path)
  loaded = tokenizers.load(path)
  assert isinstance(loaded, tokenizers.WordTokenizer)
  np.testing.assert_array_equal(loaded.encode(PTB_LIKE), tok.encode(PTB_LIKE))
  with pytest.raises(ValueError, match='unknown word'):
    tokenizers.WordTokenizer(['a', 'b'])
