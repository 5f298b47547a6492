"""Tests of experiments/sweep.py: its pure helpers on synthetic metrics, its
one-line errors, and one real two-run sweep of a tiny model (launched twice:
the second launch skips both runs)."""

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time

import ml_collections
import pytest

from experiments import cli, sweep
from lm_jax import atomic_files
from lm_jax.train.logging import read_metrics
from tests.command_line import CPU_PRESET, TINY_GPT, command_env


def _write_metrics(workdir, records):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)


def _records(final_eval_loss, steps=4, speeds=(10.0, 30.0, 20.0)):
  """A finished run's records: train logs every 2 steps, a mid-run eval and
  the final one at `steps`."""
  records = [{'step': 2, 'train_loss': 4.5, 'tokens_per_sec': speeds[0]},
             {'step': 2, 'eval_loss': 9.0, 'eval_perplexity': 8103.0}]
  for i, step in enumerate(range(4, steps + 1, 2)):
    records.append({'step': step, 'train_loss': 4.0 - i,
                    'tokens_per_sec': speeds[1 + i % 2]})
  records.append({'step': steps, 'eval_loss': final_eval_loss,
                  'eval_perplexity': 2.0 ** final_eval_loss})
  return records


def _sweep(*args, **env_overrides):
  """Runs the sweep CLI; returns the CompletedProcess."""
  return subprocess.run([sys.executable, '-m', 'experiments.sweep', *args],
                        capture_output=True, text=True,
                        env=command_env(**env_overrides), timeout=300)


def test_parse_grid_keeps_order_and_strips_blanks():
  grid = sweep.parse_grid(['learning_rate=0.001, 0.002', 'batch_size=12'])
  assert grid == {'learning_rate': ['0.001', '0.002'], 'batch_size': ['12']}
  assert list(grid) == ['learning_rate', 'batch_size']


@pytest.mark.parametrize('spec', ['learning_rate', 'learning_rate=',
                                  '=0.1', 'learning_rate=0.1,,0.2',
                                  'learning_rate=0.1,', 'seed=1,1'])
def test_parse_grid_rejects_malformed(spec):
  with pytest.raises(ValueError, match='--grid'):
    sweep.parse_grid([spec])


def test_parse_grid_rejects_repeated_key():
  with pytest.raises(ValueError, match='repeats'):
    sweep.parse_grid(['seed=1', 'seed=2'])


def test_combinations_is_the_cartesian_product_in_order():
  runs = sweep.combinations({'a': ['1', '2'], 'b': ['x', 'y', 'z']})
  assert len(runs) == 6
  assert runs[0] == {'a': '1', 'b': 'x'} and runs[1] == {'a': '1', 'b': 'y'}
  assert runs[-1] == {'a': '2', 'b': 'z'}


def test_run_name_is_sorted_stable_and_filesystem_safe():
  assert (cli.run_name({'learning_rate': '0.001', 'batch_size': '12'}) ==
          'batch_size-12_learning_rate-0.001')
  assert (cli.run_name({'batch_size': '12', 'learning_rate': '0.001'}) ==
          cli.run_name({'learning_rate': '0.001', 'batch_size': '12'}))
  name = cli.run_name({'data_dir': '/tmp/a b', 'lr': '1e-3'})
  assert name == 'data_dir-_tmp_a_b_lr-1e-3'
  assert '/' not in name and ' ' not in name


def test_check_setting_parses_by_type_and_knows_nested_keys():
  config = ml_collections.ConfigDict(
      {'lr': 0.1, 'steps': 10, 'bias': False, 'name': 'gpt',
       'model': {'width': 32}})
  assert sweep.check_setting(config, 'lr', '3e-4') == 3e-4
  assert sweep.check_setting(config, 'steps', '4') == 4
  assert sweep.check_setting(config, 'bias', 'true') is True
  assert sweep.check_setting(config, 'name', 'lstm') == 'lstm'
  assert sweep.check_setting(config, 'model.width', '64') == 64
  for key in ('nope', 'model.depth', 'lr.x'):
    with pytest.raises(ValueError, match='not a key'):
      sweep.check_setting(config, key, '1')
  with pytest.raises(ValueError, match='not a int'):
    sweep.check_setting(config, 'steps', '1.5')


