"""Sentence classification (SST-2 sentiment): one label per sentence.

Reported figures: `eval_accuracy`, the sentence accuracy over the whole
validation split. GLUE's test splits are unlabelled, so there is no test
figure.
"""

from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import numpy as np

from lm_jax import losses
from lm_jax.data import padded_batches
from lm_jax.data.builders.glue_tsv import DATASETS, load_examples
from lm_jax.data.tokenizers import WordTokenizer
from lm_jax.models.classifier import RecurrentClassifier
from lm_jax.tasks.base import Metrics, Task

SPECIALS = ('<pad>', '<unk>')  # '<pad>' is id 0, as padding must be


class ClassificationTask(Task):
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

  @property
  def model(self) -> nn.Module:
    return self._model

  def dummy_batch(self) -> dict:
    shape = (1, self.config.length_multiple)
    return {'inputs': np.zeros(shape, np.int32),
            'lengths': np.zeros(shape[:1], np.int32),
            'targets': np.zeros(shape[:1], np.int32),
            'weights': np.zeros(shape[:1], np.float32)}

  def loss(self, params: Any, batch: dict, rng, train: bool) -> Metrics:
    logits = self.model.apply({'params': params}, batch['inputs'],
                              batch['lengths'], train=train,
                              rngs={'dropout': rng})
    return {
        'loss': losses.cross_entropy(logits, batch['targets'],
                                     batch['weights']),
        'accuracy': losses.accuracy(logits, batch['targets'],
                                    batch['weights']),
    }

  @property
  def steps_per_epoch(self) -> int:
    return (padded_batches.num_examples(self.examples['train'])
            // self.config.batch_size)

  def train_stream(self, rows: slice):
    cfg = self.config
    return padded_batches.train_stream(
        self.examples['train'], cfg.batch_size, cfg.seed, cfg.length_multiple,
        cfg.length_bucketing, rows)

  def eval_batches(self, rows: slice, full: bool):
    cfg = self.config
    # The periodic sample is the same at every evaluation.
    return padded_batches.eval_batches(
        self.examples['validation'], cfg.batch_size, cfg.length_multiple,
        rows, 0 if full else cfg.eval_steps, seed=cfg.seed + 1)
