"""What every lm_jax tfds builder shares: raw files found in the data
directory or downloaded, and preparation under a lock.

A builder's raw files are read from a local data directory
(`<raw_dir>/<relative path>`, plain or `.gz`) or, where the machine has
internet and the file is absent, downloaded from its public URL into the
cache. Missing data fails at once with one line, before tfds starts.
Building needs no TensorFlow. A prepared dataset records the SHA-256 of
the raw files it was built from and is built again when they change (an
edited corpus, another data dir). Each version of the parsing code keeps
its own prepared copies (`code_fingerprint`), so a parser fix takes effect
at once.
"""

from __future__ import annotations

import abc
import ast
import contextlib
import fcntl
import functools
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import urllib.request
import zlib
from typing import Optional

import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from lm_jax import atomic_files


log = logging.getLogger('lm_jax')
_SOURCE_FILE = 'raw_files.json'  # in a prepared dataset's folder


class DataNotFoundError(FileNotFoundError):
  """A dataset's raw file is neither in the data directory nor
  downloadable."""


def read_text(path: str, newline: Optional[str] = None) -> str:
  """A UTF-8 file's text, `.gz` or plain, less a leading byte-order mark
  (an editor's, never content); `newline` as `open` takes it.

  Raises:
    ValueError: the file is damaged (a cut or false gzip, not UTF-8); the
      message names it.
  """
  gzipped = path.endswith('.gz')
  opener = gzip.open if gzipped else open
  try:
    with opener(path, 'rt', encoding='utf-8-sig', newline=newline) as f:
      return f.read()
  except (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError) as e:
    what = 'UTF-8 gzip' if gzipped else 'UTF-8 text'
    raise ValueError(f'{path} is not readable as {what} ({e}); copy or '
                     'download it again') from None


def download(url: str, target: str, timeout: float = 30.0) -> None:
  """Fetches `url` to `target` (whole: no partial file is left)."""
  os.makedirs(os.path.dirname(target), exist_ok=True)
  with urllib.request.urlopen(url, timeout=timeout) as response, \
      atomic_files.replacing(target, 'wb') as f:
    shutil.copyfileobj(response, f)


def local_file(raw_dir: str, relative: str) -> Optional[str]:
  """`raw_dir/relative` or its `.gz`, whichever exists, else None."""
  for candidate in (relative, relative + '.gz'):
    path = os.path.join(raw_dir, candidate)
    if raw_dir and os.path.exists(path):
      return path
  return None


class LocalDatasetInfo(tfds.core.DatasetInfo):
  """A builder's `DatasetInfo`, which never asks tfds's GCS bucket for
  precomputed metadata.

  Our corpora are not on the bucket, and tfds 4.9.10 makes a temporary
  folder for the answer before asking and never removes it: every builder
  constructed before its dataset is prepared left an empty `/tmp/tmp*tfds`.
  """

  def initialize_from_bucket(self) -> None:
    pass


class RawFileBuilder(tfds.core.GeneratorBasedBuilder,
                     skip_registration=True):
  """A tfds builder whose examples come from raw files.

  Subclasses name their datasets in `SOURCES` (config name -> an object
  with `files` and `urls`: key -> path relative to the data directory, and
  key -> public URL) and make one builder config per entry.

  Args:
    raw_dir: folder holding the raw files.
    data_dir: where tfds writes the prepared dataset.
    download_dir: where raw files are downloaded to (None:
      `data_dir`/downloads).
  """

  SOURCES: dict = {}

  def __init__(self, *, raw_dir: str = '', data_dir: str,
               download_dir: Optional[str] = None, **kwargs):
    self._raw_dir = raw_dir
    self._download_dir = download_dir or os.path.join(data_dir, 'downloads')
    super().__init__(data_dir=data_dir, **kwargs)

  @property
  def source(self):
    """This config's entry of `SOURCES`."""
    return self.SOURCES[self.builder_config.name]

  @abc.abstractmethod
  def _info(self) -> LocalDatasetInfo:
    """The dataset's features."""

  def existing_raw_file(self, key: str) -> Optional[str]:
    """The raw file for `key` in the data dir or downloaded earlier, or
    None; never downloads."""
    relative = self.source.files[key]
    target = os.path.join(self._download_dir, relative)
    return local_file(self._raw_dir, relative) or (
        target if os.path.exists(target) else None)

  def raw_fingerprint(self) -> Optional[dict]:
    """key -> SHA-256 of each raw file, or None where one is not at hand
    (a prepared copy is then all there is to go by)."""
    out = {}
    for key in sorted(self.source.files):
      path = self.existing_raw_file(key)
      if path is None:
        return None
      digest = hashlib.sha256()
      with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
          digest.update(block)
      out[key] = digest.hexdigest()
    return out

  def raw_file(self, key: str) -> str:
    """The local raw file for `key`, downloading it first if need be."""
    existing = self.existing_raw_file(key)
    if existing:
      return existing
    relative = self.source.files[key]
    target = os.path.join(self._download_dir, relative)
    try:
      download(self.source.urls[key], target)
    except OSError as e:
      raise DataNotFoundError(
          f'{relative} is not under the data dir '
          f'{self._raw_dir or "(unset)"} and could not be downloaded '
          f'({type(e).__name__}); point --config.data_dir or LM_JAX_DATA '
          f'at a folder holding {relative}') from None
    return target


