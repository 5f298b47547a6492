"""What the training loop needs from a task: a model, a loss and data.

Tasks differ by model, loss and data, never by training loop: the loop in
`lm_jax.train.loop` drives any `Task`.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Iterable, Iterator, Optional

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

  Attributes:
    output_dir: where `final_evaluation` may write result files (word
      vectors); the loop sets it to the workdir on the first host only.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.output_dir: Optional[str] = None

  @abc.abstractmethod
  def prepare(self) -> None:
    """Loads the data and builds the vocabulary and the model; writes
    nothing, so bad input fails before the workdir is touched."""

  def save_assets(self, workdir: str) -> None:
    """Writes what sampling needs besides checkpoints (tokenizer, model),
    and nothing else: the loop also writes them elsewhere to compare."""


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

  def init_carry(self, batch_size: int) -> Any:
    """The state one batch hands to the next, at the start of a stream.

    A recurrent LM trained by truncated back-propagation through time
    carries its hidden state from batch to batch: a pytree of arrays whose
    leading dimension is the batch's. Tasks whose batches are independent
    carry nothing, `()`.
    """
    del batch_size
    return ()

  def loss_and_carry(self, params: Any, batch: dict, rng: Array, train: bool,
                     carry: Any) -> tuple[Metrics, Any]:
    """`loss` of a batch that starts from `carry`, and the carry it leaves.

    The loop calls this one; only tasks with a carry override it.
    """
    return self.loss(params, batch, rng, train), carry

  def pretrained_params(self, params: Any) -> Any:
    """The fresh parameters of a new run, with any pre-trained parts put
    in (ELMo's bi-LM, ULMFiT's LM encoder, an imported checkpoint).

    Called once, before the first step; never on a resumed run, whose
    checkpoint already holds them.

    Args:
      params: freshly initialised parameters (host or device arrays).

    Returns:
      The same tree structure, shapes and dtypes.
    """
    return params

  @property
  def steps_per_epoch(self) -> int:
    """Batches per pass over the training split; 0 where batches are drawn
    at random (no epochs). `num_epochs` and 'epoch_decay' need it."""
    return 0

  def final_evaluation(self, params: Any, rows: slice,
                       evaluate: Callable[[Iterable[dict]], dict[str, float]]
                       ) -> dict[str, float]:
    """Figures computed once, after the last step: test-split loss, BLEU
    of decoded translations, word-similarity scores...

    Args:
      params: the trained parameters (replicated over the mesh).
      rows: this host's rows of each global batch.
      evaluate: averages of the summed `loss` metrics over batches, as the
        loop's own evaluation computes them (sharded, any device count).

    Returns:
      Fully named metrics (`test_perplexity`, `eval_bleu`, ...), written to
      metrics.jsonl at the final step.
    """
    del params, rows, evaluate
    return {}

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
