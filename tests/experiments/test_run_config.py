"""A run's settings: the default workdir, the --config flags, a saved
config.json read back, what a relaunch into an existing run may change,
and the value checks that run before JAX is imported."""

import copy
import importlib
import json
import os

import pytest

from experiments import before_jax, cli, config_checks
from tests.command_line import (CONFIG_DIR, REPO_ROOT, assert_one_error_line,
                                assert_unchanged, python_module, snapshot)


def _preset_config(preset):
  return importlib.import_module(f'experiments.configs.{preset}').get_config()


def test_a_launch_that_changes_the_training_gets_its_own_default_workdir():
  runs = os.path.join(REPO_ROOT, 'runs')
  assert cli.default_workdir('ptb_lstm_small', []) == os.path.join(
      runs, 'ptb_lstm_small')
  # Bookkeeping (evaluation, devices, paths) leaves the run as it is.
  assert cli.default_workdir('ptb_lstm_small', [
      '--config.eval_streams=1', '--config.cpu_devices=2',
      '--config.data_dir=/d']) == os.path.join(runs, 'ptb_lstm_small')
  assert cli.default_workdir('ptb_lstm_small', [
      '--config.seed=1', '--config.matmul_dtype=bfloat16',
      '--config.log_every=5']) == os.path.join(
          runs, 'ptb_lstm_small-matmul_dtype-bfloat16_seed-1')


def test_cpu_devices_on_their_own_make_the_mesh_a_run_asks_for(
    monkeypatch):
  monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1})
  assert before_jax.cpu_device_count(0, 12) == 2  # one a core
  assert before_jax.cpu_device_count(0, 9) == 1  # the batch splits evenly
  assert before_jax.cpu_device_count(0, 12, num_devices=3) == 3
  assert before_jax.cpu_device_count(5, 12, num_devices=3) == 5  # as set


def test_config_overrides_read_both_flag_forms():
  assert cli.config_overrides([
      '--config.seed=3', '--config.activation', 'relu', '--workdir=x',
      '--config.use_bias', '--config.learning_rate', '1e-3']) == {
          'seed': '3', 'activation': 'relu', 'use_bias': 'true',
          'learning_rate': '1e-3'}
  assert cli.default_workdir('p', ['--config.seed', '3']).endswith(
      os.path.join('runs', 'p-seed-3'))


def test_a_run_from_before_a_key_existed_loads_with_its_default(tmp_path,
                                                                 capsys):
  """sample/translate/encode read config.json as saved: a run trained
  before matmul_dtype existed crashed them with an AttributeError."""
  (tmp_path / 'config.json').write_text(json.dumps(
      {'task': 'lm', 'model': 'gpt', 'corpus': 'tiny_shakespeare',
       'embed_dim': 48}))
  config = cli.load_run_config(str(tmp_path))
  assert config.embed_dim == 48 and config.matmul_dtype == ''
  with pytest.raises(SystemExit):
    cli.load_run_config(str(tmp_path / 'config.json'))
  assert 'is a file, not a run directory' in capsys.readouterr().err


def test_a_run_that_took_another_runs_architecture_relaunches(tmp_path):
  """init_from copies the source run's sizes into config.json; relaunched
  unchanged, the run must resume, not be refused for sizes it never set."""
  # pylint: disable=import-outside-toplevel
  from experiments.configs import sst2_minilm
  config = sst2_minilm.get_config()
  source, run = tmp_path / 'minilm', tmp_path / 'run'
  source.mkdir()
  # The source's other settings (a whole run's config.json) match the
  # run's too: only its architecture is taken, so they may not change.
  (source / 'config.json').write_text(json.dumps(
      {**json.loads(config.to_json_best_effort()), 'task': 'mlm',
       'num_layers': 6, 'num_heads': 12, 'embed_dim': 384}))
  config.init_from = str(source)
  saved = json.loads(config.to_json_best_effort())
  saved.update(num_layers=6, num_heads=12, embed_dim=384)
  (run / 'checkpoints' / '1052').mkdir(parents=True)
  (run / 'config.json').write_text(json.dumps(saved))
  cli.check_workdir(config, str(run))  # no SystemExit
  for key, value in [('seed', config.seed + 1), ('batch_size', 16),
                     ('weight_decay', 0.5)]:
    changed = copy.deepcopy(config)
    setattr(changed, key, value)
    with pytest.raises(SystemExit):
      cli.check_workdir(changed, str(run))


