"""train_and_evaluate(config, workdir): the one training loop of lm_jax.

Every task runs through here. The loop:
  1. prepares the task (data, tokenizer, model) and a data-parallel mesh;
  2. initialises or restores the train state and the data iterator;
  3. runs the jit-compiled `train_step` with the batch sharded on `data`;
  4. logs, evaluates and checkpoints on schedule;
  5. ends with a checkpoint, then an exact evaluation on the whole split.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import logging
import os
import tempfile
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lm_jax import atomic_files, tasks
from lm_jax.train import checkpoint, optim, parallel
from lm_jax.train.log_window import LogWindow, paused
from lm_jax.train.logging import (CONFIG_FILE, MetricWriter, ProfileTrace,
                                  progress_line)
from lm_jax.train.steps import (TrainState, averages, make_eval_step,
                                make_multi_step, make_train_step)

log = logging.getLogger('lm_jax')

def _state_initializer(model, tx, inputs: np.ndarray, carry: Any = ()):
  def init(rng) -> TrainState:
    params = model.init({'params': rng}, inputs)['params']
    return TrainState(jnp.array(0, jnp.int32), params, tx.init(params),
                      jax.tree.map(jnp.asarray, carry))
  return init


def _steps_to_next_event(step: int, config, profile) -> int:
  """Steps from `step` to the next one after which the loop logs,
  evaluates, saves, starts or stops a trace, or ends."""
  ends = [config.num_train_steps]
  every = [config.log_every, config.eval_every, config.checkpoint_every]
  ends += [(step // n + 1) * n for n in every if n]
  if profile:
    ends += [s for s in (profile[0] - 1, profile[1]) if s > step]
  return min(ends) - step


def state_sharding(mesh) -> TrainState:
  """Shardings of the train state's parts: all replicated but the carry,
  whose rows belong to the batch rows on each device."""
  rep = parallel.replicated(mesh)
  return TrainState(rep, rep, rep, parallel.batch_sharded(mesh))


def _abstract_state(state: TrainState, mesh) -> TrainState:
  return jax.tree.map(checkpoint.abstract_like, state, state_sharding(mesh),
                      is_leaf=lambda x: x is not state)


def init_state(model, tx, inputs: np.ndarray, seed: int, mesh,
               carry: Any = ()) -> TrainState:
  """Fresh parameters and optimizer state, replicated over `mesh`, and the
  initial `carry`, split by rows."""
  # Computed once, on one device, then copied: with replicated outputs the
  # jitted initialiser would run on every device, and XLA CPU's QR behind
  # orthogonal initialisers alone takes seconds.
  state = jax.jit(_state_initializer(model, tx, inputs, carry))(
      jax.random.key(seed))
  return jax.device_put(state, state_sharding(mesh))


def evaluate(eval_step, params, batches, mesh, task) -> dict[str, float]:
  """Averages of the summed metrics over `batches` (exact, any device count).

  Batches are evaluated in order; a task with a carry starts from
  `task.init_carry` and hands it from each batch to the next.
  """
  total, carry = None, None
  for batch in batches:
    if carry is None:
      rows = len(jax.tree.leaves(batch)[0]) * jax.process_count()
      carry = jax.device_put(task.init_carry(rows),
                             parallel.batch_sharded(mesh))
    metrics, carry = eval_step(params, parallel.to_global(batch, mesh), carry)
    # Each batch's sums come to the host at once, to be added in float64:
    # float32 totals over PTB's 2,108 one-stream batches were off by 2e-4.
    # The wait matters too: evaluation steps do not depend on each other, so
    # many would otherwise be in flight at once, and on XLA CPU devices that
    # share a small thread pool their all-reduces can block each other
    # forever.
    metrics = jax.tree.map(lambda x: np.asarray(x, np.float64),
                           parallel.to_host(metrics))
    total = metrics if total is None else jax.tree.map(np.add, total, metrics)
  if total is None:
    raise ValueError('the evaluation had no batches: the split is shorter '
                     'than one batch')
  return averages(total)


def _closing(close: Callable[[], None]):
  """An `ExitStack` exit callback that calls `close`. After an error its
  own failure is logged and gives way to the error that stopped the run:
  an asynchronous checkpointer left open to the interpreter's exit can
  hang it (a failed save did), so every part is closed either way."""
  def exit_(exc_type, exc, traceback):
    del exc, traceback
    try:
      close()
    except Exception as e:  # noqa: BLE001 - the run's error is reported
      if exc_type is None:
        raise
      log.warning('while stopping: %s: %s', type(e).__name__, e)
    return False
  return exit_


@contextlib.contextmanager
def _held(workdir: str, check_workdir: Optional[Callable[[], None]]):
  """`workdir` held against other launches (by the first process: two
  launches would interleave steps), then `check_workdir` run, if any."""
  with contextlib.ExitStack() as stack:
    if jax.process_index() == 0:
      stack.enter_context(atomic_files.held_exclusively(workdir))
    if check_workdir is not None:
      check_workdir()
    yield


def _check_run(config: ml_collections.ConfigDict, task, mesh) -> None:
  """Refuses settings the run cannot follow, before the workdir is touched,
  and turns `num_epochs` into `num_train_steps`."""
  parallel.check_batch_size(config.batch_size, mesh)
  if config.batch_size % (config.grad_accum_steps * mesh.size):
    raise ValueError(f'batch_size {config.batch_size} must divide by '
                     f'grad_accum_steps x devices = '
                     f'{config.grad_accum_steps * mesh.size}')
  if config.get('steps_per_call', 1) < 1:
    raise ValueError(f'steps_per_call must be at least 1, not '
                     f'{config.steps_per_call}')
  if config.get('num_epochs'):
    if not task.steps_per_epoch:
      raise ValueError(f'task {config.task!r} draws random batches and has '
                       'no epochs; set num_train_steps, not num_epochs')
    config.num_train_steps = config.num_epochs * task.steps_per_epoch


def _check_assets_unchanged(task, workdir: str) -> None:
  """A resumed run's checkpoints were trained on the ids of its saved
  tokenizer (and tags): this launch, which built them again from the data
  and any pre-trained run it names, must have built the same."""
  with tempfile.TemporaryDirectory() as fresh:
    task.save_assets(fresh)
    for name in sorted(os.listdir(fresh)):
      saved = os.path.join(workdir, name)
      if os.path.isfile(saved) and not filecmp.cmp(
          saved, os.path.join(fresh, name), shallow=False):
        raise ValueError(
            f'{saved} differs from the one this launch built from its data '
            'and pre-trained runs (init_from, pretrained_lm, elmo_bilm), '
            'which changed since the run was trained: restore them, or '
            'train anew in another --workdir')


def _restore_or_start(ckpt: checkpoint.Checkpointer, state: TrainState,
                      stream, task, tx, mesh
                      ) -> tuple[TrainState, Optional[dict]]:
  """The run's state and its log window's sums (see `checkpoint.data_item`):
  from the newest readable checkpoint, setting `stream` where it was; else
  fresh, with the task's pretrained parameters put in."""
  restored = ckpt.restore_latest(_abstract_state(state, mesh))
  if restored is not None:
    step, state, data_item = restored
    data_state, window = checkpoint.split_data_item(data_item)
    stream.set_state(data_state)
    log.info('resumed from the checkpoint at step %d', step)
    return state, window
  if ckpt.steps():
    raise ValueError(
        f'no checkpoint in {ckpt.directory} is readable (the warnings '
        'above say why; one written with another optimizer layout, e.g. '
        'optimizer_flatten, does not fit either): relaunch with the '
        'run\'s own settings, or move that folder away to start the run '
        'afresh')
  pretrained = task.pretrained_params(state.params)
  if pretrained is not state.params:
    # Replicated first: the pretrained parts come from one device. The
    # optimizer state afresh too: a parameter average starts there.
    replicated = parallel.replicated(mesh)
    params = jax.device_put(pretrained, replicated)
    state = state.replace(params=params, opt_state=jax.device_put(
        tx.init(params), replicated))
  return state, None


