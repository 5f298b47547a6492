"""The n-gram task: sentences from text, and char models saved as ARPA."""

import numpy as np
import pytest

from lm_jax.models.ngram import NGramLM
from lm_jax.models.ngram_vocabulary import Vocabulary
from lm_jax.tasks.ngram_lm import SPACE, split_sentences, token_text


def test_lines_become_word_or_character_sentences():
  text = ' the cat <unk> \n\nsat\n'
  assert split_sentences(text, 'word') == [['the', 'cat', '<unk>'], [],
                                           ['sat']]
  assert split_sentences('a b\nc\n', 'char') == [['a', SPACE, 'b'], ['c']]


def test_char_model_with_spaces_survives_the_arpa_round_trip(tmp_path):
  """A space must not be a token in an ARPA file, whose separator it is."""
  text = 'to be or not to be\nthat is the question\nto sleep perchance\n'
  sentences = split_sentences(text, 'char')
  vocab = Vocabulary.from_sentences(sentences)
  ids = [vocab.encode(s) for s in sentences]
  model = NGramLM(vocab, 4, 'mkn').fit(ids)
  model.to_arpa(str(tmp_path / 'model.arpa'))

  loaded = NGramLM.from_arpa(str(tmp_path / 'model.arpa'))

  assert loaded.vocab.words == vocab.words
  np.testing.assert_allclose(loaded.token_log10_probs(ids),
                             model.token_log10_probs(ids), rtol=0, atol=1e-12)


def test_any_white_space_character_survives_the_arpa_round_trip(tmp_path):
  """A tab or a no-break space was written as a bare token, which split
  its ARPA line into the wrong columns."""
  text = 'a\tb a\n\u00a0ab\r\n'
  sentences = split_sentences(text, 'char')
  assert ''.join(map(token_text, sentences[0])) == 'a\tb a'
  assert ''.join(map(token_text, sentences[1])) == '\u00a0ab\r'
  vocab = Vocabulary.from_sentences(sentences)
  ids = [vocab.encode(s) for s in sentences]
  model = NGramLM(vocab, 3, 'mkn').fit(ids)
  model.to_arpa(str(tmp_path / 'model.arpa'))
  loaded = NGramLM.from_arpa(str(tmp_path / 'model.arpa'))
  np.testing.assert_allclose(loaded.token_log10_probs(ids),
                             model.token_log10_probs(ids), rtol=0, atol=1e-12)


def test_a_word_holding_white_space_cannot_be_written_as_arpa(tmp_path):
  vocab = Vocabulary(['a', 'b c'])
  model = NGramLM(vocab, 2, 'mkn').fit([vocab.encode(['a', 'b c'])])
  with pytest.raises(ValueError, match="'b c'"):
    model.to_arpa(str(tmp_path / 'model.arpa'))
  assert not list(tmp_path.iterdir())
