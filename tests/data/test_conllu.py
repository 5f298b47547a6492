"""Tests of lm_jax.data.builders.conllu: parsing tricky CoNLL-U lines, the
tfds build from plain and gzipped files, and clear errors for missing or
malformed data.

No test touches the network: `offline` makes host names unresolvable.
"""

import gzip
import os
import time

import pytest

from lm_jax.data.builders import conllu
from lm_jax.data.builders.raw_files import DataNotFoundError


def _line(token_id, form, upos, lemma='_'):
  return '\t'.join([token_id, form, lemma, upos, '_', '_', '0', 'root', '_',
                    '_'])


TRICKY = '\n'.join([
    '# newdoc id = 1',
    '# sent_id = 1',
    '# text = I don\'t know.',
    _line('1', 'I', 'PRON'),
    _line('2-3', "don't", '_'),  # multi-word token: its words follow
    _line('2', 'do', 'AUX'),
    _line('3', "n't", 'PART'),
    _line('4', 'know', 'VERB'),
    _line('4.1', 'knows', '_'),  # empty node (enhanced dependencies)
    _line('5', '.', 'PUNCT'),
    '',
    '',  # a second blank line ends nothing more
    '# sent_id = only-comments',
    '',
    _line('1', 'New York', 'PROPN') + '\r',  # a form with a space; CRLF
    _line('2', '#', 'SYM'),  # a token that looks like a comment is not one
    _line('3', 'a\u2028b\x0cc', 'X'),  # line ends only at '\n'
    # no blank line at the end of the file
])


def test_tricky_lines_give_words_and_tags_of_syntactic_words_only():
  sentences = list(conllu.parse_conllu(TRICKY))
  assert sentences == [
      (['I', 'do', "n't", 'know', '.'],
       ['PRON', 'AUX', 'PART', 'VERB', 'PUNCT']),
      (['New York', '#', 'a\u2028b\x0cc'], ['PROPN', 'SYM', 'X']),
  ]


@pytest.mark.parametrize('line, message', [
    ('1\tword\tword\tNOUN', '10 tab-separated columns, this one 4'),
    (_line('2', 'word', 'NN'), "unknown UPOS tag 'NN'"),
    (_line('x', 'word', 'NOUN'), "bad token ID 'x'"),
    (_line('1-', 'word', 'NOUN'), "bad token ID '1-'"),
    (_line('\u00b2', 'word', 'NOUN'), "bad token ID '\u00b2'"),  # isdigit()
    # A sentence not closed by a blank line would merge into the next.
    (_line('1', 'again', 'NOUN'), 'token ID 1 where 2 comes next'),
    (_line('3', 'word', 'NOUN'), 'token ID 3 where 2 comes next'),
])
def test_malformed_lines_raise_an_error_naming_file_and_line(line, message):
  text = '# sent_id = 1\n' + _line('1', 'ok', 'ADJ') + '\n' + line + '\n'
  with pytest.raises(ValueError) as info:
    list(conllu.parse_conllu(text, 'x.conllu'))
  assert str(info.value).startswith('x.conllu:3: ')
  assert message in str(info.value)


def _write_treebank(root, texts, gzipped=('train',)):
  """A ud_english_atis folder holding `texts` (split -> CoNLL-U text)."""
  folder = root / 'ud_english_atis'
  folder.mkdir(parents=True, exist_ok=True)
  for split, text in texts.items():
    path = folder / os.path.basename(
        conllu.TREEBANKS['ud_english_atis'].files[split])
    if split in gzipped:
      with gzip.open(str(path) + '.gz', 'wt', encoding='utf-8') as f:
        f.write(text)
    else:
      path.write_text(text, encoding='utf-8')


def test_built_splits_equal_the_parsed_files(tmp_path):
  texts = {'train': TRICKY,
           # A byte-order mark; a lone '\r' inside a form ends no line.
           'validation': '\ufeff# sent_id = 1\n' + _line(
               '1', 'flights\rto', 'NOUN') + '\n\n',
           'test': '\n'.join([_line('1', 'to', 'ADP'),
                              _line('2', 'denver', 'PROPN'), '', ''])}
  _write_treebank(tmp_path / 'raw', texts)
  for split, text in texts.items():
    loaded = conllu.load_sentences('ud_english_atis', split,
                                   str(tmp_path / 'raw'),
                                   str(tmp_path / 'cache'))
    assert loaded == [(list(w), list(t))
                      for w, t in conllu.parse_conllu(text)], split


