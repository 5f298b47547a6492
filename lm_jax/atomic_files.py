"""Files replaced whole: a reader, or a process killed mid-write, finds the
old file or the new one, never part of one.

The new content goes to a temporary file beside the target (same folder,
so the rename stays on one file system), which is flushed to disk and then
renamed over the target. Used for everything lm_jax writes that a later
launch reads back: a run's `config.json` and `metrics.jsonl`, tokenizers,
cached vocabularies and downloads. A temporary that a killed process left
is removed by a later write of the same file, once it is an hour old. And
a run's folder is written by one process at a time (`held_exclusively`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pathlib
import secrets
import time
from typing import IO, Iterator, Optional, Union

# Writers touch their temporary files as they write; one untouched this
# long was left by a process killed mid-write.
ABANDONED_AFTER_S = 3600


def remove_abandoned(folder: Union[str, os.PathLike], pattern: str) -> None:
  """Deletes the temporary files matching `pattern` (a glob) in `folder`
  that nothing has written to for `ABANDONED_AFTER_S` seconds: what killed
  processes left. Younger ones may belong to a live writer and stay."""
  cutoff = time.time() - ABANDONED_AFTER_S
  for path in pathlib.Path(folder).glob(pattern):
    try:
      if path.stat().st_mtime < cutoff:
        path.unlink()
    except OSError:  # removed by another process, or not ours to remove
      pass


@contextlib.contextmanager
def replacing(path: str, mode: str = 'w', encoding: Optional[str] = None
              ) -> Iterator[IO]:
  """Opens a file whose content replaces `path` when the block ends.

  If the block raises, `path` is left as it was and the temporary file is
  removed. Errors of the file operations (opening, writing, flushing,
  renaming: a full disk, say) name `path`, not the temporary.

  Args:
    path: the file to replace (or create).
    mode: 'w' (text) or 'wb' (bytes).
    encoding: text encoding; None for bytes.

  Yields:
    the open temporary file.
  """
  if mode not in ('w', 'wb'):
    raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
  folder, name = os.path.split(path)
  remove_abandoned(folder or '.', f'{glob.escape(name)}.*.partial')
  # Unique per process and call: concurrent writers never share it. 'x'
  # (not mkstemp) so the file gets the usual permissions, not 0600.
  partial = f'{path}.{os.getpid()}-{secrets.token_hex(4)}.partial'
  try:
    try:
      f = open(partial, mode.replace('w', 'x'), encoding=encoding)
    except OSError as e:
      raise OSError(e.errno, e.strerror, path) from None
    try:
      with f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
      # A failed write (full disk, quota) is a bare OSError with an errno
      # and no file name; what else the block raises (a download's
      # connection errors, its own subclasses) passes unchanged.
      if type(e) is not OSError or e.errno is None or e.filename:
        raise
      raise OSError(e.errno, e.strerror, path) from None
    try:
      os.replace(partial, path)
    except OSError as e:
      raise OSError(e.errno, e.strerror, path) from None
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(partial)


@contextlib.contextmanager
def held_exclusively(folder: str) -> Iterator[None]:
  """Holds `folder` (made if need be) against other holders until the
  block ends, or the process does.

  Raises:
    BlockingIOError: another process holds it; the message names it.
  """
  os.makedirs(folder, exist_ok=True)
  fd = os.open(folder, os.O_RDONLY)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise BlockingIOError(
          f'another process is training in {folder}; wait for it to end, '
          'or use another --workdir') from None
    yield
  finally:
    os.close(fd)  # which releases the lock


def write_text(path: str, text: str) -> None:
  """Replaces `path` by `text` (UTF-8), whole."""
  with replacing(path, encoding='utf-8') as f:
    f.write(text)
