"""What tasks on labelled sentences share (tagging, classification): padded
batches of each split's examples, epochs, and the loss and accuracy of the
model's logits against weighted targets."""

from __future__ import annotations

import abc
from typing import Any

import flax.linen as nn

from lm_jax import losses
from lm_jax.data import padded_batches
from lm_jax.tasks.base import Metrics, Task

SPECIALS = ('<pad>', '<unk>')  # '<pad>' is id 0, as padding must be
SENTENCE_MARKERS = ('<s>', '</s>')  # a sentence's start and end


class SentenceTask(Task):
  """A task whose `prepare` sets `self.examples` (split name ->
  `padded_batches.Examples`, 'train' and 'validation' at least) and
  `self._model`.

  Config keys read here: batch_size, seed, eval_steps, length_multiple,
  length_bucketing.
  """

  examples: dict
  _model: nn.Module

  @property
  def model(self) -> nn.Module:
    return self._model

  @abc.abstractmethod
  def logits(self, params: Any, batch: dict, rng, train: bool):
    """The model's logits for `batch`, the shape of its 'targets' plus the
    classes."""

  def loss(self, params: Any, batch: dict, rng, train: bool) -> Metrics:
    logits = self.logits(params, batch, rng, train)
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

  def batches(self, split: str, rows: slice, max_batches: int):
    """Every example of `split` once, or a fixed sample of `max_batches`
    batches (the same at every call)."""
    cfg = self.config
    return padded_batches.eval_batches(
        self.examples[split], cfg.batch_size, cfg.length_multiple, rows,
        max_batches, seed=cfg.seed + 1)

  def eval_batches(self, rows: slice, full: bool):
    return self.batches('validation', rows,
                        0 if full else self.config.eval_steps)