@functools.cache  # the code a process runs does not change under it
def code_fingerprint(builder_class: type[RawFileBuilder]) -> str:
  """SHA-256 of the code of the lm_jax modules that turn raw files into the
  records of `builder_class` (its own module and those of its lm_jax base
  classes), comments and layout left out."""
  digest = hashlib.sha256()
  modules = sorted({c.__module__ for c in builder_class.__mro__
                    if c.__module__.startswith('lm_jax.')})
  for module in modules:
    with open(sys.modules[module].__file__, encoding='utf-8') as f:
      digest.update(ast.dump(ast.parse(f.read())).encode())
  return digest.hexdigest()


def prepared(builder_class: type[RawFileBuilder], name: str, raw_dir: str,
             cache_dir: str) -> RawFileBuilder:
  """The builder of dataset `name`, prepared as array_record on first use.

  Raises:
    DataNotFoundError: a raw file is missing and not downloadable.
  """
  # In a folder of the parsing code's version: a copy built by older code
  # would otherwise outlive a parser fix, and checkouts of two versions
  # sharing a cache would each delete the other's copy, which a run may be
  # reading. A few MB a copy; unused ones can be deleted. Downloads are
  # shared.
  data_dir = os.path.join(cache_dir,
                          f'parsed-{code_fingerprint(builder_class)[:16]}')
  os.makedirs(data_dir, exist_ok=True)
  # Several processes (tests, sweeps) may build the same dataset at once.
  # The builder reads the dataset's metadata when it is made, so it is made
  # under the lock, after any other process has finished preparing.
  lock_path = os.path.join(data_dir, f'.{builder_class.name}.{name}.lock')
  with open(lock_path, 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    make = lambda: builder_class(  # noqa: E731
        config=name, raw_dir=raw_dir, data_dir=data_dir,
        download_dir=os.path.join(cache_dir, 'downloads'),
        file_format='array_record')
    builder = make()
    current = builder.raw_fingerprint()
    if builder.is_prepared():
      recorded = _read_json(os.path.join(builder.data_dir, _SOURCE_FILE))
      if current is not None and recorded != current:
        log.info('%s/%s: the raw files differ from those it was prepared '
                 'from; preparing it again', builder_class.name, name)
        shutil.rmtree(builder.data_dir)
        builder = make()
    if not builder.is_prepared():
      for key in builder.source.files:  # Missing data fails before tfds.
        builder.raw_file(key)
      tfds.disable_progress_bar()
      with contextlib.redirect_stdout(io.StringIO()):  # tfds's banner
        builder.download_and_prepare()
      if current is None:  # the raw files were downloaded just now
        current = builder.raw_fingerprint()
      atomic_files.write_text(os.path.join(builder.data_dir, _SOURCE_FILE),
                              json.dumps(current))
  return builder


def read_split(builder: RawFileBuilder, split: str) -> dict[str, list]:
  """Every record of one split of a prepared dataset, as columns.

  tfds's data source decodes record by record into dicts of NumPy arrays;
  the whole SST-2 training split then takes seconds, at the start of every
  run. Its records are `tf.train.Example` protos, read here straight into
  lists, about three times as fast (SST-2's training split: 0.5 s).

  Returns:
    Feature name -> one entry a record, in the split's order: the list of
    the feature's stored values (bytes for text, ints for numbers and class
    ids; a scalar's list holds one value, an empty sequence's none).
  """
  source = builder.as_data_source(split=split)
  records = (source.data_source.__getitems__(range(len(source)))
             if len(source) else [])
  columns = {name: [] for name in builder.info.features.keys()}
  for record in records:
    features = tf_example_pb2.Example.FromString(record).features.feature
    for name, column in columns.items():
      kind = features[name].WhichOneof('kind')
      column.append(list(getattr(features[name], kind).value) if kind else [])
  return columns


def _read_json(path: str) -> Optional[dict]:
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (OSError, ValueError):
    return None
