"""Tests of lm_jax.data.builders.text_corpus: the splits' exact text, local
plain and gzipped files, downloads, and the error for missing data.

No test touches the network: `offline` makes host names unresolvable and
the download test serves the file from memory.
"""

import gzip
import importlib
import io
import os
import pkgutil
import tempfile
import time
import urllib.request

import pytest

from lm_jax.data import builders
from lm_jax.data.builders import glue_tsv, raw_files, text_corpus
from lm_jax.data.builders.raw_files import DataNotFoundError
from lm_jax.data.builders.text_corpus import load_text


def _splits(corpus, raw_dir, cache_dir, names=('train', 'validation')):
  return {name: load_text(corpus, name, str(raw_dir), str(cache_dir))
          for name in names}


def test_tiny_shakespeare_splits_are_the_first_90_and_last_10_percent(
    shared_data_dir, shared_cache_dir):
  path = os.path.join(shared_data_dir, 'tiny_shakespeare', 'input.txt')
  with open(path, encoding='utf-8') as f:
    text = f.read()
  splits = _splits('tiny_shakespeare', shared_data_dir, shared_cache_dir)
  cut = int(len(text) * 0.9)
  # The whole file spans many stored chunks, so this also checks their order.
  assert len(text) > 4 * text_corpus._CHUNK_CHARS
  assert splits['train'] == text[:cut]
  assert splits['validation'] == text[cut:]
  assert splits['train'] + splits['validation'] == text


def test_a_changed_raw_file_or_data_dir_prepares_the_dataset_again(tmp_path):
  """The cache keeps one prepared copy per dataset: it must follow the raw
  file it was built from, not the first one it saw."""
  cache = tmp_path / 'cache'

  def corpus(folder, text):
    (tmp_path / folder / 'tiny_shakespeare').mkdir(parents=True,
                                                   exist_ok=True)
    (tmp_path / folder / 'tiny_shakespeare' / 'input.txt').write_text(text)
    return tmp_path / folder

  first = corpus('a', 'A' * 100)
  assert _splits('tiny_shakespeare', first, cache)['train'] == 'A' * 90
  again = _splits('tiny_shakespeare', first, cache)  # unchanged: reused
  assert again['train'] == 'A' * 90
  other = corpus('b', 'B' * 100)
  assert _splits('tiny_shakespeare', other, cache)['train'] == 'B' * 90
  corpus('b', 'C' * 100)  # the same folder, its file edited
  assert _splits('tiny_shakespeare', other, cache)['validation'] == 'C' * 10


def test_a_changed_parser_prepares_the_dataset_again(tmp_path,
                                                     monkeypatch):
  """A parser fix must reach datasets prepared before it, not only new
  caches."""
  raw = tmp_path / 'raw' / 'tiny_shakespeare'
  raw.mkdir(parents=True)
  (raw / 'input.txt').write_text('a' * 100)
  splits = _splits('tiny_shakespeare', tmp_path / 'raw', tmp_path / 'cache')
  assert splits['train'] == 'a' * 90
  (first,) = (tmp_path / 'cache').glob('parsed-*')

  def prepared_files():  # the lock file beside them is opened each time
    return {p: p.stat().st_mtime_ns for p in first.rglob('*')
            if p.is_file() and p.suffix != '.lock'}

  files = prepared_files()
  # The fix: the builder's module as edited, and what it now produces.
  read = text_corpus.read_text
  monkeypatch.setattr(text_corpus, 'read_text',
                      lambda *args: read(*args).upper())
  fingerprint = raw_files.code_fingerprint
  monkeypatch.setattr(raw_files, 'code_fingerprint',
                      lambda builder: 'edited' + fingerprint(builder))
  splits = _splits('tiny_shakespeare', tmp_path / 'raw', tmp_path / 'cache')
  assert splits['train'] == 'A' * 90
  # A checkout of the older code sharing the cache still finds its copy.
  monkeypatch.undo()
  splits = _splits('tiny_shakespeare', tmp_path / 'raw', tmp_path / 'cache')
  assert splits['train'] == 'a' * 90
  assert len(list((tmp_path / 'cache').glob('parsed-*'))) == 2
  assert prepared_files() == files  # not prepared again