class _Steps(NamedTuple):
  train: Callable     # (state, batch, rng) -> (state, metrics)
  multi: Callable     # the same over `steps_per_call` stacked batches
  evaluate: Callable  # (params, batches) -> summarized averages


def _compile_steps(task, tx, config: ml_collections.ConfigDict, mesh
                   ) -> _Steps:
  """The jit-compiled steps: the state donated, the batch split over the
  mesh's `data` axis, the rest replicated."""
  replicated = parallel.replicated(mesh)
  batch_sharding = parallel.batch_sharded(mesh)
  one_step = make_train_step(
      task, tx, config.grad_accum_steps,
      config.get('normalize_loss_by', 'token'),
      optim.trainable_weights(config, task.steps_per_epoch))
  train_step = jax.jit(
      one_step,
      in_shardings=(state_sharding(mesh), batch_sharding, replicated),
      out_shardings=(state_sharding(mesh), replicated), donate_argnums=0)
  multi_step = jax.jit(
      make_multi_step(one_step, config.get('steps_per_call', 1)),
      in_shardings=(state_sharding(mesh),
                    parallel.batch_sharded(mesh, leading=1), replicated),
      out_shardings=(state_sharding(mesh), replicated), donate_argnums=0)
  eval_step = jax.jit(
      make_eval_step(task),
      in_shardings=(replicated, batch_sharding, batch_sharding),
      out_shardings=(replicated, batch_sharding))
  evaluate_batches = lambda params, batches: task.summarize(
      evaluate(eval_step, params, batches, mesh, task))
  return _Steps(train_step, multi_step, evaluate_batches)