def test_text_of_a_split_is_one_sentence_a_line_without_tags(tmp_path):
  one = _line('1', 'flights', 'NOUN') + '\n\n'
  _write_treebank(tmp_path / 'raw', {'train': TRICKY, 'validation': one,
                                     'test': one})
  text = conllu.load_text('ud_english_atis', 'train', str(tmp_path / 'raw'),
                          str(tmp_path / 'cache'))
  # A form with a space (or another white space) stays one word, as the
  # tagger's vocabulary has it.
  assert text == "I do n't know .\nNew_York # a_b_c\n"


def test_missing_file_offline_raises_data_not_found_quickly(offline,
                                                            tmp_path):
  _write_treebank(tmp_path / 'raw', {'train': TRICKY, 'validation': TRICKY})
  start = time.perf_counter()
  with pytest.raises(DataNotFoundError) as info:
    conllu.load_sentences('ud_english_atis', 'train', str(tmp_path / 'raw'),
                          str(tmp_path / 'cache'))
  assert time.perf_counter() - start < 20
  message = str(info.value)
  assert 'ud_english_atis/en_atis-ud-test.conllu' in message
  assert str(tmp_path / 'raw') in message
  assert '\n' not in message


def test_malformed_file_fails_with_its_path_and_the_cache_recovers(tmp_path):
  raw = tmp_path / 'raw'
  good = {'train': TRICKY, 'validation': TRICKY, 'test': TRICKY}
  _write_treebank(raw, dict(good, validation=_line('1', 'x', 'NN')))
  with pytest.raises(ValueError, match=r'en_atis-ud-dev\.conllu:1: unknown'):
    conllu.load_sentences('ud_english_atis', 'train', str(raw),
                          str(tmp_path / 'cache'))
  _write_treebank(raw, good)
  assert len(conllu.load_sentences('ud_english_atis', 'validation', str(raw),
                                   str(tmp_path / 'cache'))) == 2


def test_a_split_without_sentences_is_named(tmp_path):
  _write_treebank(tmp_path / 'raw', {'train': TRICKY, 'validation': TRICKY,
                                     'test': '# only a comment\n'})
  with pytest.raises(ValueError, match=r'en_atis-ud-test\.conllu holds no '
                     'sentences'):
    conllu.load_sentences('ud_english_atis', 'test', str(tmp_path / 'raw'),
                          str(tmp_path / 'cache'))


def test_unknown_treebank_and_split_raise_value_error(tmp_path):
  with pytest.raises(ValueError, match='ud_klingon'):
    conllu.load_sentences('ud_klingon', 'train', str(tmp_path), str(tmp_path))
  with pytest.raises(ValueError, match='dev'):
    conllu.load_sentences('ud_english_atis', 'dev', str(tmp_path),
                          str(tmp_path))


@pytest.mark.parametrize('treebank, counts', [
    ('ud_english_lines', {'train': (3457, 64684), 'validation': (1118, 21637),
                          'test': (1121, 19984)}),
    ('ud_english_atis', {'train': (4274, 48655), 'validation': (572, 6644),
                         'test': (586, 6580)}),
])
def test_real_treebanks_have_their_documented_sizes(
    treebank, counts, shared_data_dir, shared_cache_dir):
  if not os.path.isdir(os.path.join(shared_data_dir, treebank)):
    pytest.skip(f'no {treebank} under {shared_data_dir}')
  for split, (sentences, words) in counts.items():
    loaded = conllu.load_sentences(treebank, split, shared_data_dir,
                                   shared_cache_dir)
    assert len(loaded) == sentences, split
    assert sum(len(w) for w, _ in loaded) == words, split
    assert all(len(w) == len(t) for w, t in loaded)
