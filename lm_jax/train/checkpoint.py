"""Checkpoints: the only module that imports Orbax.

A checkpoint holds the train state (params, optimizer state, step), the
input pipeline's iterator state and the run config, each as one Orbax item.
The RNG needs no item: every step's key is derived from the seed and the
step, so a resumed run draws the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from lm_jax.train import optim

_ITEMS = ('state', 'data', 'config')

log = logging.getLogger('lm_jax')


def data_item(iterator_state: dict, window: Optional[dict]) -> dict:
  """A checkpoint's 'data' item: the input iterator's state and the sums
  of the metrics logged since the last log line (`window`), so that a run
  resumed between two log steps logs the window an uninterrupted run logs."""
  window = {k: [float(v) for v in pair] for k, pair in (window or {}).items()}
  return {'iterator': iterator_state, 'log_window': window}


def split_data_item(item: dict) -> tuple[dict, Optional[dict]]:
  """`data_item`'s inverse; a checkpoint written before it held the
  iterator's state alone."""
  if set(item) != {'iterator', 'log_window'}:
    return item, None
  window = {k: tuple(pair) for k, pair in item['log_window'].items()}
  return item['iterator'], window or None


def _write_replicated_arrays_whole() -> None:
  """Has Orbax write each replicated array once, from its first replica,
  on CPU hosts.

  Orbax's default there (as on TPUs, not on GPUs) splits each array's write
  among its replicas, slicing it first: one slicing program compiled per
  shape and device before a run's first save, and a copy at every save, for
  no gain where the devices share the host's memory. `shakespeare_char_cpu`
  on 2 CPU devices: its first save held training up 659 ms instead of 34,
  later ones 36 ms instead of 16.5 (benchmarks/RESULTS.md). The setting
  has no public way in: a private attribute of the registered handler,
  left alone if it is gone.
  """
  if jax.default_backend() != 'cpu':
    return
  handler = ocp.type_handlers.get_type_handler(jax.Array)
  if hasattr(handler, '_use_replica_parallel'):
    handler._use_replica_parallel = False  # pylint: disable=protected-access


class Checkpointer:
  """Periodic, asynchronous saves into `workdir/checkpoints`, keeping N.

  Args:
    workdir: the run's directory.
    max_to_keep: how many recent checkpoints survive.
    save_every: steps between periodic saves (0: only when forced).
    async_save: write in a background thread while training goes on.
    remove_unfinished: delete the folders of saves a killed process left
      unfinished (never restored, but up to a whole state each), in the
      background, done before the first save, which fails if one cannot
      be deleted. Only for the process that holds the run: another's save
      may be in progress.
  """

  def __init__(self, workdir: str, max_to_keep: int = 3, save_every: int = 0,
               async_save: bool = True, remove_unfinished: bool = False):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=remove_unfinished,
        create=True)
    self._save_every = save_every
    self._unreadable = set()  # steps that restore_latest could not read
    _write_replicated_arrays_whole()
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=_ITEMS)

  def steps(self) -> list[int]:
    """Steps of the finished checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def is_save_step(self, step: int) -> bool:
    """Whether `step` is one of the periodic save steps."""
    return self._save_every > 0 and step % self._save_every == 0

  def save(self, step: int, state: Any, data_state: dict, config: dict
           ) -> bool:
    """Saves (asynchronously) unless `step` is saved already."""
    if step in self._manager.all_steps():
      if step not in self._unreadable:
        return False
      # A corrupt checkpoint of this step is replaced by the retrained state.
      self._manager.delete(step)
      self._unreadable.discard(step)
    return self._manager.save(
        step, force=True,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(config)))

  def restore_latest(self, abstract_state: Any
                     ) -> Optional[tuple[int, Any, dict]]:
    """Restores the newest readable checkpoint.

    A checkpoint that fails to read (a killed write, a cut or missing
    file) is skipped with a warning and the one before it is tried. Orbax
    keeps no checksums: a byte flipped inside an array file reads back
    without an error.

    Args:
      abstract_state: the state's structure as `jax.ShapeDtypeStruct`s
        carrying the shardings to restore onto (so a checkpoint written on
        N devices restores on 1, and the reverse).

    Returns:
      (step, state, data iterator state), or None if there is none.
    """
    for step in reversed(self.steps()):
      try:
        restored = self._manager.restore(
            step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore()))
      except Exception as e:  # noqa: BLE001 - any read failure means corrupt.
        first_line = (str(e).splitlines() or [''])[0]  # may be ''
        # TensorStore's errors end in a pointer to details that are not
        # printed (`<bound method ...>`).
        first_line = first_line.split(' See full TensorStore details')[0][:200]
        log.warning('checkpoint at step %d in %s is unreadable (%s: %s); '
                    'trying the previous one', step, self.directory,
                    type(e).__name__, first_line)
        self._unreadable.add(step)
        continue
      return step, restored.state, dict(restored.data)
    return None

  def restore_params(self, abstract_state: Any) -> tuple[int, Any]:
    """The newest readable train state, for sampling and evaluation."""
    restored = self.restore_latest(abstract_state)
    if restored is None:
      raise FileNotFoundError(f'no readable checkpoint in {self.directory}')
    return restored[0], restored[1]

  def wait(self) -> None:
    """Blocks until any asynchronous save has finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def load_params(workdir: str) -> Any:
  """The parameters of another run's newest readable checkpoint, on this
  host's first device: the pre-trained part of a new model (ULMFiT's LM,
  ELMo's bi-LM); their average where that run kept one. Nothing in
  `workdir` is written.

  The shapes come from the checkpoint's own metadata, so the caller needs
  neither that run's model nor its data; a checkpoint saved on N devices
  loads on one.

  Raises:
    FileNotFoundError: `workdir` holds no readable checkpoint.
  """
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'no checkpoints in {workdir}: train that run '
                            'first, or point to its workdir')
  manager = ocp.CheckpointManager(
      directory, item_names=_ITEMS,
      options=ocp.CheckpointManagerOptions(create=False, read_only=True))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      metadata = ocp.StandardCheckpointer().metadata(
          os.path.join(directory, str(step), 'state')).item_metadata
      abstract = jax.tree.map(
          lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
          getattr(metadata, 'tree', metadata))
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))
    except Exception as e:  # noqa: BLE001 - any read failure means corrupt.
      log.warning('checkpoint at step %d in %s is unreadable (%s); trying '
                  'the previous one', step, directory, type(e).__name__)
      continue
    manager.close()
    # The parameters that run evaluated: their average where it kept one.
    return optim.eval_params(restored.state['params'],
                             restored.state.get('opt_state'))
  manager.close()
  raise FileNotFoundError(f'no readable checkpoint in {directory}')


def abstract_like(tree: Any, sharding: Any) -> Any:
  """ShapeDtypeStructs of `tree`'s arrays, placed with `sharding`."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      tree)