def test_the_code_fingerprint_covers_each_builders_own_parser(monkeypatch):
  corpus = raw_files.code_fingerprint(text_corpus.TextCorpus)
  assert len(corpus) == 64
  assert corpus != raw_files.code_fingerprint(glue_tsv.GlueTsv)
  # Comments and layout are not code.
  with open(text_corpus.__file__, encoding='utf-8') as f:
    source = f.read()
  edited = '# a comment\n' + source.replace('\n\n\n', '\n\n\n\n')
  real_open = open
  monkeypatch.setattr(
      'builtins.open', lambda path, *a, **k: io.StringIO(edited)
      if path == text_corpus.__file__ else real_open(path, *a, **k))
  raw_files.code_fingerprint.cache_clear()  # read the edited source
  assert raw_files.code_fingerprint(text_corpus.TextCorpus) == corpus


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path):
  """Notepad saves UTF-8 with one; it must not become a character of the
  vocabulary, nor glue itself to the first sentence of a parallel corpus."""
  raw = tmp_path / 'raw' / 'tiny_shakespeare'
  raw.mkdir(parents=True)
  (raw / 'input.txt').write_text('\ufeff' + 'A' * 100, encoding='utf-8')
  splits = _splits('tiny_shakespeare', tmp_path / 'raw', tmp_path / 'cache')
  assert splits['train'] == 'A' * 90


def test_gzipped_raw_file_gives_the_same_splits_as_the_plain_one(
    tiny_corpus_dir, tmp_path):
  with open(os.path.join(tiny_corpus_dir, 'tiny_shakespeare', 'input.txt'),
            encoding='utf-8') as f:
    text = f.read()
  raw = tmp_path / 'raw'
  (raw / 'tiny_shakespeare').mkdir(parents=True)
  with gzip.open(raw / 'tiny_shakespeare' / 'input.txt.gz', 'wt',
                 encoding='utf-8') as f:
    f.write(text)
  splits = _splits('tiny_shakespeare', raw, tmp_path / 'cache')
  cut = int(len(text) * 0.9)
  assert splits == {'train': text[:cut], 'validation': text[cut:]}


@pytest.mark.parametrize('damage', ['cut', 'not_gzip', 'bad_deflate',
                                    'not_utf8'])
def test_a_damaged_raw_file_is_one_error_naming_it(tmp_path, damage):
  raw = tmp_path / 'raw'
  (raw / 'tiny_shakespeare').mkdir(parents=True)
  path = raw / 'tiny_shakespeare' / 'input.txt.gz'
  if damage == 'cut':  # a copy or download stopped half-way
    path.write_bytes(gzip.compress(b'First Citizen:\n' * 5000)[:200])
  elif damage == 'not_gzip':
    path.write_bytes(b'no gzip here')
  elif damage == 'bad_deflate':  # zlib's own error, not gzip's
    data = bytearray(gzip.compress(b'First Citizen: hear me speak.\n' * 3000))
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
  else:
    path.write_bytes(gzip.compress(b'caf\xe9\n'))  # Latin-1, not UTF-8
  with pytest.raises(ValueError, match='is not readable as UTF-8 gzip') as e:
    load_text('tiny_shakespeare', 'train', str(raw), str(tmp_path / 'cache'))
  assert str(path) in str(e.value)


def test_corpus_with_split_files_reads_each_split_from_its_file(tmp_path):
  raw = tmp_path / 'raw'
  (raw / 'ptb').mkdir(parents=True)
  texts = {'train': ' the cat sat <unk> \n' * 50,
           'validation': ' a dog ran \n' * 20,
           'test': ' N years ago \n' * 10}
  with gzip.open(raw / 'ptb' / 'ptb.train.txt.gz', 'wt',
                 encoding='utf-8') as f:
    f.write(texts['train'])
  (raw / 'ptb' / 'ptb.valid.txt').write_text(texts['validation'])
  (raw / 'ptb' / 'ptb.test.txt').write_text(texts['test'])
  assert _splits('ptb', raw, tmp_path / 'cache', tuple(texts)) == texts


@pytest.mark.parametrize('corpus, text', [('tiny_shakespeare', 'A'),
                                           ('ptb', '')])
def test_a_raw_file_too_short_for_its_splits_is_a_clear_error(tmp_path,
                                                              corpus, text):
  raw = tmp_path / 'raw'
  files = text_corpus.CORPORA[corpus].files
  for relative in files.values():
    (raw / relative).parent.mkdir(parents=True, exist_ok=True)
    (raw / relative).write_text(text if relative.endswith(('input.txt',
                                                           'train.txt'))
                                else ' a b \n')
  with pytest.raises(ValueError, match='too short'):
    load_text(corpus, 'train', str(raw), str(tmp_path / 'cache'))


