"""What a run of the training loop writes: its artifacts, metrics.jsonl
records and evaluations, timings, TensorBoard events and profiler traces."""

import json
import logging
import math
import os
import re
import types

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from lm_jax import losses
from lm_jax.data import pipelines, tokenizers
from lm_jax.tasks.language_modeling import LanguageModelingTask
from lm_jax.train import checkpoint, log_window, loop
from lm_jax.train import logging as train_logging
from lm_jax.train.logging import MetricWriter, read_metrics
from tests.command_line import REPO_ROOT, command_env
from tests.train.loop_runs import (StreamSpy, train_run, final_params,
                                   read_records, assert_params_equal)


def test_run_writes_its_artifacts_and_logs_on_schedule(uninterrupted):
  workdir = uninterrupted['workdir']
  for name in ('config.json', 'tokenizer.json', 'metrics.jsonl', 'loss.png'):
    assert os.path.isfile(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['num_train_steps'] == 12
  reader = checkpoint.Checkpointer(workdir, async_save=False)
  assert reader.steps() == [6, 12]
  reader.close()
  assert [r['step'] for r in read_records(workdir, 'train_')] == [3, 6, 9, 12]
  assert [r['step'] for r in read_records(workdir, 'eval_')] == [6, 12]
  assert len(uninterrupted['seen']) == 12
  results = uninterrupted['results']
  assert set(results) >= {'eval_loss', 'eval_accuracy', 'eval_perplexity',
                          'eval_bits_per_token'}
  np.testing.assert_allclose(results['eval_perplexity'],
                             math.exp(results['eval_loss']), rtol=1e-6)
  np.testing.assert_allclose(results['eval_bits_per_token'],
                             results['eval_loss'] / math.log(2), rtol=1e-6)
  final_eval = read_records(workdir, 'eval_')[-1]
  np.testing.assert_allclose(final_eval['eval_loss'], results['eval_loss'])


def _validation_loss(task, config, params):
  """(mean loss, tokens) of `params` over the whole validation split,
  computed here without the loop."""
  apply = jax.jit(lambda tokens: task.model.apply({'params': params}, tokens))
  total = count = 0.0
  for batch in pipelines.lm_full_pass(task.tokens['validation'],
                                      config.block_size, config.batch_size):
    loss_sum, weight_sum = losses.cross_entropy(
        apply(batch['inputs']), batch['targets'], batch['weights'])
    total, count = total + float(loss_sum), count + float(weight_sum)
  return total / count, count


def test_evaluation_adds_the_batches_sums_in_float64():
  """Each batch's float32 sums are exact; their total over a long split
  must not round: in float32, 2**24 + 1 + 1 + 1 is 2**24."""
  mesh = loop.parallel.make_data_mesh(1)
  task = types.SimpleNamespace(init_carry=lambda rows: ())
  batches = [{'sum': np.full((1,), v, np.float32)}
             for v in (2.0**24, 1.0, 1.0, 1.0)]

  def eval_step(params, batch, carry):
    del params
    return {'loss': (batch['sum'][0], np.float32(1.0))}, carry

  result = loop.evaluate(eval_step, None, batches, mesh, task)
  assert result['loss'] == (2.0**24 + 3) / 4


def test_final_evaluation_is_the_exact_mean_over_the_validation_split(
    uninterrupted, tiny_task):
  config, params = uninterrupted['config'], uninterrupted['params']
  loss, count = _validation_loss(tiny_task, config, params)
  assert count == len(tiny_task.tokens['validation']) - 1
  np.testing.assert_allclose(uninterrupted['results']['eval_loss'], loss,
                             rtol=1e-5)


def test_a_diverged_value_is_written_as_strict_json_and_read_as_nan(
    tmp_path):
  writer = MetricWriter(str(tmp_path))
  writer.write(1, {'train_loss': float('nan'), 'eval_loss': float('inf'),
                   'tokens_per_sec': 5.0})
  writer.close()
  with open(tmp_path / 'metrics.jsonl') as f:
    line = f.read()
  # No bare NaN / Infinity, which strict JSON readers reject.
  assert json.loads(line, parse_constant=pytest.fail) == {
      'step': 1, 'train_loss': None, 'eval_loss': None,
      'tokens_per_sec': 5.0}
  record, = read_metrics(str(tmp_path))
  assert math.isnan(record['train_loss']) and math.isnan(record['eval_loss'])
  # A resume rewrites the kept records as strictly.
  MetricWriter(str(tmp_path), resume_step=1).close()
  with open(tmp_path / 'metrics.jsonl') as f:
    assert f.read() == line


@pytest.mark.parametrize('steps_per_call', [1, 3])
def test_tokens_per_sec_and_ms_per_step_leave_evaluation_and_saving_out(
    make_run_config, tmp_path, caplog, steps_per_call):
  """On a clock where each training step takes 1 s, each evaluation 100 s,
  each checkpoint save 50 s, each metrics record 10 s and each compilation
  (a step function's first call for each batch shape) 30 s more, every
  logged window reads 64 tokens (4 rows of 16) a second and the console
  1000 ms a step, the window 4-8 around the evaluation and save at step 6
  included; one step a call, the 12th batch, cut to 8 columns, compiles
  anew. Three steps a call: steps 1-3 in one (compiling), then step 4 alone,
  where the events at 4 and 6 leave too few for a call (compiling the
  one-step function), so the first window has no timed step and no rate."""
  clock = [0.0]
  original_compile = loop._compile_steps  # pylint: disable=protected-access
  original_stream = LanguageModelingTask.train_stream
  original_evaluate = loop.evaluate
  original_save = checkpoint.Checkpointer.save
  original_write = MetricWriter.write

  class OneShorterBatch(StreamSpy):
    def __next__(self):
      batch = super().__next__()
      if len(self._seen) == 12 and steps_per_call == 1:
        batch = {k: v[:, :8] for k, v in batch.items()}
      return batch

  def slow(seconds, original):
    def call(*args, **kwargs):
      clock[0] += seconds
      return original(*args, **kwargs)
    return call

  compiled = set()

  def timed(step_function, steps_a_call):
    def call(state, batch, rng):
      shapes = (steps_a_call, *(x.shape for x in jax.tree.leaves(batch)))
      clock[0] += steps_a_call + (0.0 if shapes in compiled else 30.0)
      compiled.add(shapes)
      return step_function(state, batch, rng)
    return call

  def compile_steps(*args):
    steps = original_compile(*args)
    return steps._replace(train=timed(steps.train, 1),
                          multi=timed(steps.multi, steps_per_call))

  caplog.set_level(logging.INFO, logger='lm_jax')
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(loop, '_compile_steps', compile_steps)
    fake_time = types.SimpleNamespace(perf_counter=lambda: clock[0])
    patch.setattr(log_window, 'time', fake_time)
    patch.setattr(loop, 'evaluate', slow(100.0, original_evaluate))
    patch.setattr(checkpoint.Checkpointer, 'save', slow(50.0, original_save))
    patch.setattr(MetricWriter, 'write', slow(10.0, original_write))
    patch.setattr(LanguageModelingTask, 'train_stream',
                  lambda self, rows: OneShorterBatch(
                      original_stream(self, rows), []))
    loop.train_and_evaluate(
        make_run_config(log_every=4, steps_per_call=steps_per_call),
        str(tmp_path))
  rates = [(r['step'], r['tokens_per_sec']) for r in read_metrics(str(tmp_path))
           if 'tokens_per_sec' in r]
  timed = [4, 8, 12] if steps_per_call == 1 else [8, 12]
  assert rates == [(step, 64.0) for step in timed]
  assert re.findall(r'\(([\d.]+) ms/step', caplog.text) == (
      ['1000.0'] * len(timed))
  untimed = re.findall(r'step (\d+)/12 \S+ \(compiling: untimed\)',
                       caplog.text)
  assert untimed == ([] if steps_per_call == 1 else ['4'])


def test_progress_line_writes_counts_whole():
  line = train_logging.progress_line(
      5, 100, {'loss': 1.23456, 'tok/s': 18_410.4}, 0.1115)
  assert line == ('step 5/100 loss=1.235 tok/s=18410 (111.5 ms/step, '
                  'ETA 11s)'), line


def test_a_window_of_compiling_steps_only_has_no_rates():
  """log_every=1: the first line's step compiled; no rate, no ETA."""
  window = log_window.LogWindow(None, 0)
  window.add({'loss': (np.float32(9.0), np.float32(64.0))}, timed=False)
  sums, tokens_per_sec, seconds = window.take(1)
  assert (float(sums['loss'][1]), tokens_per_sec, seconds) == (64.0, None,
                                                               None)
  assert train_logging.progress_line(1, 100, {'loss': 2.5}, None) == (
      'step 1/100 loss=2.5 (compiling: untimed)')
  window.add({'loss': (np.float32(8.0), np.float32(64.0))})
  assert window.take(2)[1] > 0  # the next step is timed again


def test_log_every_0_logs_at_the_end_and_eval_steps_0_evaluates_whole_splits(
    make_run_config, tmp_path):
  config = make_run_config(log_every=0, eval_steps=0)
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert [r['step'] for r in read_records(tmp_path, 'train_')] == [12]
  evals = read_records(tmp_path, 'eval_')
  assert [r['step'] for r in evals] == [6, 12]
  np.testing.assert_allclose(evals[-1]['eval_loss'], results['eval_loss'])


def test_relaunching_a_finished_run_with_eval_steps_0_evaluates_it_whole(
    make_run_config, tmp_path):
  """eval_steps 0 means the whole split, final_eval_full or not, on the
  relaunch of a finished run too (it found no batch to score)."""
  config = make_run_config(eval_steps=0, final_eval_full=False)
  first = loop.train_and_evaluate(config, str(tmp_path))
  again = loop.train_and_evaluate(config, str(tmp_path))
  np.testing.assert_allclose(again['eval_loss'], first['eval_loss'],
                             rtol=1e-6)


def test_a_resume_has_tensorboard_purge_the_steps_it_trains_again(
    make_run_config, tmp_path, monkeypatch):
  import tensorboardX
  purges = []
  original = tensorboardX.SummaryWriter.__init__

  def init(self, *args, **kwargs):
    purges.append(kwargs.get('purge_step'))
    original(self, *args, **kwargs)

  monkeypatch.setattr(tensorboardX.SummaryWriter, '__init__', init)
  train_run(make_run_config(), tmp_path, crash_at=8)
  train_run(make_run_config(), tmp_path)
  assert purges == [1, 7]  # resumed from the checkpoint at step 6
  # Killed before its first checkpoint, after logging step 3: the relaunch
  # starts over and must drop that attempt's events too.
  purges.clear()
  train_run(make_run_config(), tmp_path / 'early', crash_at=5)
  train_run(make_run_config(), tmp_path / 'early')
  assert purges == [1, 1]


def test_metrics_summed_early_on_a_long_unlogged_run_log_the_same(
    make_run_config, tmp_path, monkeypatch):
  """With log_every=0 the loop folds older steps' metrics into host sums
  (here every 3 steps) instead of keeping them all on device."""
  config = make_run_config(log_every=0, checkpoint_every=0)
  loop.train_and_evaluate(config, str(tmp_path / 'kept'))
  monkeypatch.setattr(log_window, 'MAX_PENDING', 3)
  sums, original = [], log_window.window_sums
  monkeypatch.setattr(log_window, 'window_sums',
                      lambda pending: sums.append(len(pending))
                      or original(pending))
  loop.train_and_evaluate(config, str(tmp_path / 'folded'))
  # The first (compiling) step's tokens leave the rate, then the steps are
  # folded as it goes, not once at the end.
  assert sums[:4] == [1, 4, 4, 4]
  kept, folded = (read_records(tmp_path / name, 'train_')
                  for name in ('kept', 'folded'))
  assert [r['step'] for r in folded] == [12]
  np.testing.assert_allclose(folded[0]['train_loss'], kept[0]['train_loss'],
                             rtol=1e-9)


def test_training_reduces_the_loss(make_run_config, tmp_path):
  """A sanity check no equivalence test can make: the gradient points
  downhill. 48 steps at a high learning rate take the tiny model well
  below the uniform guess on both splits."""
  config = make_run_config(num_train_steps=48, decay_steps=48,
                            learning_rate=1e-2, min_learning_rate=1e-3,
                            warmup_steps=4, log_every=8, eval_every=0,
                            checkpoint_every=0)
  results = loop.train_and_evaluate(config, str(tmp_path))
  train_losses = [r['train_loss'] for r in read_records(tmp_path, 'train_')]
  vocab_size = tokenizers.load(
      os.path.join(tmp_path, 'tokenizer.json')).vocab_size
  assert train_losses[-1] < train_losses[0] - 0.4, train_losses
  assert results['eval_loss'] < math.log(vocab_size) - 0.3, results


_MANY_EVAL_STEPS = '''
import os, sys
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                           + ' --xla_force_host_platform_device_count=2')
sys.path.insert(0, sys.argv[1])
import jax, jax.numpy as jnp, numpy as np
from experiments.configs import shakespeare_char_cpu
from lm_jax.models import build_model
from lm_jax.tasks.language_modeling import LanguageModelingTask
from lm_jax.train import loop, parallel
from lm_jax.train.steps import make_eval_step
config = shakespeare_char_cpu.get_config()
task = LanguageModelingTask(config)
task._model = build_model(config, 65)
mesh = parallel.make_data_mesh(2)
params = jax.jit(lambda r: task.model.init(r, jnp.zeros((1, 64), jnp.int32))[
    'params'], out_shardings=parallel.replicated(mesh))(jax.random.key(0))
eval_step = jax.jit(make_eval_step(task),
                    in_shardings=(parallel.replicated(mesh),
                                  parallel.batch_sharded(mesh),
                                  parallel.batch_sharded(mesh)),
                    out_shardings=(parallel.replicated(mesh),
                                   parallel.batch_sharded(mesh)))
rng = np.random.default_rng(0)
batches = [{'inputs': rng.integers(0, 65, (12, 64), dtype=np.int32),
            'targets': rng.integers(0, 65, (12, 64), dtype=np.int32),
            'weights': np.ones((12, 64), np.float32)} for _ in range(300)]
print(loop.evaluate(eval_step, params, batches, mesh, task)['loss'])
'''


def test_evaluation_over_many_batches_on_two_cpu_devices_does_not_hang(
    tmp_path):
  """Regression: independent eval steps left in flight deadlocked the
  all-reduces of two XLA CPU devices (seen in 2 of 3 runs of this script
  before `evaluate` waited for each step)."""
  import subprocess
  import sys
  script = tmp_path / 'many_eval_steps.py'
  script.write_text(_MANY_EVAL_STEPS)
  result = subprocess.run(
      [sys.executable, str(script), REPO_ROOT],
      capture_output=True, text=True, timeout=120, env=command_env())
  assert result.returncode == 0, result.stderr[-2000:]
  assert math.isfinite(float(result.stdout.strip().splitlines()[-1]))


def test_with_a_param_average_evaluations_and_checkpoints_use_it(
    make_run_config, tiny_task, tmp_path):
  config = make_run_config(param_average_decay=0.5)
  results = loop.train_and_evaluate(config, str(tmp_path))
  _, average = final_params(tmp_path, config)  # as sampling loads it
  saved = ocp.StandardCheckpointer().restore(
      os.path.join(str(tmp_path), 'checkpoints', '12', 'state'))
  assert_params_equal(average, saved['opt_state']['average'])
  assert_params_equal(checkpoint.load_params(str(tmp_path)), average)
  assert not all(np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(saved['params']), jax.tree.leaves(average)))
  np.testing.assert_allclose(
      results['eval_loss'], _validation_loss(tiny_task, config, average)[0],
      rtol=1e-5)


