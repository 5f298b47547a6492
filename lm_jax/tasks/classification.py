"""Sentence classification (SST-2 sentiment): one label per sentence.

Reported figures: `eval_accuracy`, the sentence accuracy over the whole
validation split. GLUE's test splits are unlabelled, so there is no test
figure.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lm_jax.data.builders.glue_tsv import DATASETS, load_examples
from lm_jax.data.tokenizers import WordTokenizer
from lm_jax.models.classifier import RecurrentClassifier
from lm_jax.tasks.sentences import SPECIALS, SentenceTask

class ClassificationTask(SentenceTask):
  """A recurrent classifier trained on a GLUE single-sentence dataset.

  Sentences are white-space tokenised (GLUE's are already tokenised); the
  vocabulary is the training split's words seen `min_count` times.

  Config keys read here: corpus (a dataset of `glue_tsv.DATASETS`),
  data_dir, cache_dir, model ('classifier'), min_count, embed_dim,
  hidden_size, num_layers, bidirectional, cell, pooling, mlp_dim,
  dropout_rate, word_dropout_rate, forget_bias, compute_dtype, batch_size,
  seed, eval_steps, length_multiple, length_bucketing.
  """

  def prepare(self) -> None:
    cfg = self.config
    if cfg.model != 'classifier':
      raise ValueError(f"task 'classify' trains model 'classifier', not "
                       f'{cfg.model!r}')
    splits = {split: load_examples(cfg.corpus, split, cfg.data_dir,
                                   cfg.cache_dir)
              for split in ('train', 'validation')}
    self.tokenizer = WordTokenizer.from_text(
        '\n'.join(splits['train'][0]), min_count=cfg.min_count,
        specials=SPECIALS, eos='')
    self.examples = {
        split: {'inputs': [self.tokenizer.encode(s) for s in sentences],
                'targets': labels}
        for split, (sentences, labels) in splits.items()}
    self._model = RecurrentClassifier(
        vocab_size=self.tokenizer.vocab_size,
        num_classes=DATASETS[cfg.corpus].num_classes,
        embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_size,
        num_layers=cfg.num_layers, bidirectional=cfg.bidirectional,
        cell_type=cfg.cell, pooling=cfg.pooling, mlp_dim=cfg.mlp_dim,
        dropout_rate=cfg.dropout_rate,
        word_dropout_rate=cfg.word_dropout_rate,
        unk_id=self.tokenizer.unk_id, forget_bias=cfg.forget_bias,
        dtype=cfg.compute_dtype)

  def save_assets(self, workdir: str) -> None:
    self.tokenizer.save(os.path.join(workdir, 'tokenizer.json'))

  def dummy_batch(self) -> dict:
    shape = (1, self.config.length_multiple)
    return {'inputs': np.zeros(shape, np.int32),
            'lengths': np.zeros(shape[:1], np.int32),
            'targets': np.zeros(shape[:1], np.int32),
            'weights': np.zeros(shape[:1], np.float32)}

  def logits(self, params: Any, batch: dict, rng, train: bool):
    return self.model.apply({'params': params}, batch['inputs'],
                            batch['lengths'], train=train,
                            rngs={'dropout': rng})
