"""Bad input on the real command line: `python -m experiments.train` and
`python -m experiments.sample`, in subprocesses (launch.sh's own checks:
test_launch_sh.py; a run's settings and relaunches: test_run_config.py).

The contract (README, "Command contract"): bad input stops with exactly one
`error:` line on stderr and a non-zero exit code, before anything in the
workdir is touched: a new workdir is not created and an existing one keeps
its files byte for byte.

No test needs the network: a `sitecustomize` shim on the subprocess's path
makes host names unresolvable, as on a machine without internet.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from experiments import cli
from tests.command_line import (CONFIG_DIR, CPU_PRESET, REPO_ROOT, TINY_GPT,
                                assert_one_error_line, assert_unchanged,
                                command_env, python_module, snapshot)


# Each case's arguments and a fragment of its message. The corpus is
# there (but for 'missing_data'), so each error is the one its case is
# about, not the missing data's.
BAD_TRAIN_ARGS = {
    'unknown_preset': (['--config=' + os.path.join(CONFIG_DIR,
                                                   'nosuchpreset.py')],
                       'cannot load the preset file'),
    'unknown_config_key': (['--config=' + CPU_PRESET,
                            '--config.no_such_key=1'],
                           "unknown config key 'no_such_key'"),
    'int_key_given_text': (['--config=' + CPU_PRESET,
                            '--config.num_layers=abc'],
                           '--config.num_layers=abc'),
    'float_key_given_text': (['--config=' + CPU_PRESET,
                              '--config.learning_rate=fast'],
                             '--config.learning_rate=fast'),
    'missing_data': (['--config=' + CPU_PRESET],
                     'tiny_shakespeare/input.txt is not under the data dir'),
    'data_dir_not_there': (['--config=' + CPU_PRESET,
                            '--config.data_dir=/nonexistent/corpora'],
                           'the data dir /nonexistent/corpora (from '
                           '--config.data_dir) is not a folder'),
    'no_micro_batches': (['--config=' + CPU_PRESET,
                          '--config.grad_accum_steps=0'],
                         'grad_accum_steps must be at least 1'),
    'empty_batch': (['--config=' + CPU_PRESET, '--config.batch_size=0'],
                    'batch_size must be at least 1'),
    'no_heads': (['--config=' + CPU_PRESET, '--config.num_heads=0'],
                 'num_heads must be at least 1'),
    'dropout_rate_past_one': (['--config=' + CPU_PRESET,
                               '--config.dropout_rate=1.5'],
                              'dropout_rate must be in [0, 1)'),
    'unknown_activation': (['--config=' + CPU_PRESET,
                            '--config.activation=foo'],
                           "activation is one of gelu, gelu_tanh, relu, not"),
    'backwards_profile_window': (['--config=' + CPU_PRESET,
                                  '--config.profile_steps=5:2'],
                                 'profile_steps is START:STOP'),
    'profile_window_from_step_0': (['--config=' + CPU_PRESET,
                                    '--config.profile_steps=0:2'],
                                   'profile_steps is START:STOP'),
    'keep_no_checkpoints': (['--config=' + CPU_PRESET,
                             '--config.keep_checkpoints=0'],
                            'keep_checkpoints must be at least 1'),
    'steps_where_epochs_count': (['--config=' + CPU_PRESET,
                                  '--config.num_epochs=2',
                                  '--config.num_train_steps=5'],
                                 'this run counts epochs (num_epochs=2)'),
    'eval_streams_of_a_gpt': (['--config=' + CPU_PRESET,
                               '--config.eval_streams=1'],
                              'eval_streams applies to a recurrent LM read '
                              "in contiguous streams (model 'rnn_lm', "
                              "lm_batching 'contiguous'), not model 'gpt' "
                              "with lm_batching 'random_windows'"),
    'second_bias_of_a_gpt': (['--config=' + CPU_PRESET,
                              '--config.lstm_second_bias=True'],
                             "lstm_second_bias applies to the LSTMs of "
                             "models 'rnn_lm' and 'classifier', not model "
                             "'gpt'"),
    'pretrained_lm_of_a_tagger': (
        ['--config=' + os.path.join(CONFIG_DIR, 'udpos_bilstm.py'),
         '--config.pretrained_lm=runs/sst2_lm'],
        "pretrained_lm applies to a recurrent classifier or LM (task "
        "'classify' with model 'classifier', or 'lm' with 'rnn_lm'), not "
        "task 'tag' with model 'tagger'"),
    'min_count_of_a_ptb_lm': (
        ['--config=' + os.path.join(CONFIG_DIR, 'ptb_lstm_small.py'),
         '--config.min_count=2'],
        "min_count applies to a word vocabulary built from the run's own "
        "training text"),
    'whole_sentences_of_an_lm': (
        ['--config=' + os.path.join(CONFIG_DIR, 'sst2_lm.py'),
         '--config.whole_sentences=True'],
        "whole_sentences applies to the 'classify' task's training "
        "examples, not task 'lm'"),
    'loss_over_time_of_a_classifier': (
        ['--config=' + os.path.join(CONFIG_DIR, 'sst2_bilstm.py'),
         '--config.normalize_loss_by=sequence'],
        "normalize_loss_by 'sequence' is for the 'lm' task"),
    'negative_length_penalty': (['--config=' + CPU_PRESET,
                                 '--config.length_penalty=-1'],
                                'length_penalty must be 0 or more'),
    'negative_warmup': (['--config=' + CPU_PRESET,
                         '--config.warmup_steps=-1'],
                        'warmup_steps must be 0 or more'),
    'key_with_a_path': (['--config=' + CPU_PRESET, '--config.seed.x=1'],
                        '--config.seed.x: a config key is a plain name'),
    'nan_learning_rate': (['--config=' + CPU_PRESET,
                           '--config.learning_rate=nan'],
                          'learning_rate must be a finite number, not nan'),
    'negative_learning_rate': (['--config=' + CPU_PRESET,
                                '--config.learning_rate=-0.001'],
                               'learning_rate must be 0 or more'),
}


@pytest.mark.parametrize('body', ['raise KeyError(1)', 'return os.nope',
                                  "return {}['task']"])
def test_a_preset_that_fails_to_load_is_one_line_blaming_the_preset(
    run_cli, tmp_path, body):
  preset = tmp_path / 'broken.py'
  preset.write_text(f'import os\n\ndef get_config():\n  {body}\n')
  result = run_cli(python_module('experiments.train', f'--config={preset}',
                           f'--workdir={tmp_path / "run"}'))
  assert_one_error_line(result)
  assert 'cannot load the preset' in result.stderr, result.stderr
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.parametrize('case', sorted(BAD_TRAIN_ARGS))
def test_train_bad_input_is_one_error_line_and_leaves_workdir_alone(
    run_cli, tiny_corpus_dir, workdir, case):
  args, message = BAD_TRAIN_ARGS[case]
  before = snapshot(workdir)
  env = {} if case == 'missing_data' else {'LM_JAX_DATA': tiny_corpus_dir}
  result = run_cli(python_module('experiments.train', *args,
                           f'--workdir={workdir}'), **env)
  assert_one_error_line(result)
  assert message in result.stderr, result.stderr
  assert_unchanged(workdir, before)


def test_missing_data_error_names_the_file_and_the_data_dir(run_cli,
                                                            tmp_path):
  empty = tmp_path / 'no_corpora'
  empty.mkdir()
  result = run_cli(python_module('experiments.train', '--config=' + CPU_PRESET,
                           f'--workdir={tmp_path / "run"}'),
                   LM_JAX_DATA=str(empty))
  assert result.returncode != 0
  assert 'tiny_shakespeare/input.txt' in result.stderr
  assert str(empty) in result.stderr


@pytest.mark.parametrize('previous', ['another_model', 'corrupt', 'a_file',
                                      'under_a_file'])
def test_train_into_another_kind_of_run_is_refused_untouched(
    run_cli, tiny_corpus_dir, tmp_path, previous):
  """A GPT launched into an n-gram run's workdir (or one whose config.json
  is unreadable, or a file, or a folder below a file) must not overwrite
  it."""
  path = tmp_path / 'run'
  workdir = path / 'sub' if previous == 'under_a_file' else path
  if previous in ('a_file', 'under_a_file'):
    path.write_text('not a folder')
  else:
    path.mkdir()
    (path / 'config.json').write_text(
        json.dumps({'task': 'lm', 'model': 'ngram', 'corpus':
                    'tiny_shakespeare'}) if previous == 'another_model'
        else '{"task": "lm", "mod')
    (path / 'metrics.jsonl').write_text('{"step": 1, "eval_loss": 1.5}\n')
  before = snapshot(str(path)) if path.is_dir() else path.read_bytes()
  result = run_cli(python_module('experiments.train', '--config=' + CPU_PRESET,
                           f'--workdir={workdir}', *TINY_OVERRIDES),
                   LM_JAX_DATA=tiny_corpus_dir)
  assert_one_error_line(result)
  if path.is_dir():
    assert_unchanged(str(path), before)
  else:
    assert path.read_bytes() == before


def _partial_run(path, config):
  """What a run killed before its first checkpoint leaves behind."""
  os.makedirs(path)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  with open(os.path.join(path, 'tokenizer.json'), 'w') as f:
    f.write(json.dumps({'kind': 'char', 'chars': ['\n', ' ', 'a']}))


@pytest.mark.parametrize('state', ['absent', 'empty', 'no_checkpoint',
                                   'corrupt_config', 'config_a_list',
                                   'corrupt_tokenizer', 'classifier_run'])
def test_sample_without_a_trained_run_is_one_error_line_and_touches_nothing(
    run_cli, make_tiny_config, tmp_path, state):
  path = str(tmp_path / 'run')
  if state == 'empty':
    os.makedirs(path)
  elif state == 'no_checkpoint':
    _partial_run(path, make_tiny_config())
  elif state == 'classifier_run':
    _partial_run(path, make_tiny_config(task='classify'))
  elif state in ('corrupt_config', 'config_a_list'):
    _partial_run(path, make_tiny_config())
    with open(os.path.join(path, 'config.json'), 'w') as f:
      f.write('{"task": "lm", "mod' if state == 'corrupt_config' else '[]')
  elif state == 'corrupt_tokenizer':
    _partial_run(path, make_tiny_config())
    with open(os.path.join(path, 'tokenizer.json'), 'w') as f:
      f.write('{bad')
  before = snapshot(path)
  result = run_cli(python_module('experiments.sample', f'--workdir={path}',
                           '--num_tokens=5'))
  assert_one_error_line(result)
  if state == 'corrupt_tokenizer':
    assert 'tokenizer.json is not a tokenizer file' in result.stderr
  if state == 'classifier_run':
    # It has no checkpoint either, so only the message shows which check
    # refused it.
    assert f"{path} is a 'classify' run; sample needs" in result.stderr
  assert_unchanged(path, before)


def test_sample_refuses_decoding_flags_an_ngram_run_ignores(run_cli,
                                                            tmp_path):
  path = tmp_path / 'run'
  path.mkdir()
  (path / 'config.json').write_text(json.dumps(
      {'task': 'ngram', 'model': 'ngram', 'tokenizer': 'char'}))
  result = run_cli(python_module('experiments.sample', f'--workdir={path}',
                           '--prompt=ROMEO:', '--top_k=1'))
  assert_one_error_line(result)
  assert '--prompt --top_k do not apply to an n-gram run' in result.stderr


def _sample_five(run_cli, path) -> tuple[int, list[str]]:
  """`sample --num_tokens=5` of the run in `path`: the exit code and the
  non-empty stderr lines, less absl's and XLA's own warnings."""
  result = run_cli(python_module('experiments.sample', f'--workdir={path}',
                           '--num_tokens=5'))
  return result.returncode, [
      l for l in result.stderr.splitlines()
      if l.strip() and not l.startswith(('WARNING', 'W1', 'I1'))]


def test_sample_of_a_run_with_only_corrupt_checkpoints_is_one_line(
    run_cli, make_tiny_config, tmp_path):
  """Orbax stops at the first unreadable array; the reads still in flight
  must not print tracebacks around the error line (they did, in some runs
  more than others: this guards the contract, not every interleaving)."""
  from lm_jax.train import loop  # pylint: disable=import-outside-toplevel
  path = tmp_path / 'run'
  loop.train_and_evaluate(make_tiny_config(num_train_steps=2, eval_every=0,
                                           checkpoint_every=0), str(path))
  for root, _, files in os.walk(path / 'checkpoints'):
    for name in files:
      if os.sep + 'd' in root:  # the arrays' data files
        os.truncate(os.path.join(root, name), 10)
  before = snapshot(str(path))
  for _ in range(2):
    code, lines = _sample_five(run_cli, path)
    # The fallback's warning, then the error.
    assert code == 2 and len(lines) == 2 and 'unreadable' in lines[0], lines
    assert lines[1].startswith('error: no readable checkpoint'), lines
  assert_unchanged(str(path), before)


def test_sample_past_a_damaged_newest_checkpoint_warns_in_one_line(
    run_cli, make_tiny_config, tmp_path):
  """An emptied array file fails some of Orbax's reads, whose coroutines,
  collected later, printed 60-line tracebacks each (in 3 runs of 4; two
  runs here miss that 1 time in 16)."""
  from lm_jax.train import loop  # pylint: disable=import-outside-toplevel
  path = tmp_path / 'run'
  loop.train_and_evaluate(make_tiny_config(num_train_steps=2, eval_every=0,
                                           checkpoint_every=1), str(path))
  data = [os.path.join(root, name)
          for root, _, files in os.walk(path / 'checkpoints' / '2' / 'state')
          if os.sep + 'd' in root for name in files]
  os.truncate(max(data, key=os.path.getsize), 0)
  before = snapshot(str(path))
  for _ in range(2):
    code, lines = _sample_five(run_cli, path)
    assert code == 0 and len(lines) == 1 and 'unreadable' in lines[0], lines
    assert 'TensorStore details' not in lines[0], lines
  assert_unchanged(str(path), before)


_DECODING = 'need a finite temperature >= 0, 0 < top_p <= 1 and top_k >= 0'


_COUNTS = 'need num_tokens >= 1 and num_samples >= 1'


# Each case's own message: the workdir does not exist, so a case whose
# check were gone would still fail in one line ("holds no run").
@pytest.mark.parametrize('args, message', [
    (['--temperature=-1'], _DECODING), (['--top_p=0'], _DECODING),
    (['--temperature=nan'], _DECODING), (['--top_k=-2'], _DECODING),
    (['--num_tokens=x'], "flag --num_tokens=x: invalid literal for int()"),
    (['--num_tokens=0'], _COUNTS), (['--num_samples=0'], _COUNTS),
    (['--seed=-1'], '--seed must be in [0, 2**63), not -1'),
    (['--seed=' + '9' * 20], '--seed must be in [0, 2**63), not 999')])
def test_sample_rejects_bad_settings_with_one_error_line(run_cli, tmp_path,
                                                         args, message):
  result = run_cli(python_module('experiments.sample',
                           f'--workdir={tmp_path / "run"}', *args))
  assert_one_error_line(result)
  assert message in result.stderr, result.stderr
  assert not os.path.exists(tmp_path / 'run')


TINY_OVERRIDES = [*TINY_GPT, '--config.num_train_steps=4',
                  '--config.eval_every=0', '--config.eval_steps=1',
                  '--config.log_every=2', '--config.checkpoint_every=0',
                  '--config.final_eval_full=False']


def test_train_then_sample_on_the_command_line(run_cli, tiny_corpus_dir,
                                               tmp_path):
  """The happy path, and a prompt the tokenizer cannot encode."""
  workdir = str(tmp_path / 'run')
  train = run_cli(python_module('experiments.train', '--config=' + CPU_PRESET,
                          f'--workdir={workdir}', *TINY_OVERRIDES),
                  LM_JAX_DATA=tiny_corpus_dir,
                  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  assert train.returncode == 0, train.stderr
  assert re.search(r'^final .*eval_loss=\d', train.stdout, re.M), train.stdout
  # The compiled steps are kept for the next run, under the cache folder.
  assert os.listdir(tmp_path / 'empty_cache' / 'xla')
  with open(os.path.join(workdir, 'config.json')) as f:
    saved = json.load(f)
  assert saved['num_layers'] == 1 and saved['num_train_steps'] == 4
  assert saved['data_dir'] == tiny_corpus_dir

  sample = run_cli(python_module('experiments.sample', f'--workdir={workdir}',
                           '--prompt=First', '--num_tokens=20',
                           '--temperature=0'))
  assert sample.returncode == 0, sample.stderr
  header, rest = sample.stdout.split('\n', 1)
  assert header == f'# {workdir} at step 4'
  text = rest.rsplit('\n---', 1)[0]
  assert text.startswith('First') and len(text) == len('First') + 20

  unknown = run_cli(python_module('experiments.sample', f'--workdir={workdir}',
                            '--prompt=€uro', '--num_tokens=5'))
  assert_one_error_line(unknown)
  assert '€' in unknown.stderr

  # A relaunch resumes the run: it may train longer, not otherwise.
  before = snapshot(workdir)
  changed = run_cli(python_module('experiments.train', '--config=' + CPU_PRESET,
                            f'--workdir={workdir}', *TINY_OVERRIDES,
                            '--config.batch_size=2', '--config.seed=3'),
                    LM_JAX_DATA=tiny_corpus_dir)
  assert_one_error_line(changed)
  assert 'batch_size=4 (now 2), seed=0 (now 3)' in changed.stderr
  assert_unchanged(workdir, before)
  longer = run_cli(python_module('experiments.train', '--config=' + CPU_PRESET,
                           f'--workdir={workdir}', *TINY_OVERRIDES,
                           '--config.num_train_steps=6'),
                   LM_JAX_DATA=tiny_corpus_dir)
  assert longer.returncode == 0, longer.stderr
  assert 'resumed from the checkpoint at step 4' in longer.stderr


def test_a_path_flag_written_with_equals_expands_home(run_cli, tmp_path):
  """As the shell does for `--workdir ~/x`: not a folder named '~' here."""
  home = str(tmp_path / 'home')
  result = run_cli(python_module('experiments.sample', '--workdir=~/nowhere'),
                   HOME=home)
  assert_one_error_line(result)
  assert f'{home}/nowhere holds no run' in result.stderr
  assert cli.expand_home('--prompt=~/x') == '--prompt=~/x'  # not a path
  assert cli.expand_home('--workdir=runs/~x') == '--workdir=runs/~x'


def test_a_path_that_cannot_be_written_is_one_error_line(tmp_path, capsys):
  """run_guarded, which every verb runs under: an OSError (here a folder
  where a file is to be written) names the path instead of a traceback."""
  with pytest.raises(SystemExit) as exit_info:
    cli.run_guarded(lambda: open(tmp_path, 'w'))  # pylint: disable=R1732
  assert exit_info.value.code == 2
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'error: {tmp_path}: ')


def test_a_value_error_without_a_message_is_still_one_line(capsys):
  def no_message():
    raise ValueError()
  with pytest.raises(SystemExit):
    cli.run_guarded(no_message)
  assert capsys.readouterr().err == 'error: ValueError (no message)\n'


def test_an_oserror_about_no_path_is_not_blamed_on_one(tmp_path):
  """A timeout is an OSError too, with no file name: it keeps its
  traceback instead of a misleading 'check the path' line."""
  def timeout():
    raise TimeoutError('the other hosts did not answer')
  with pytest.raises(TimeoutError):
    cli.run_guarded(timeout)


def test_a_reader_that_stops_early_ends_a_command_quietly():
  """`./launch.sh sample ... | head -1`: no traceback once head has gone."""
  code = ('from experiments import cli\n'
          'cli.run_guarded(lambda: [print(i) for i in range(10**6)])\n')
  process = subprocess.Popen([sys.executable, '-c', code], cwd=REPO_ROOT,
                             env=command_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
  assert process.stdout.readline() == b'0\n'
  process.stdout.close()
  _, err = process.communicate(timeout=120)
  assert process.returncode == 1 and not err, err.decode()


def test_only_a_closed_stdout_ends_a_command_quietly(monkeypatch):
  """A broken pipe of the command's own (a subprocess's, a socket's) is an
  error, not a reader that stopped; with no stdout at all (`>&-`), a
  command that succeeded still does."""
  def broken():
    raise BrokenPipeError(32, 'Broken pipe')

  with pytest.raises(BrokenPipeError):
    cli.run_guarded(broken)
  monkeypatch.setattr(sys, 'stdout', None)
  assert cli.run_guarded(lambda: 7) == 7


def test_ctrl_c_of_a_command_that_says_what_comes_next_is_one_line(capsys):
  """A training run stopped by Ctrl-C: one line saying how to resume, exit
  130; other commands keep Python's ways."""
  def interrupted():
    raise KeyboardInterrupt

  with pytest.raises(SystemExit) as exit_info:
    cli.run_guarded(interrupted, interrupted='relaunch it to resume')
  assert exit_info.value.code == 130
  assert capsys.readouterr().err == (
      'error: interrupted; relaunch it to resume\n')
  with pytest.raises(KeyboardInterrupt):
    cli.run_guarded(interrupted)
