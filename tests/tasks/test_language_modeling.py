"""Tests of lm_jax.tasks.language_modeling beyond the training loop's
(tests/train/test_loop.py)."""

import os

import numpy as np
import pytest

from lm_jax import tasks


def test_char_vocabulary_covers_a_test_split_with_characters_of_its_own(
    make_tiny_config, shared_data_dir, shared_cache_dir):
  """UD English-LinES' test sentences hold characters ('č', 'á', ...) its
  train and validation sentences lack; encoding them must not fail."""
  if not os.path.isdir(os.path.join(shared_data_dir, 'ud_english_lines')):
    pytest.skip('no ud_english_lines in the shared data')
  config = make_tiny_config(corpus='ud_english_lines', data_dir=shared_data_dir,
                            cache_dir=shared_cache_dir)
  task = tasks.make_task(config)
  task.prepare()
  assert set(task.tokens) == {'train', 'validation', 'test'}
  for split, ids in task.tokens.items():
    assert len(ids) and ids.min() >= 0, split
    assert ids.max() < task.tokenizer.vocab_size, split
  train = set(task.tokenizer.decode(np.unique(task.tokens['train'])))
  test = set(task.tokenizer.decode(np.unique(task.tokens['test'])))
  assert test - train  # the case this test is about


def test_final_evaluation_scores_the_whole_test_split(make_tiny_task):
  """final_eval_full: every test token, not `eval_steps` batches of them
  (the tiny corpus has no test split: its validation stands in)."""
  task = make_tiny_task(eval_steps=1, final_eval_full=True)
  task.tokens['test'] = task.tokens['validation']
  seen = []
  task.final_evaluation(None, slice(None),
                        lambda batches: seen.extend(batches) or {})
  assert sum(b['weights'].sum() for b in seen) == len(task.tokens['test']) - 1