def test_profile_steps_write_a_trace_and_a_resume_past_them_skips_it(
    make_run_config, tmp_path, caplog):
  """Steps 2-3 traced; a relaunch after step 6 with a window that began
  before it trains on, without a trace (stopping one never started
  failed)."""
  caplog.set_level(logging.INFO, logger='lm_jax')
  loop.train_and_evaluate(
      make_run_config(num_train_steps=6, profile_steps='2:3'), str(tmp_path))
  traces = [f for _, _, files in os.walk(tmp_path / 'profile') for f in files]
  assert any(f.endswith('.xplane.pb') for f in traces), traces
  results = loop.train_and_evaluate(
      make_run_config(profile_steps='4:8'), str(tmp_path))
  assert np.isfinite(results['eval_loss'])
  assert 'profile_steps 4:8 began before step 6' in caplog.text


def test_a_profile_window_past_the_end_is_traced_to_the_end(make_run_config,
                                                            tmp_path):
  loop.train_and_evaluate(
      make_run_config(num_train_steps=6, profile_steps='5:100'),
      str(tmp_path))
  traces = [f for _, _, files in os.walk(tmp_path / 'profile') for f in files]
  assert any(f.endswith('.xplane.pb') for f in traces), traces


def test_a_run_failing_inside_its_profile_window_stops_and_keeps_the_trace(
    make_run_config, tmp_path):
  """The steps traced before the error are written; a trace left running
  would also refuse the next run's (one per process)."""
  crashed, _ = train_run(make_run_config(profile_steps='2:6'), tmp_path,
                      crash_at=4)
  assert crashed is None
  traces = [f for _, _, files in os.walk(tmp_path / 'profile') for f in files]
  assert any(f.endswith('.xplane.pb') for f in traces), traces
  results = loop.train_and_evaluate(
      make_run_config(num_train_steps=6, profile_steps='5:6'),
      str(tmp_path / 'next'))
  assert np.isfinite(results['eval_loss'])