def test_a_relaunch_naming_the_same_pretrained_run_otherwise_resumes(
    tmp_path, monkeypatch):
  """`--config.pretrained_lm=lm` then `=$PWD/lm/`: one run, spelt twice."""
  # pylint: disable=import-outside-toplevel
  from experiments.configs import sst2_ulmfit
  monkeypatch.chdir(tmp_path)
  run = tmp_path / 'run'
  (run / 'checkpoints' / '10').mkdir(parents=True)
  config = sst2_ulmfit.get_config()
  config.pretrained_lm = 'lm'
  cli.resolve_paths(config)
  assert config.pretrained_lm == str(tmp_path / 'lm')
  (run / 'config.json').write_text(config.to_json_best_effort())
  config.pretrained_lm = str(tmp_path / 'lm') + '/'
  cli.check_workdir(config, str(run))  # no SystemExit
  previous = json.loads((run / 'config.json').read_text())
  previous['pretrained_lm'] = 'lm'  # recorded as typed, before 12-06
  (run / 'config.json').write_text(json.dumps(previous))
  cli.check_workdir(config, str(run))
  config.pretrained_lm = str(tmp_path / 'other_lm')
  with pytest.raises(SystemExit):
    cli.check_workdir(config, str(run))


def test_a_relaunch_refused_for_a_changed_setting_says_what_to_do(
    tmp_path, capsys):
  """Without the flag: the first launch's flag left out, or (as for
  `./launch.sh quickstart`, which takes no flags) a pull that changed the
  preset. The advice names the flag that resumes and the folder to move."""
  # pylint: disable=import-outside-toplevel
  from experiments.configs import shakespeare_char_cpu
  run = tmp_path / 'run'
  (run / 'checkpoints' / '10').mkdir(parents=True)
  config = shakespeare_char_cpu.get_config()
  (run / 'config.json').write_text(config.to_json_best_effort())
  config.dropout_rate = 0.1
  for overridden, advice in [
      ({'dropout_rate'}, 'drop those overrides'),
      # With the flag alone, the default workdir would be another.
      ((), f'relaunch with --workdir {run} --config.dropout_rate=0.0; to '
           f'train it anew, move {run} away')]:
    with pytest.raises(SystemExit):
      cli.check_workdir(config, str(run), overridden)
    assert advice in capsys.readouterr().err
  # A value no --config flag can give (None) gets no flag to repeat.
  saved = json.loads((run / 'config.json').read_text())
  (run / 'config.json').write_text(json.dumps({**saved,
                                               'dropout_rate': None}))
  with pytest.raises(SystemExit):
    cli.check_workdir(config, str(run))
  err = capsys.readouterr().err
  assert f'move {run} away to train it anew' in err and '--config.' not in err


def test_relaunching_a_counting_run_with_other_settings_is_refused(
    run_cli, tiny_corpus_dir, tmp_path):
  """An n-gram run has no checkpoints; its results are its records."""
  workdir = str(tmp_path / 'run')
  preset = os.path.join(CONFIG_DIR, 'shakespeare_char_ngram.py')
  first = run_cli(python_module('experiments.train', f'--config={preset}',
                          f'--workdir={workdir}', '--config.ngram_order=2'),
                  LM_JAX_DATA=tiny_corpus_dir)
  assert first.returncode == 0, first.stderr
  before = snapshot(workdir)
  again = run_cli(python_module('experiments.train', f'--config={preset}',
                          f'--workdir={workdir}', '--config.ngram_order=3'),
                  LM_JAX_DATA=tiny_corpus_dir)
  assert_one_error_line(again)
  assert 'ngram_order=2 (now 3)' in again.stderr
  assert_unchanged(workdir, before)


def test_the_value_checks_know_the_library_choices():
  """config_checks runs before jax or tfds may be imported, so its
  lists are copies of the library's: they must not drift apart."""
  # pylint: disable=import-outside-toplevel
  from lm_jax.data.builders.glue_tsv import DATASETS
  from lm_jax.nn.transformer import ACTIVATIONS
  from lm_jax.train.steps import NORMALIZE_BY
  assert config_checks.CHOICES['activation'] == tuple(ACTIVATIONS)
  assert config_checks.CHOICES['normalize_loss_by'] == NORMALIZE_BY
  assert config_checks.GLUE_CORPORA == tuple(DATASETS)


