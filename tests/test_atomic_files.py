"""Tests of lm_jax.atomic_files: a file is replaced whole or not at all."""

import os
import stat
import time

import pytest

from lm_jax import atomic_files


def test_the_new_content_replaces_the_old_and_nothing_is_left_beside(
    tmp_path):
  path = str(tmp_path / 'a.json')
  atomic_files.write_text(path, 'old')
  atomic_files.write_text(path, 'néw')
  with open(path, encoding='utf-8') as f:
    assert f.read() == 'néw'
  assert os.listdir(tmp_path) == ['a.json']


def test_a_reader_sees_the_old_file_until_the_block_ends(tmp_path):
  path = tmp_path / 'a.bin'
  path.write_bytes(b'old')
  with atomic_files.replacing(str(path), 'wb') as f:
    f.write(b'new, half written')
    f.flush()
    assert path.read_bytes() == b'old'
  assert path.read_bytes() == b'new, half written'


def test_an_error_in_the_block_keeps_the_old_file_and_removes_the_new(
    tmp_path):
  path = tmp_path / 'a.txt'
  path.write_text('old')
  with pytest.raises(KeyboardInterrupt):
    with atomic_files.replacing(str(path)) as f:
      f.write('part')
      raise KeyboardInterrupt
  assert path.read_text() == 'old'
  assert os.listdir(tmp_path) == ['a.txt']


def test_the_new_file_has_the_usual_permissions_not_private_ones(tmp_path):
  # Cached vocabularies and downloads are shared between users.
  umask = os.umask(0o022)
  try:
    path = str(tmp_path / 'vocab.txt')
    atomic_files.write_text(path, 'a\n')
  finally:
    os.umask(umask)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_a_full_disk_names_the_target_and_keeps_the_old_file(tmp_path,
                                                             monkeypatch):
  path = tmp_path / 'config.json'
  path.write_text('old')

  def full(fd):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(atomic_files.os, 'fsync', full)
  with pytest.raises(OSError) as error:
    atomic_files.write_text(str(path), 'new')
  assert error.value.errno == 28 and error.value.filename == str(path)
  assert path.read_text() == 'old'
  assert os.listdir(tmp_path) == ['config.json']


def test_other_errors_of_the_block_pass_unchanged(tmp_path):
  with pytest.raises(ConnectionResetError):
    with atomic_files.replacing(str(tmp_path / 'a'), 'wb'):
      raise ConnectionResetError(104, 'Connection reset by peer')
  assert not os.listdir(tmp_path)


def test_a_failure_names_the_target_not_the_temporary(tmp_path):
  with pytest.raises(OSError) as error:
    atomic_files.write_text(str(tmp_path / 'missing' / 'a.txt'), 'x')
  assert error.value.filename == str(tmp_path / 'missing' / 'a.txt')


def test_temporaries_a_killed_writer_left_go_once_old(tmp_path):
  """A process killed mid-write leaves its temporary: the next write of the
  same file removes it once nothing has touched it for an hour; a younger
  one may be another writer's, at work, and stays."""
  path = tmp_path / 'metrics[1].jsonl'  # glob characters in the name
  abandoned = tmp_path / 'metrics[1].jsonl.123-abcd.partial'
  live = tmp_path / 'metrics[1].jsonl.456-ef01.partial'
  another_files = tmp_path / 'config.json.123-abcd.partial'
  for old in (abandoned, another_files):
    old.touch()
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
  live.touch()
  atomic_files.write_text(str(path), 'new')
  assert sorted(os.listdir(tmp_path)) == sorted(
      [path.name, live.name, another_files.name])
