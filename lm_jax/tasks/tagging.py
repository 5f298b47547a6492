"""Sequence labelling: a tag for every word (UPOS tagging on UD treebanks).

Reported figures: `eval_accuracy`, the token accuracy over every real word
of the validation split, and after the last step `test_accuracy` and
`test_loss` on the test split.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

from lm_jax import atomic_files
from lm_jax.data import padded_batches
from lm_jax.data.builders.conllu import (UPOS_TAGS, load_sentences,
                                         word_form)
from lm_jax.data.tokenizers import WordTokenizer
from lm_jax.models.elmo import with_elmo
from lm_jax.models.tagger import RecurrentTagger
from lm_jax.tasks import pretrained
from lm_jax.tasks.sentences import SPECIALS, SentenceTask


def word_vocabulary(sentences: Sequence[Sequence[str]], min_count: int = 1
                    ) -> WordTokenizer:
  """Words of `sentences` seen `min_count` times, after `SPECIALS`."""
  text = '\n'.join(' '.join(map(word_form, words)) for words in sentences)
  return WordTokenizer.from_text(text, min_count=min_count, specials=SPECIALS,
                                 eos='')


def char_vocabulary(sentences: Sequence[Sequence[str]]) -> WordTokenizer:
  """Every character of the words of `sentences`, after `SPECIALS`."""
  text = ' '.join(' '.join(''.join(words)) for words in sentences)
  return WordTokenizer.from_text(text, specials=SPECIALS, eos='')


def encode_words(tokenizer: WordTokenizer, words: Sequence[str]
                 ) -> np.ndarray:
  """int32 `[len(words)]` ids, one per word."""
  return tokenizer.encode(' '.join(map(word_form, words)))


def word_chars(chars: WordTokenizer, word: str, width: int) -> np.ndarray:
  """int32 `[width]` character ids of `word`, 0-padded; a longer word
  keeps its first `width // 2` characters and its last `width - width //
  2` (prefix and suffix are what tell a word's class)."""
  ids = chars.encode(' '.join(word))
  if len(ids) > width:
    head = width // 2
    ids = np.concatenate([ids[:head], ids[len(ids) - (width - head):]])
  return np.pad(ids, (0, width - len(ids)))


class TaggingTask(SentenceTask):
  """A bi-LSTM tagger trained on a treebank's UPOS tags.

  With `elmo_bilm`, the workdir of a bi-LM (task 'bilm', e.g. trained on
  the treebank's own training sentences), the words also get ELMo vectors,
  the learned mix of that bi-LM's frozen layers, beside their embeddings
  and character features (Peters et al. 2018); the word vocabulary is the
  bi-LM's.

  Config keys read here: corpus (a treebank of `conllu.TREEBANKS`),
  data_dir, cache_dir, model ('tagger'), min_count, elmo_bilm,
  frozen_params, embed_dim,
  hidden_size, num_layers, cell, dropout_rate, word_dropout_rate,
  forget_bias, fused_lstm, char_encoder, char_embed_dim, char_features,
  char_kernel_size, max_word_chars, compute_dtype, batch_size, seed,
  eval_steps, final_eval_full, length_multiple, length_bucketing.
  """

  tags = UPOS_TAGS

  def prepare(self) -> None:
    cfg = self.config
    if cfg.model != 'tagger':
      raise ValueError(f"task 'tag' trains model 'tagger', not "
                       f'{cfg.model!r}')
    splits = {split: load_sentences(cfg.corpus, split, cfg.data_dir,
                                    cfg.cache_dir)
              for split in ('train', 'validation', 'test')}
    train_words = [words for words, _ in splits['train']]
    elmo = None
    if cfg.elmo_bilm:
      self.tokenizer, elmo = pretrained.elmo_for(cfg)
    else:
      self.tokenizer = word_vocabulary(train_words, cfg.min_count)
    self.char_tokenizer = (char_vocabulary(train_words)
                  if cfg.char_encoder != 'none' else None)
    self.examples = {split: self._examples(sentences)
                     for split, sentences in splits.items()}
    self._model = RecurrentTagger(
        vocab_size=self.tokenizer.vocab_size, num_tags=len(self.tags),
        embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_size,
        num_layers=cfg.num_layers, cell_type=cfg.cell,
        dropout_rate=cfg.dropout_rate,
        word_dropout_rate=cfg.word_dropout_rate,
        unk_id=self.tokenizer.unk_id, char_encoder=cfg.char_encoder,
        char_vocab_size=(self.char_tokenizer.vocab_size
                         if self.char_tokenizer else 0),
        char_embed_dim=cfg.char_embed_dim, char_features=cfg.char_features,
        char_kernel_size=cfg.char_kernel_size, forget_bias=cfg.forget_bias,
        extra_features_dim=2 * elmo.config.hidden_size if elmo else 0,
        fused_lstm=cfg.fused_lstm, dtype=cfg.compute_dtype)
    if elmo:
      self._model = with_elmo(self._model, elmo)

  def pretrained_params(self, params: Any) -> Any:
    if self.config.elmo_bilm:
      return pretrained.elmo_weights(params, self.config.elmo_bilm)
    return params

  def _examples(self, sentences) -> padded_batches.Examples:
    """Ragged columns: word ids, tag ids and (with a character encoder)
    the characters of each word."""
    tag_ids = {tag: i for i, tag in enumerate(self.tags)}
    examples = {
        'inputs': [encode_words(self.tokenizer, words)
                   for words, _ in sentences],
        'targets': [np.array([tag_ids[t] for t in tags], np.int32)
                    for _, tags in sentences]}
    if self.char_tokenizer is not None:
      width, known = self.config.max_word_chars, {}
      for words, _ in sentences:
        for word in words:
          if word not in known:
            known[word] = word_chars(self.char_tokenizer, word, width)
      examples['chars'] = [
          np.stack([known[w] for w in words]).astype(np.int32)
          if words else np.zeros((0, width), np.int32)
          for words, _ in sentences]
    return examples

  def save_assets(self, workdir: str) -> None:
    self.tokenizer.save(os.path.join(workdir, 'tokenizer.json'))
    if self.char_tokenizer is not None:
      self.char_tokenizer.save(os.path.join(workdir, 'char_tokenizer.json'))
    atomic_files.write_text(os.path.join(workdir, 'tags.json'),
                            json.dumps(list(self.tags)))

  def dummy_batch(self) -> dict:
    shape = (1, self.config.length_multiple)
    batch = {'inputs': np.zeros(shape, np.int32),
             'lengths': np.zeros(shape[:1], np.int32),
             'targets': np.zeros(shape, np.int32),
             'weights': np.zeros(shape, np.float32)}
    if self.char_tokenizer is not None:
      batch['chars'] = np.zeros(shape + (self.config.max_word_chars,),
                                np.int32)
    return batch

  def logits(self, params: Any, batch: dict, rng, train: bool):
    return self.model.apply(
        {'params': params}, batch['inputs'], batch['lengths'],
        chars=batch.get('chars'), train=train, rngs={'dropout': rng})

  def final_evaluation(self, params, rows, evaluate) -> dict[str, float]:
    del params  # `evaluate` holds the trained parameters
    # Like the last validation pass: the whole split unless final_eval_full
    # is off (smoke tests), then an `eval_steps` sample.
    sample = 0 if self.config.final_eval_full else self.config.eval_steps
    return {f'test_{k}': v
            for k, v in evaluate(self.batches('test', rows, sample)).items()}