@pytest.mark.parametrize('key', sorted(config_checks.READ_ONLY_BY))
def test_a_setting_only_some_runs_read_is_refused_elsewhere(key, capsys):
  """A GPT reads none of them: set, each would be silently ignored."""
  # pylint: disable=import-outside-toplevel
  from experiments.configs import shakespeare_char_cpu
  config = shakespeare_char_cpu.get_config()
  config_checks.check_values(config)  # at their defaults they pass
  config[key] = {bool: True, int: 1, float: 0.1,
                 str: 'runs/x'}[type(config[key])]
  with pytest.raises(SystemExit):
    config_checks.check_values(config)
  assert f"{key} applies to " in capsys.readouterr().err


def test_a_refused_setting_names_the_setting_that_rules_it_out(capsys):
  """A recurrent LM read in random windows has the right model: the
  message must blame the batching."""
  # pylint: disable=import-outside-toplevel
  from experiments.configs import ptb_lstm_small
  config = ptb_lstm_small.get_config()
  config.lm_batching, config.eval_streams = 'random_windows', 4
  with pytest.raises(SystemExit):
    config_checks.check_values(config)
  assert ("not model 'rnn_lm' with lm_batching 'random_windows'"
          in capsys.readouterr().err)


@pytest.mark.parametrize('preset', ['sst2_bilstm', 'udpos_bilstm',
                                    'udpos_bilm'])
def test_word_dropout_is_taken_where_the_run_applies_it(preset):
  """The classifier, the tagger and the bi-LM read it (their presets set
  it); a GPT is refused it (the test above)."""
  config = _preset_config(preset)
  assert config.word_dropout_rate > 0 and 'word_dropout_rate' in (
      config_checks.READ_ONLY_BY)
  config_checks.check_values(config)  # no SystemExit


@pytest.mark.parametrize('preset, args, refused', [
    # Vocabularies that are the corpus's own, or another run's.
    ('ptb_lstm_small', ['--config.min_count=2'], True),
    ('shakespeare_char_cpu', ['--config.min_count=2'], True),
    ('sst2_ulmfit', ['--config.min_count=2'], True),
    ('udpos_bilstm_elmo', ['--config.min_count', '2'], True),
    # Vocabularies built from the run's own training text.
    ('sst2_lm', ['--config.min_count=1'], False),
    ('sst2_bilstm', ['--config.min_count', '2'], False),
    ('udpos_bilstm', ['--config.min_count=2'], False),
    ('sst2_bilm', ['--config.min_count=2'], False),
    ('ptb_word2vec_sg', ['--config.min_count=2'], False),
    # A preset's own min_count is not the command line's.
    ('sst2_lm', ['--config.corpus=ptb'], False),
    # Architecture settings of the other family of models.
    ('shakespeare_char_cpu', ['--config.hidden_size=256'], True),
    ('shakespeare_char_cpu', ['--config.cell=gru'], True),
    ('multi30k_transformer', ['--config.hidden_size=256'], True),
    ('sst2_bilm', ['--config.cell=gru'], True),
    ('udpos_bilstm', ['--config.bidirectional=false'], True),
    ('ptb_lstm_small', ['--config.num_heads=2'], True),
    ('bert_mlm_small', ['--config.positional=sinusoidal'], True),
    ('ptb_kn5', ['--config.num_heads=2'], True),  # no model at all
    ('shakespeare_char_cpu', ['--config.num_heads=2',
                              '--config.positional=sinusoidal'], False),
    ('sst2_bilstm', ['--config.hidden_size=128', '--config.cell=gru',
                     '--config.bidirectional=false'], False),
    ('multi30k_gru_bahdanau', ['--config.hidden_size=128'], False),
    ('sst2_bilm', ['--config.hidden_size=128'], False),
    ('bert_mlm_small', ['--config.num_heads=2'], False),
    # The run length, given twice.
    ('ptb_lstm_small', ['--config.num_train_steps', '5'], True),
    ('ptb_lstm_small', ['--config.num_epochs=0',
                        '--config.num_train_steps=5'], False),
])
def test_a_setting_given_where_the_run_ignores_it_is_refused(
    preset, args, refused, capsys):
  config = _preset_config(preset)
  given = cli.config_overrides(args)
  for key, value in given.items():
    config[key] = type(config[key])(value)
  if not refused:
    config_checks.check_given(config, args)
    return
  with pytest.raises(SystemExit):
    config_checks.check_given(config, args)
  error = capsys.readouterr().err
  assert (' applies to ' in error) != ('counts epochs' in error)