def test_is_finished_needs_the_final_eval(tmp_path):
  records = _records(2.0, steps=4)
  assert sweep.is_finished(records, 4)
  assert not sweep.is_finished(records, 6)
  assert not sweep.is_finished(records[:-1], 4)  # trained, not evaluated
  assert not sweep.is_finished([], 4)


def test_a_run_with_notes_is_done_when_its_process_exited_cleanly(tmp_path):
  """The notes decide, not the preset's step count: an epoch or n-gram
  run ends at another step, and a failed run may have logged an eval."""
  workdir = str(tmp_path)
  final = [{'step': 4, 'eval_loss': 1.0}]
  notes = lambda: sweep.read_run_file(workdir)  # noqa: E731
  assert sweep.run_is_done(notes(), final, 4)  # no notes: the records
  assert not sweep.run_is_done(notes(), final, 5)
  for status, done in (('ok', True), ('failed', False),
                       ('started', False)):  # a sweep killed during it
    with open(os.path.join(workdir, sweep.RUN_FILE), 'w') as f:
      json.dump({'status': status}, f)
    assert sweep.run_is_done(notes(), [{'step': 1, 'eval_loss': 1.0}],
                             4) is done
  with open(os.path.join(workdir, sweep.RUN_FILE), 'w') as f:
    f.write('{"status": "o')  # cut short: as if there were no notes
  assert sweep.read_run_file(workdir) == {}
  assert sweep.run_is_done(notes(), final, 4)


def test_read_metrics_skips_a_line_cut_short(tmp_path):
  _write_metrics(str(tmp_path), _records(2.0))
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 6, "train_lo')
  assert read_metrics(str(tmp_path)) == _records(2.0)
  assert read_metrics(str(tmp_path / 'absent')) == []


def test_summarize_takes_final_eval_last_train_loss_median_speed():
  summary = sweep.summarize(_records(2.5, steps=6))
  assert summary == {'final_step': 6, 'eval_loss': 2.5,
                     'eval_perplexity': 2.0 ** 2.5, 'train_loss': 3.0,
                     'tokens_per_sec': 20.0}
  assert sweep.summarize([]) == {}
  # The final evaluation's test-split figures come along.
  records = _records(2.5, steps=6)
  records[-1] = dict(records[-1], test_loss=2.75)
  assert sweep.summarize(records)['test_loss'] == 2.75
  columns, _ = sweep.summary_table(
      [{'seed': '0', 'status': 'ok', **sweep.summarize(records)}], ['seed'])
  assert columns.index('test_loss') > columns.index('eval_perplexity')


def test_write_summary_sorts_best_first_failed_last(tmp_path):
  rows = []
  for lr, loss, status in [('0.1', 3.0, 'ok'), ('0.2', None, 'failed'),
                           ('0.3', 1.0, 'failed'), ('0.4', 2.0, 'skipped'),
                           ('0.5', 1.5, 'ok')]:
    workdir = str(tmp_path / cli.run_name({'lr': lr}))
    _write_metrics(workdir, _records(loss) if loss else [])
    rows.append({'lr': lr, 'status': status,
                 **sweep.summarize(read_metrics(workdir)),
                 'wall_s': 1.25})
  rows[-1].update(tokens_per_sec=111_532.7, wall_s=12_345.6)
  table = sweep.write_summary(str(tmp_path), rows, ['lr'])

  with open(tmp_path / 'summary.csv') as f:
    written = list(csv.DictReader(f))
  # Failed runs last whatever their loss, then by name.
  assert [r['lr'] for r in written] == ['0.5', '0.4', '0.1', '0.2', '0.3']
  assert list(written[0]) == ['lr', 'status', 'final_step', 'eval_loss',
                              'eval_perplexity', 'train_loss',
                              'tokens_per_sec', 'wall_s']
  assert float(written[0]['eval_loss']) == 1.5
  assert written[-2]['eval_loss'] == '' and written[-2]['final_step'] == ''
  lines = table.splitlines()
  assert (tmp_path / 'summary.md').read_text() == table
  assert len(lines) == 2 + 5 and lines[0].startswith('| lr | status |')
  assert lines[2].startswith('| 0.5 | ok | 4 | 1.5 |')
  assert lines[2].endswith('| 111533 | 12346 |'), lines[2]
  assert lines[3].endswith('| 1.25 |'), lines[3]


