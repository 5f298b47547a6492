"""What every lm_jax tfds builder shares: raw files found in the data
directory or downloaded, and preparation under a lock.

A builder's raw files are read from a local data directory
(`<raw_dir>/<relative path>`, plain or `.gz`) or, where the machine has
internet and the file is absent, downloaded from its public URL into the
cache. Missing data fails at once with one line, before tfds starts.
Building needs no TensorFlow.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import gzip
import io
import os
import shutil
import urllib.request
from typing import Optional

import tensorflow_datasets as tfds


class DataNotFoundError(FileNotFoundError):
  """A dataset's raw file is neither in the data directory nor
  downloadable."""


def read_text(path: str, newline: Optional[str] = None) -> str:
  """A UTF-8 file's text, `.gz` or plain; `newline` as `open` takes it."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt', encoding='utf-8', newline=newline) as f:
    return f.read()


def download(url: str, target: str, timeout: float = 30.0) -> None:
  """Fetches `url` to `target` (atomically: no partial file is left)."""
  os.makedirs(os.path.dirname(target), exist_ok=True)
  partial = target + '.partial'
  with urllib.request.urlopen(url, timeout=timeout) as response, \
      open(partial, 'wb') as f:
    shutil.copyfileobj(response, f)
  os.replace(partial, target)


def local_file(raw_dir: str, relative: str) -> Optional[str]:
  """`raw_dir/relative` or its `.gz`, whichever exists, else None."""
  for candidate in (relative, relative + '.gz'):
    path = os.path.join(raw_dir, candidate)
    if raw_dir and os.path.exists(path):
      return path
  return None


class RawFileBuilder(tfds.core.GeneratorBasedBuilder,
                     skip_registration=True):
  """A tfds builder whose examples come from raw files.

  Subclasses name their datasets in `SOURCES` (config name -> an object
  with `files` and `urls`: key -> path relative to the data directory, and
  key -> public URL) and make one builder config per entry.

  Args:
    raw_dir: folder holding the raw files.
    data_dir: where tfds writes the prepared dataset (and downloads).
  """

  SOURCES: dict = {}

  def __init__(self, *, raw_dir: str = '', data_dir: str, **kwargs):
    self._raw_dir = raw_dir
    self._download_dir = os.path.join(data_dir, 'downloads')
    super().__init__(data_dir=data_dir, **kwargs)

  @property
  def source(self):
    """This config's entry of `SOURCES`."""
    return self.SOURCES[self.builder_config.name]

  @abc.abstractmethod
  def _info(self) -> tfds.core.DatasetInfo:
    """The dataset's features."""

  def raw_file(self, key: str) -> str:
    """The local raw file for `key`, downloading it first if need be."""
    relative = self.source.files[key]
    local = local_file(self._raw_dir, relative)
    if local:
      return local
    target = os.path.join(self._download_dir, relative)
    if not os.path.exists(target):
      try:
        download(self.source.urls[key], target)
      except OSError as e:
        raise DataNotFoundError(
            f'{relative} is not under the data dir '
            f'{self._raw_dir or "(unset)"} and could not be downloaded '
            f'({type(e).__name__}); point --config.data_dir or LM_JAX_DATA '
            f'at a folder holding {relative}') from None
    return target


def prepared(builder_class: type[RawFileBuilder], name: str, raw_dir: str,
             cache_dir: str) -> RawFileBuilder:
  """The builder of dataset `name`, prepared as array_record on first use.

  Raises:
    DataNotFoundError: a raw file is missing and not downloadable.
  """
  os.makedirs(cache_dir, exist_ok=True)
  # Several processes (tests, sweeps) may build the same dataset at once.
  # The builder reads the dataset's metadata when it is made, so it is made
  # under the lock, after any other process has finished preparing.
  lock_path = os.path.join(cache_dir, f'.{builder_class.name}.{name}.lock')
  with open(lock_path, 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    builder = builder_class(config=name, raw_dir=raw_dir, data_dir=cache_dir,
                            file_format='array_record')
    if not builder.is_prepared():
      for key in builder.source.files:  # Missing data fails before tfds.
        builder.raw_file(key)
      tfds.disable_progress_bar()
      with contextlib.redirect_stdout(io.StringIO()):  # tfds's banner
        builder.download_and_prepare()
  return builder