def test_every_preset_passes_the_checks():
  for name in sorted(os.listdir(CONFIG_DIR)):
    if name.endswith('.py') and name not in ('base.py', '__init__.py'):
      config = _preset_config(name[:-3])
      config_checks.check_values(config)  # no SystemExit
      config_checks.check_given(config, [])


@pytest.mark.parametrize('preset, key, value', [
    ('ptb_word2vec_sg', 'text_file', 'corpus.txt'),
    ('ptb_word2vec_sg', 'word2vec_cbow', True),
    ('sst2_bilstm', 'sentence_markers', True),
    ('sst2_bilstm', 'sentence_norm', True),
    ('sst2_bilstm', 'pooling_dropout', True),
    ('sst2_bilstm', 'mlp_dim', 64),
    ('udpos_bilstm', 'elmo_bilm', 'runs/udpos_bilm'),
])
def test_a_setting_is_taken_where_the_run_reads_it(preset, key, value):
  config = _preset_config(preset)
  config[key] = value
  config_checks.check_values(config)  # no SystemExit


@pytest.mark.parametrize('preset, key, value, this_run', [
    ('ptb_fasttext', 'word2vec_cbow', True, "not model 'fasttext'"),
    ('sst2_bert_small', 'sentence_markers', True, "model 'bert'"),
    ('sst2_bert_small', 'elmo_bilm', 'runs/sst2_bilm', "model 'bert'"),
    ('sst2_bert_small', 'mlp_dim', 64, "model 'bert'"),
    # Its feed-forward width is mlp_ratio x embed_dim, as the GPT's.
    ('multi30k_transformer', 'mlp_dim', 64, "model 'transformer_seq2seq'"),
    ('ptb_lstm_small', 'text_file', 'corpus.txt', "not task 'lm'"),
])
def test_a_setting_the_run_ignores_is_refused(preset, key, value, this_run,
                                              capsys):
  config = _preset_config(preset)
  config[key] = value
  with pytest.raises(SystemExit):
    config_checks.check_values(config)
  error = capsys.readouterr().err
  assert f'{key} applies to ' in error and this_run in error


@pytest.mark.parametrize('key, value, message', [
    ('length_multiple', 0, 'length_multiple must be at least 1'),
    ('type_vocab_size', 0, 'type_vocab_size must be at least 1'),
    ('max_positions', 0, 'max_positions must be at least 1'),
    ('mlm_max_predictions', 0, 'mlm_max_predictions must be at least 1'),
    ('mlp_hidden_dim', -4, 'mlp_hidden_dim must be 0 or more'),
    ('mlm_rate', 0.0, 'mlm_rate must be in (0, 1]'),
    ('mlm_rate', 1.5, 'mlm_rate must be in (0, 1]'),
    ('mlm_mask_prob', 0.95, 'sum to at most 1, not 0.95 and 0.1'),
    ('mlm_random_prob', -0.1, 'must be 0 or more'),
])
def test_bert_sizes_and_masking_rates_no_run_can_use_are_refused(
    key, value, message, capsys):
  # pylint: disable=import-outside-toplevel
  from experiments.configs import bert_mlm_small
  config = bert_mlm_small.get_config()
  config_checks.check_values(config)
  config[key] = value
  with pytest.raises(SystemExit):
    config_checks.check_values(config)
  assert message in capsys.readouterr().err


@pytest.mark.parametrize('args, refused', [
    (['--config.num_layers=2'], True),
    (['--config.embed_dim', '64'], True),
    (['--config.wordpiece_vocab_size=100'], True),
    (['--config.lower_case=false'], True),
    (['--config.learning_rate=1e-4', '--config.seed=2'], False),
])
def test_init_from_refuses_the_architecture_it_replaces(args, refused,
                                                        capsys):
  """The run it continues sets them: given, they would be replaced."""
  # pylint: disable=import-outside-toplevel
  from experiments.configs import sst2_bert_small
  config = sst2_bert_small.get_config()
  config.init_from = 'runs/bert_mlm_small'
  if not refused:
    config_checks.check_given(config, args)
    return
  with pytest.raises(SystemExit):
    config_checks.check_given(config, args)
  assert 'comes from the run init_from names' in capsys.readouterr().err