def test_run_one_reports_a_failure_with_the_last_log_line(tmp_path):
  workdir = str(tmp_path / 'run')
  status, wall, error = sweep.run_one(
      [sys.executable, '-c', 'print("working"); print("error: boom"); '
       'raise SystemExit(3)'], workdir)
  assert (status, error) == ('failed', 'error: boom') and wall > 0
  status, _, error = sweep.run_one([sys.executable, '-c', 'pass'], workdir)
  assert (status, error) == ('ok', '')
  with open(os.path.join(workdir, 'train.log')) as f:
    assert f.read() == 'working\nerror: boom\n'  # appended, never truncated


@pytest.mark.parametrize('name', ['SIGINT', 'SIGTERM', 'SIGHUP'])
def test_run_one_reports_a_stopped_run_as_interrupted(tmp_path, name):
  """Not as failed with its last log line (an ordinary progress line)."""
  # Python's own Ctrl-C handler and the default hangup, even where the
  # test runner's workers ignore SIGINT or a `nohup` SIGHUP (a child
  # inherits that, and would not stop).
  code = ('import os, signal; '
          'signal.signal(signal.SIGINT, signal.default_int_handler); '
          'signal.signal(signal.SIGHUP, signal.SIG_DFL); '
          f'print("step 500"); os.kill(os.getpid(), signal.{name})')
  status, _, error = sweep.run_one([sys.executable, '-c', code],
                                   str(tmp_path / 'run'))
  assert (status, error) == ('interrupted', '')


def test_no_run_starts_once_the_sweep_is_stopping(tmp_path):
  """A run picked up as the sweep stops would train on, unwatched."""
  runs = sweep.Runs()
  runs.stop()
  marker = tmp_path / 'ran'
  status, _, _ = sweep.run_one(
      [sys.executable, '-c', f'open({str(marker)!r}, "w")'],
      str(tmp_path / 'run'), runs=runs)
  assert status == 'interrupted' and not marker.exists()