def _evaluate_state(task, state: TrainState, rows: slice, steps: _Steps, *,
                    full: bool, final: bool) -> dict[str, float]:
  """`eval_*` figures of `state` on the validation split (whole, or its
  `eval_steps` batches); a final one adds the task's own (e.g. `test_*`)."""
  params = optim.eval_params(state.params, state.opt_state)
  results = steps.evaluate(params, task.eval_batches(rows, full=full))
  evals = {f'eval_{k}': v for k, v in results.items()}
  if final:
    evals.update(task.final_evaluation(
        params, rows, lambda batches: steps.evaluate(params, batches)))
  return evals


def _train_values(task, sums: dict, schedule, step: int) -> dict[str, float]:
  """A log line's `train_*` averages of the window's `sums`, and the
  learning rate of its last step."""
  values = {f'train_{k}': v for k, v in task.summarize(averages(sums)).items()}
  values['learning_rate'] = float(schedule(step - 1))
  return values


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       check_workdir: Optional[Callable[[], None]] = None
                       ) -> dict[str, float]:
  """Trains `config`'s task in `workdir`, resuming from its checkpoints.

  Args:
    config: the run's settings.
    workdir: the run's folder.
    check_workdir: called once the workdir is held (by the first
      process), before anything in it is read or written; raises to
      refuse the launch. The command line's relaunch check, again:
      another launch may have trained in the workdir between its first
      check and this one.

  Returns:
    The final evaluation's figures (`eval_loss`, `eval_perplexity`, ...).
  """
  # Everything that can fail on bad input happens before the workdir is
  # touched, so a failed launch never damages an existing run.
  task = tasks.make_task(config)
  task.prepare()
  if isinstance(task, tasks.CountingTask):
    with _held(workdir, check_workdir):  # as training holds it
      return estimate_and_evaluate(task, config, workdir)
  mesh = parallel.make_data_mesh(config.num_devices)
  _check_run(config, task, mesh)
  rows = parallel.process_rows(config.batch_size)
  tx = optim.make_optimizer(config, task.steps_per_epoch)
  schedule = optim.make_schedule(config, task.steps_per_epoch)
  state = init_state(task.model, tx, task.dummy_batch()['inputs'],
                     config.seed, mesh, task.init_carry(config.batch_size))
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  log.info('%s: %s parameters on %d device(s)', config.model,
           f'{num_params:,}', mesh.size)

  with contextlib.ExitStack() as stack:
    stack.enter_context(_held(workdir, check_workdir))
    ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints,
                                   config.checkpoint_every,
                                   config.async_checkpoint,
                                   remove_unfinished=True)
    stack.push(_closing(ckpt.close))
    if ckpt.steps():
      _check_assets_unchanged(task, workdir)
    stream = task.train_stream(rows)
    state, resumed_window = _restore_or_start(ckpt, state, stream, task, tx,
                                              mesh)
    start = int(parallel.to_host(state.step))
    if start > config.num_train_steps:
      if config.get('num_epochs'):  # what the command line set
        epochs = -(-start // task.steps_per_epoch)
        asked = (f'num_epochs={config.num_epochs} '
                 f'({config.num_train_steps} steps)')
        needed = f'num_epochs={epochs}'
      else:
        asked = f'num_train_steps={config.num_train_steps}'
        needed = f'{start} steps'
      raise ValueError(
          f'{workdir} has trained {start} steps, more than {asked}; '
          f'relaunch it with at least {needed}, or train the shorter run in '
          'a new --workdir')
    # Only now, with the checkpoints known to fit: a relaunch refused above
    # must leave the run's config and assets as they were.
    _write_config(config, workdir)
    if jax.process_index() == 0:
      task.save_assets(workdir)
      task.output_dir = workdir
    steps = _compile_steps(task, tx, config, mesh)
    steps_per_call = config.get('steps_per_call', 1)
    # Made replicated once, by every host: an uncommitted key was copied to
    # every device at every call (0.1 ms a call on 2 CPU devices).
    rng = jax.jit(jax.random.key, static_argnums=0,
                  out_shardings=parallel.replicated(mesh))(config.seed + 1)
    writer = MetricWriter(workdir, resume_step=start)
    stack.push(_closing(writer.close))
    trace = ProfileTrace(config.profile_steps, workdir, start,
                         config.num_train_steps)
    stack.push(_closing(trace.close))
    window = LogWindow(resumed_window, start)
    config_dict = json.loads(config.to_json_best_effort())

    def save(step: int, state: TrainState) -> None:
      with paused(state, window):
        # Between two log steps the window so far goes along.
        ckpt.save(step, state,
                  checkpoint.data_item(stream.get_state(), window.sums()),
                  config_dict)

    step = start
    compiled = set()  # the (step function, batch shapes) called so far
    while step < config.num_train_steps:
      trace.before(step)
      multi = steps_per_call > 1 and _steps_to_next_event(
          step, config, trace.window) >= steps_per_call
      if multi:
        batches = [next(stream) for _ in range(steps_per_call)]
        batch = parallel.to_global(
            jax.tree.map(lambda *xs: np.stack(xs), *batches), mesh, leading=1)
      else:
        batch = parallel.to_global(next(stream), mesh)
      # A first call, or one with new shapes (length-bucketed batches),
      # compiles: its time is no training step's.
      shapes = (multi, *(np.shape(x) for x in jax.tree.leaves(batch)))
      compiles = shapes not in compiled
      compiled.add(shapes)
      with paused(state, window) if compiles else contextlib.nullcontext():
        state, metrics = (steps.multi if multi else steps.train)(
            state, batch, rng)
        if compiles:
          jax.block_until_ready(metrics)
      called_steps = steps_per_call if multi else 1
      step += called_steps
      window.add(metrics, timed=not compiles, steps=called_steps)
      trace.after(step, state)

      final = step == config.num_train_steps
      if (config.log_every and step % config.log_every == 0) or final:
        # Waits for the device.
        sums, tokens_per_sec, seconds = window.take(step)
        values = _train_values(task, sums, schedule, step)
        shown = {'loss': values['train_loss']}
        if tokens_per_sec is not None:  # else only compiling steps
          values['tokens_per_sec'] = shown['tok/s'] = tokens_per_sec
        writer.write(step, values)
        log.info(progress_line(step, config.num_train_steps, shown, seconds))
        # Writing the line is no step's time.
        window.restart_clock()

      if final:
        # Before the final evaluation, which can be long (the whole split,
        # beam search): a kill there then loses no training, and the
        # relaunch records the evaluation (below).
        save(step, state)
      if (config.eval_every and step % config.eval_every == 0) or final:
        with paused(state, window):
          # The last evaluation covers the whole split, exactly; with
          # eval_steps 0 every one does.
          full = (final and config.final_eval_full) or not config.eval_steps
          evals = _evaluate_state(task, state, rows, steps, full=full,
                                  final=final)
          writer.write(step, evals)
          log.info('eval at step %d%s: %s', step,
                   ' (whole split)' if full else '',
                   ' '.join(f'{k}={v:.4f}' for k, v in evals.items()))
          writer.plot()
      if not final and ckpt.is_save_step(step):
        save(step, state)

    if step == start:
      # Nothing left to train. The run's records may lack its last log
      # line and final evaluation (a kill during the evaluation, or a
      # relaunch that shortened a run to a step it had not logged, or had
      # evaluated on a sample only): they are written as the run would have
      # ended, in place of any at this step.
      # (The steps since the last log line, if any.)
      log_line = ([_train_values(task, resumed_window, schedule, step)]
                  if resumed_window else [])
      evals = _evaluate_state(
          task, state, rows, steps, final=True,
          full=config.final_eval_full or not config.eval_steps)
      writer.replace(step, *log_line, evals)
      writer.plot()
  return evals


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    atomic_files.write_text(
        os.path.join(workdir, CONFIG_FILE),
        config.to_json_best_effort(indent=2, sort_keys=True))


def estimate_and_evaluate(task: tasks.CountingTask,
                          config: ml_collections.ConfigDict, workdir: str
                          ) -> dict[str, float]:
  """The gradient-free path: estimation is the whole of training.

  Writes the same workdir layout (config.json, metrics.jsonl, the model)
  and metrics keys as gradient training, as one record at step 1:
  `eval_*` for the validation split, `test_*` for a test split if there is
  one, and `estimate_seconds`.
  """
  _write_config(config, workdir)
  start = time.perf_counter()
  task.estimate()
  values = {'estimate_seconds': time.perf_counter() - start}
  if jax.process_index() == 0:
    task.save_assets(workdir)
  for split in task.eval_splits:
    prefix = 'eval' if split == 'validation' else split
    values.update((f'{prefix}_{k}', v) for k, v in task.evaluate(split).items())
  writer = MetricWriter(workdir)
  writer.write(1, values)
  writer.close()
  log.info('estimated in %.2fs: %s', values['estimate_seconds'],
           ' '.join(f'{k}={v:.4f}' for k, v in values.items()
                    if k != 'estimate_seconds'))
  return {k: v for k, v in values.items() if k.startswith(('eval_', 'test_'))}


def restore_params(workdir: str, config: ml_collections.ConfigDict, model,
                   inputs: np.ndarray, carry: Any = ()) -> tuple[int, Any]:
  """(step, params) of the newest readable checkpoint in `workdir`, on one
  device, whatever the device count it was saved from: the parameters'
  average where the run kept one (`param_average_decay`), as its
  evaluations used.

  Args:
    workdir: the run's directory.
    config: the run's config (for the optimizer state's structure).
    model: the model whose parameters were saved.
    inputs: example model inputs, for the parameters' shapes.
    carry: the training run's initial carry, for its shapes.
  """
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise FileNotFoundError(f'no checkpoint in {workdir}; train it first')
  mesh = parallel.make_data_mesh(1)
  # Only the optimizer state's structure matters here, not the schedule.
  tx = optim.make_optimizer(config, steps_per_epoch=1)
  init = _state_initializer(model, tx, inputs, carry)
  abstract = _abstract_state(jax.eval_shape(init, jax.random.key(0)), mesh)
  ckpt = checkpoint.Checkpointer(workdir, async_save=False)
  try:
    step, state = ckpt.restore_params(abstract)
  finally:
    ckpt.close()
  return step, optim.eval_params(state.params, state.opt_state)
