"""What the training loop needs from a task: a model, a loss and data.

Tasks differ by model, loss and data, never by training loop: the loop in
`lm_jax.train.loop` drives any `Task`.
"""

from __future__ import annotations

import abc
from typing import Any, Iterable, Iterator

import flax.linen as nn
import jax
import ml_collections

Array = jax.Array
# name -> (sum, count); averages are sum / count after summing over devices,
# micro-batches and steps.
Metrics = dict[str, tuple[Array, Array]]


class _TaskBase(abc.ABC):
  """What every task shares: its config, data loading and saved assets.

  Args:
    config: the run config.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  @abc.abstractmethod
  def prepare(self) -> None:
    """Loads the data and builds the vocabulary and the model; writes
    nothing, so bad input fails before the workdir is touched."""

  def save_assets(self, workdir: str) -> None:
    """Writes what sampling needs besides checkpoints (tokenizer, model)."""


class Task(_TaskBase):
  """A task trained by gradient steps."""

  @property
  @abc.abstractmethod
  def model(self) -> nn.Module:
    """The model, available after `prepare`."""

  @abc.abstractmethod
  def dummy_batch(self) -> dict:
    """A small batch with the real shapes but the batch size, for init."""

  @abc.abstractmethod
  def loss(self, params: Any, batch: dict, rng: Array, train: bool) -> Metrics:
    """Summed metrics of `batch`; the 'loss' entry is what is minimised."""

  @abc.abstractmethod
  def train_stream(self, rows: slice) -> Iterator[dict]:
    """Endless training batches (this host's `rows` of each global batch).

    The iterator has `get_state()` / `set_state()` for checkpointing.
    """

  @abc.abstractmethod
  def eval_batches(self, rows: slice, full: bool) -> Iterable[dict]:
    """Validation batches: `eval_steps` of them, or the whole split."""

  def summarize(self, averages: dict[str, float]) -> dict[str, float]:
    """Adds derived figures (perplexity, bits per token) to averages."""
    return averages


class CountingTask(_TaskBase):
  """A gradient-free task (n-gram counts): estimation replaces training.

  It runs through the same entry point, config and workdir layout as a
  `Task`, and writes the same metrics keys (`eval_loss`, `eval_perplexity`).
  """

  @abc.abstractmethod
  def estimate(self) -> None:
    """Fits the model to the training split."""

  @property
  @abc.abstractmethod
  def eval_splits(self) -> tuple[str, ...]:
    """The splits `evaluate` can score ('validation' first)."""

  @abc.abstractmethod
  def evaluate(self, split: str) -> dict[str, float]:
    """Mean 'loss' (nats per token) and derived figures on one split."""

  @abc.abstractmethod
  def save_assets(self, workdir: str) -> None:
    """Writes the estimated model into the workdir."""