def test_missing_raw_file_offline_raises_data_not_found_quickly(
    offline, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  start = time.perf_counter()
  with pytest.raises(DataNotFoundError) as info:
    load_text('tiny_shakespeare', 'train', str(empty), str(tmp_path / 'c'))
  assert time.perf_counter() - start < 20
  assert isinstance(info.value, FileNotFoundError)
  message = str(info.value)
  assert 'tiny_shakespeare/input.txt' in message
  assert str(empty) in message
  assert '\n' not in message


def test_failed_build_leaves_the_cache_usable_once_the_file_exists(
    offline, tiny_corpus_dir, tmp_path):
  cache = tmp_path / 'cache'
  with pytest.raises(DataNotFoundError):
    load_text('tiny_shakespeare', 'train', str(tmp_path), str(cache))
  text = load_text('tiny_shakespeare', 'validation', tiny_corpus_dir,
                   str(cache))
  with open(os.path.join(tiny_corpus_dir, 'tiny_shakespeare', 'input.txt'),
            encoding='utf-8') as f:
    whole = f.read()
  assert text == whole[int(len(whole) * 0.9):]


def test_missing_raw_file_is_downloaded_into_the_cache(monkeypatch, tmp_path):
  text = 'Downloaded text.\n' * 100
  urls = []

  def fake_urlopen(url, *args, **kwargs):
    urls.append(url)
    return io.BytesIO(text.encode('utf-8'))

  monkeypatch.setattr(urllib.request, 'urlopen', fake_urlopen)
  cache = tmp_path / 'cache'
  splits = _splits('tiny_shakespeare', tmp_path / 'no_raw_files', cache)
  cut = int(len(text) * 0.9)
  assert splits == {'train': text[:cut], 'validation': text[cut:]}
  assert urls == [text_corpus.CORPORA['tiny_shakespeare'].urls['all']]
  leftovers = [f for _, _, files in os.walk(cache) for f in files
               if f.endswith('.partial')]
  assert not leftovers


def test_a_download_cut_short_leaves_no_partial_file(monkeypatch, tmp_path):
  class CutShort(io.BytesIO):
    def read(self, *args):
      raise ConnectionResetError('cut short (test)')

  monkeypatch.setattr(urllib.request, 'urlopen',
                      lambda url, *args, **kwargs: CutShort())
  target = tmp_path / 'downloads' / 'input.txt'
  with pytest.raises(ConnectionResetError):
    raw_files.download('https://example.invalid/input.txt', str(target))
  assert os.listdir(tmp_path / 'downloads') == []


def test_unknown_corpus_and_split_raise_value_error(tiny_corpus_dir,
                                                    tiny_cache_dir):
  with pytest.raises(ValueError, match='wikitext'):
    load_text('wikitext', 'train', tiny_corpus_dir, tiny_cache_dir)
  with pytest.raises(ValueError, match='test'):
    load_text('tiny_shakespeare', 'test', tiny_corpus_dir, tiny_cache_dir)


def _builder_classes():
  """Every RawFileBuilder of lm_jax.data.builders: a new one is covered
  without being listed here."""
  for module in pkgutil.iter_modules(builders.__path__):
    importlib.import_module(f'{builders.__name__}.{module.name}')
  return sorted(raw_files.RawFileBuilder.__subclasses__(),
                key=lambda c: c.__name__)


@pytest.mark.parametrize('builder_class', _builder_classes(),
                         ids=lambda c: c.__name__)
def test_making_a_builder_leaves_no_temporary_folder(builder_class,
                                                     monkeypatch, tmp_path):
  """tfds asks its GCS bucket for a dataset not yet prepared, through a
  temporary folder it never removes: one leaked folder a run."""
  temp = tmp_path / 'temp'
  temp.mkdir()
  monkeypatch.setattr(tempfile, 'tempdir', str(temp))
  builder = builder_class(config=builder_class.BUILDER_CONFIGS[0].name,
                          data_dir=str(tmp_path / 'cache'),
                          file_format='array_record')
  assert not builder.is_prepared()
  assert not list(temp.iterdir())