@pytest.mark.parametrize('args, message', [
    (['--preset=nope', '--grid=seed=1'], "unknown preset 'nope'"),
    (['--preset=shakespeare_char_cpu', '--grid=no_such_key=1,2'],
     "'no_such_key' is not a key"),
    (['--preset=shakespeare_char_cpu', '--grid=seed'], 'malformed --grid'),
    (['--preset=shakespeare_char_cpu', '--grid=seed=1',
      '--config.num_layers=two'], 'not a int'),
    (['--preset=shakespeare_char_cpu', '--grid=data_dir=/d/x,/d_x'],
     'give one run name'),
    (['--preset=ptb_lstm_small', '--grid=num_train_steps=4,8'],
     'counts epochs (num_epochs=13)'),
    (['--preset=ptb_lstm_small', '--grid=seed=1',
      '--config.min_count=2'], 'min_count applies to'),
    (['--preset=shakespeare_char_cpu', '--grid=activation=a b,relu'],
     "activation is one of gelu, gelu_tanh, relu, not 'a b'"),
    (['--preset=shakespeare_char_cpu', '--grid=batch_size=4,0'],
     'batch_size must be at least 1'),
    (['--preset=shakespeare_char_cpu', '--grid=seed=1',
      '--config.learning_rate=nan'], 'learning_rate must be a finite'),
    (['--preset=shakespeare_char_cpu', '--grid=use_bias=true,1'],
     'repeats a value'),
    (['--preset=shakespeare_char_cpu', '--grid=learning_rate=1e-3,0.001'],
     'repeats a value'),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, args, message):
  result = _sweep(*args, f'--sweep_dir={tmp_path / "sweep"}')
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ')
  assert message in lines[0]
  assert not os.path.exists(tmp_path / 'sweep')  # nothing was started


def test_sweep_end_to_end_then_skips_finished_runs(tmp_path, tiny_corpus_dir):
  cache = str(tmp_path / 'cache')
  data = {'LM_JAX_DATA': tiny_corpus_dir}
  # The two runs start together on an empty cache: this also checks that
  # concurrent dataset preparation is safe.
  args = ['--preset', 'shakespeare_char_cpu',
          '--grid', 'learning_rate=0.001,0.002', '--parallel', '2',
          '--sweep_dir', str(tmp_path / 'sweep'),
          *TINY_GPT, '--config.num_train_steps=4',
          '--config.eval_every=0', '--config.eval_steps=1',
          '--config.log_every=2', '--config.checkpoint_every=0',
          '--config.final_eval_full=False', f'--config.cache_dir={cache}']
  names = ['learning_rate-0.001', 'learning_rate-0.002']

  first = _sweep(*args, **data)
  assert first.returncode == 0, first.stdout + first.stderr
  for name in names:
    workdir = tmp_path / 'sweep' / name
    assert (workdir / 'train.log').exists()
    assert sweep.is_finished(read_metrics(str(workdir)), 4)
    with open(workdir / 'config.json') as f:  # pass-through and grid values
      config = json.load(f)
    assert config['num_layers'] == 1 and config['cache_dir'] == cache
    assert config['learning_rate'] == float(name.split('-')[1])
  with open(tmp_path / 'sweep' / 'summary.csv') as f:
    rows = list(csv.DictReader(f))
  assert sorted(r['learning_rate'] for r in rows) == ['0.001', '0.002']
  assert all(r['status'] == 'ok' and r['final_step'] == '4' and
             float(r['eval_loss']) > 0 for r in rows)
  assert (tmp_path / 'sweep' / 'summary.md').read_text() in first.stdout
  console = [line.split()[1] for line in first.stdout.splitlines()
             if line.startswith('[')]
  assert sorted(console) == ['ok', 'ok', 'start', 'start']

  second = _sweep(*args, **data)
  assert second.returncode == 0, second.stdout + second.stderr
  # Two threads report the skips, in either order.
  assert sorted(line.split()[1:3] for line in second.stdout.splitlines()
                if line.startswith('[')) == [['skipped', n] for n in names]
  with open(tmp_path / 'sweep' / 'summary.csv') as f:
    assert [r['status'] for r in csv.DictReader(f)] == ['skipped'] * 2

  # Other settings for every run make other runs: not these.
  third = _sweep(*args, '--config.embed_dim=64', **data)
  assert third.returncode == 2, third.stdout + third.stderr
  assert 'use another --sweep_dir' in third.stderr
  # Nor are they another preset's runs of the same names.
  other = ['shakespeare_char' if a == 'shakespeare_char_cpu' else a
           for a in args]
  fourth = _sweep(*other, **data)
  assert fourth.returncode == 2, fourth.stdout + fourth.stderr
  assert "is a run of preset 'shakespeare_char_cpu'" in fourth.stderr


def test_a_sweep_stopped_by_sigterm_stops_its_runs(tmp_path, shared_data_dir):
  """As after Ctrl-C: the run is stopped and noted as interrupted, not left
  training with nobody watching. A hangup it was told to ignore (`nohup`)
  stops nothing."""
  env = command_env(LM_JAX_DATA=shared_data_dir)
  workdir = tmp_path / 'sweep' / 'seed-0'
  # Started as `nohup` starts it: hangups ignored, then exec (a
  # preexec_fn would fork this multithreaded process with Python in the
  # child).
  ignore_hangups = ('import os, signal, sys; '
                    'signal.signal(signal.SIGHUP, signal.SIG_IGN); '
                    'os.execv(sys.executable, [sys.executable, *sys.argv[1:]])')
  proc = subprocess.Popen(
      [sys.executable, '-c', ignore_hangups, '-m', 'experiments.sweep',
       '--preset=shakespeare_char_cpu', '--grid=seed=0',
       f'--sweep_dir={tmp_path / "sweep"}', '--config.num_layers=1',
       '--config.embed_dim=16', '--config.num_heads=1',
       '--config.block_size=8', '--config.batch_size=2',
       '--config.num_train_steps=10000000', '--config.log_every=1',
       '--config.eval_every=0', '--config.checkpoint_every=0',
       f'--config.cache_dir={tmp_path / "cache"}'],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  try:
    deadline = time.monotonic() + 240
    while not read_metrics(str(workdir)):  # the run is training
      assert proc.poll() is None and time.monotonic() < deadline, (
          proc.poll(), (workdir / 'train.log').read_text())
      time.sleep(0.2)
    # Noted before it started: a sweep killed now leaves the notes.
    assert sweep.read_run_file(str(workdir)) == {
        'preset': 'shakespeare_char_cpu', 'settings': {'seed': '0'},
        'overrides': [a for a in proc.args if a.startswith('--config.')],
        'status': 'started'}
    proc.send_signal(signal.SIGHUP)
    steps = len(read_metrics(str(workdir)))
    time.sleep(2)
    assert proc.poll() is None and len(read_metrics(str(workdir))) > steps
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
  finally:
    proc.kill()
  assert proc.returncode == 130, stderr
  assert stderr.strip().splitlines()[-1].startswith('error: interrupted')
  assert sweep.read_run_file(str(workdir))['status'] == 'interrupted'
  steps = len(read_metrics(str(workdir)))
  time.sleep(2)  # nothing trains on
  assert len(read_metrics(str(workdir))) == steps


def test_a_second_sweep_in_a_sweep_dir_in_use_is_one_error_line(tmp_path):
  sweep_dir = tmp_path / 'sweep'
  with atomic_files.held_exclusively(str(sweep_dir)):  # the first sweep
    result = _sweep('--preset=shakespeare_char_ngram', '--grid=seed=1,2',
                    f'--sweep_dir={sweep_dir}')
  assert result.returncode == 2, result.stderr
  assert result.stderr == (f'error: another sweep is running in {sweep_dir}; '
                           'wait for it to end, or use another --sweep_dir\n')
  assert os.listdir(sweep_dir) == []


def test_a_sweep_dir_that_is_a_file_is_one_error_line(tmp_path):
  (tmp_path / 'afile').write_text('')
  for sweep_dir in (tmp_path / 'afile', tmp_path / 'afile' / 'sub'):
    result = _sweep('--preset=shakespeare_char_cpu', '--grid=seed=1,2',
                    f'--sweep_dir={sweep_dir}')
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), lines


def test_runs_that_report_a_true_nll_are_ranked_by_it():
  """Translation's eval_loss is label-smoothed: more smoothing raises it
  whatever the model, so its runs compare by eval_nll."""
  rows = [{'s': '0.0', 'status': 'ok', 'eval_loss': 2.0, 'eval_nll': 2.0},
          {'s': '0.1', 'status': 'ok', 'eval_loss': 2.5, 'eval_nll': 1.9}]
  _, ranked = sweep.summary_table(rows, ['s'])
  assert [r['s'] for r in ranked] == ['0.1', '0.0']


def test_a_run_train_refuses_to_another_sweep_stays_its_sweeps(
    tmp_path, tiny_corpus_dir):
  """A sweep killed during a run's first launch, before the sweep noted
  runs then, left it without notes. Another sweep's settings or preset,
  which train refuses for it, are not noted as the run's: the first sweep
  still resumes it."""
  data = {'LM_JAX_DATA': tiny_corpus_dir}
  workdir = tmp_path / 'sweep' / 'seed-0'
  args = ['--preset=shakespeare_char_cpu', '--grid=seed=0',
          f'--sweep_dir={tmp_path / "sweep"}', *TINY_GPT,
          '--config.num_train_steps=4', '--config.eval_every=0',
          '--config.eval_steps=1', '--config.log_every=2',
          '--config.checkpoint_every=2', '--config.final_eval_full=False',
          f'--config.cache_dir={tmp_path / "cache"}']
  # What the killed sweep left: 2 of the 4 steps and their checkpoint.
  killed = subprocess.run(
      [sys.executable, '-m', 'experiments.train', f'--config={CPU_PRESET}',
       f'--workdir={workdir}', *args[3:], '--config.seed=0',
       '--config.num_train_steps=2'],
      capture_output=True, text=True, env=command_env(**data), timeout=300)
  assert killed.returncode == 0, killed.stderr
  assert os.listdir(workdir / 'checkpoints')

  # (Another preset is refused by train the same way.)
  refused = _sweep(*args, '--config.embed_dim=64', **data)
  assert refused.returncode == 1, refused.stdout + refused.stderr
  assert 'failed  seed-0' in refused.stdout and 'holds' in refused.stdout
  assert sweep.read_run_file(str(workdir)) == {}

  resumed = _sweep(*args, **data)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert '(resuming)' in resumed.stdout
  assert sweep.is_finished(read_metrics(str(workdir)), 4)
  notes = sweep.read_run_file(str(workdir))
  assert notes.pop('wall_s') > 0 and notes == {
      'preset': 'shakespeare_char_cpu', 'settings': {'seed': '0'},
      'overrides': args[3:], 'status': 'ok'}


def test_a_launch_that_cannot_write_stops_the_sweep_in_one_line(
    tmp_path, monkeypatch, capsys):
  """A full disk under one run's launch stops the sweep's other run, with
  the path and why on one line, not a traceback."""
  from absl import flags
  from absl.testing import flagsaver
  started, real_start, real_run_one = [], sweep.Runs.start, sweep.run_one
  full = str(tmp_path / 'sweep' / 'seed-2' / 'train.log')

  def start(self, cmd, log, env):
    proc = real_start(self, cmd, log, env)
    started.append(proc)
    return proc

  def run_one(cmd, workdir, env=None, runs=None):
    if workdir.endswith('seed-2'):
      deadline = time.monotonic() + 60
      while not started and time.monotonic() < deadline:  # seed-1 trains
        time.sleep(0.05)
      raise OSError(errno.ENOSPC, 'No space left on device', full)
    return real_run_one([sys.executable, '-c', 'import time; time.sleep(30)'],
                        workdir, env, runs)

  monkeypatch.setattr(sweep.Runs, 'start', start)
  monkeypatch.setattr(sweep, 'run_one', run_one)
  monkeypatch.setattr(sweep, '_OVERRIDES', [])
  handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
  parsed = flags.FLAGS.is_parsed()
  try:
    with flagsaver.flagsaver():
      flags.FLAGS(['sweep', '--preset=shakespeare_char_cpu',
                   '--grid=seed=1,2', '--parallel=2',
                   f'--sweep_dir={tmp_path / "sweep"}'])
      with pytest.raises(SystemExit) as exited:
        sweep.main(['sweep'])
    assert len(started) == 1
    assert started[0].wait(timeout=10) == -signal.SIGTERM  # stopped
  finally:
    if not parsed:
      flags.FLAGS.unparse_flags()
    for signum, handler in handlers.items():  # main's, for the sweep
      signal.signal(signum, handler)
    for proc in started:
      proc.kill()
  assert exited.value.code == 2
  assert capsys.readouterr().err == (
      f'error: {full}: No space left on device; check the path and its '
      'permissions\n')
  assert sweep.read_run_file(str(tmp_path / 'sweep' / 'seed-1'))[
      'status'] == 'interrupted'
