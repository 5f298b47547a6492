"""Tests of lm_jax.tasks.word_embeddings through the training loop: on a
synthetic two-topic corpus, every model puts words of one topic closer to
each other than to the other topic's; the final evaluation's metrics and
vectors.txt; fastText vectors for unseen words; the neighbours command.
"""

import os
import subprocess
import sys
import types

import numpy as np
import pytest

from experiments.configs import base
from lm_jax import tasks
from lm_jax.evaluation import word_similarity
from lm_jax.train import loop
from tests.command_line import REPO_ROOT

ANIMALS = ['cat', 'dog', 'horse', 'cow', 'sheep', 'goat']
VEHICLES = ['car', 'bus', 'truck', 'train', 'plane', 'boat']
FILLERS = ['the', 'a', 'and', 'of']


@pytest.fixture(scope='module')
def corpus_dir(tmp_path_factory):
  """A text file of 3,000 sentences, each mostly about animals or about
  vehicles, and a tiny similarity set and analogy file."""
  root = tmp_path_factory.mktemp('topics')
  rng = np.random.default_rng(0)
  lines = []
  for _ in range(3000):
    topic, other = (ANIMALS, VEHICLES) if rng.random() < 0.5 else (
        VEHICLES, ANIMALS)
    # One stray word of the other topic: GloVe fits only the co-occurrences
    # that happen, so the two topics must meet, less often.
    words = (list(rng.choice(topic, 5)) + [rng.choice(other)]
             + list(rng.choice(FILLERS, 2)))
    lines.append(' '.join(rng.permutation(words)))
  (root / 'topics.txt').write_text('\n'.join(lines) + '\n')
  sets = root / 'sets'
  sets.mkdir()
  (sets / word_similarity.WS353).write_text(
      '# a\n# b\ncat\tdog\t9\ncar\tbus\t9\ncow\tsheep\t8\ncat\tcar\t1\n'
      'dog\ttruck\t1\nhorse\tplane\t2\nunicorn\tcat\t5\n')
  (sets / word_similarity.ANALOGIES).write_text(
      ': family\ncat dog car bus\n')
  return root


def _config(corpus_dir, model, **overrides):
  c = base.get_config()
  c.task, c.model = 'embeddings', model
  c.text_file = str(corpus_dir / 'topics.txt')
  c.similarity_dir = str(corpus_dir / 'sets')
  c.min_count, c.embed_dim, c.window = 1, 16, 3
  c.negatives, c.subsample, c.noise_power = 3, 0.0, 0.75
  c.batch_size, c.share_negatives = 256, 8
  c.num_train_steps = 150
  c.optimizer, c.schedule, c.warmup_steps = 'sgd', 'linear', 0
  c.learning_rate, c.min_learning_rate = 0.025 * 256, 0.0
  c.grad_clip_norm = 0.0
  c.eval_every, c.eval_steps, c.log_every = 0, 2, 50
  c.checkpoint_every, c.async_checkpoint = 0, False
  c.num_devices = 1
  c.fasttext_buckets = 2000
  c.update(overrides)
  return c


MODELS = {
    'skipgram': dict(model='word2vec'),
    'cbow': dict(model='word2vec', word2vec_cbow=True,
                 learning_rate=0.05 * 256),
    'fasttext': dict(model='fasttext', learning_rate=0.05 * 256),
    'glove': dict(model='glove', optimizer='adagrad', adagrad_initial=0.0,
                  schedule='constant', learning_rate=0.1, batch_size=64,
                  glove_x_max=10.0),
}


def _topics(vectors: word_similarity.WordVectors) -> tuple[float, float]:
  """(Mean cosine within a topic minus mean cosine across topics, the
  fraction of topic words whose nearest other topic word shares their
  topic)."""
  unit = vectors.unit[[vectors.index[w] for w in ANIMALS + VEHICLES]]
  cosines = unit @ unit.T
  same = np.kron(np.eye(2), np.ones((6, 6))).astype(bool)
  off = ~np.eye(12, dtype=bool)
  margin = cosines[same & off].mean() - cosines[~same].mean()
  np.fill_diagonal(cosines, -np.inf)
  nearest = cosines.argmax(axis=1)
  purity = np.mean(nearest // 6 == np.arange(12) // 6)
  return float(margin), float(purity)


@pytest.mark.parametrize('name', sorted(MODELS))
def test_related_words_end_up_closer(name, corpus_dir, tmp_path):
  config = _config(corpus_dir, **MODELS[name])
  results = loop.train_and_evaluate(config, str(tmp_path))
  vectors = word_similarity.WordVectors.load_word2vec_text(
      str(tmp_path / 'vectors.txt'))
  assert len(vectors.words) == 16 and vectors.vectors.shape[1] == 16
  margin, purity = _topics(vectors)
  # GloVe's vectors share a large common direction: smaller margins.
  assert margin > (0.1 if name == 'glove' else 0.3)
  assert purity == 1.0
  assert results['eval_ws353_coverage'] == pytest.approx(6 / 7)
  assert results['eval_ws353_spearman'] > 0.5
  assert results['eval_analogy_coverage'] == 1.0
  assert 'eval_simlex999_spearman' not in results  # no such file here
  assert np.isfinite(results['eval_loss'])


def test_untrained_vectors_show_no_topics(corpus_dir):
  # The margin above is not a property of the corpus or the initialisation.
  task = tasks.make_task(_config(corpus_dir, 'word2vec'))
  task.prepare()
  import jax  # pylint: disable=import-outside-toplevel
  params = task.model.init(jax.random.key(0),
                           task.dummy_batch()['inputs'])['params']
  vectors = word_similarity.WordVectors(task.vocab.words,
                                        task.embeddings(params))
  margin, purity = _topics(vectors)
  assert abs(margin) < 0.1 and purity < 0.8


def test_exact_validation_pass_covers_every_pair_once(corpus_dir):
  task = tasks.make_task(_config(corpus_dir, 'word2vec'))
  task.prepare()
  batches = list(task.eval_batches(slice(None), full=True))
  examples = task._pair_batches('validation', 1).examples_per_epoch
  assert sum(b['weights'].sum() for b in batches) == examples
  assert len(list(task.eval_batches(slice(None), full=False))) == 2
  assert task.steps_per_epoch == -(-examples // 256)


@pytest.mark.parametrize('batch_size,share,devices',
                         [(256, 128, 4), (256, 3, 1), (256, 0, 1)])
def test_negative_groups_that_do_not_split_over_the_devices_are_refused(
    corpus_dir, batch_size, share, devices):
  task = tasks.make_task(_config(corpus_dir, 'word2vec', num_devices=devices,
                                 batch_size=batch_size, share_negatives=share))
  with pytest.raises(ValueError, match='share_negatives'):
    task.prepare()


def test_a_resume_on_a_second_host_writes_no_vectors_and_finishes(
    corpus_dir, tmp_path, monkeypatch):
  """Only the first host writes vectors.txt. The resume check once ran
  save_assets into a temporary folder, which then became every other
  host's output folder: their final evaluation wrote into a deleted one."""
  config = _config(corpus_dir, 'word2vec', num_train_steps=4,
                   checkpoint_every=2, similarity_dir='')
  loop.train_and_evaluate(config, str(tmp_path))
  os.remove(tmp_path / 'vectors.txt')
  import jax  # pylint: disable=import-outside-toplevel

  class SecondHost(types.ModuleType):  # jax as the loop sees it on host 1
    def __getattr__(self, name):
      return getattr(jax, name)

  second = SecondHost('jax')
  second.process_index = lambda: 1
  monkeypatch.setattr(loop, 'jax', second)
  config.num_train_steps = 6
  loop.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / 'vectors.txt').exists()
  assert sorted(os.listdir(tmp_path / 'checkpoints'))[-1] == '6'


@pytest.mark.parametrize('model', ['word2vec', 'fasttext'])
def test_negative_sampling_refuses_gradient_accumulation(corpus_dir, model):
  task = tasks.make_task(_config(corpus_dir, model, grad_accum_steps=2))
  with pytest.raises(ValueError, match='grad_accum_steps'):
    task.prepare()


def test_fasttext_unseen_word_and_neighbours_command(corpus_dir, tmp_path):
  config = _config(corpus_dir, **MODELS['fasttext'])
  loop.train_and_evaluate(config, str(tmp_path))
  task = tasks.make_task(config)
  task.prepare()
  _, params = loop.restore_params(str(tmp_path), config, task.model,
                                  task.dummy_batch()['inputs'])
  unseen = task.word_vector(params, 'cats')
  assert unseen.shape == (16,) and np.all(np.isfinite(unseen))
  vectors = word_similarity.WordVectors(task.vocab.words,
                                        task.embeddings(params))
  # 'cats' shares '<ca', 'cat', '<cat' with 'cat' and nothing with 'bus'.
  cat, bus = vectors.unit[vectors.index['cat']], vectors.unit[
      vectors.index['bus']]
  unseen = unseen / np.linalg.norm(unseen)
  assert unseen @ cat > unseen @ bus

  env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS='cpu')
  run = subprocess.run(
      [sys.executable, '-m', 'experiments.neighbors', f'--workdir={tmp_path}',
       '--word=dog', '--k=3', f'--export={tmp_path / "out.txt"}'],
      capture_output=True, text=True, cwd=REPO_ROOT, env=env, check=True)
  lines = [l for l in run.stdout.splitlines() if not l.startswith('#')]
  assert len(lines) == 3
  assert sum(l.split()[1] in ANIMALS for l in lines) >= 2
  assert os.path.exists(tmp_path / 'out.txt')
  missing = subprocess.run(
      [sys.executable, '-m', 'experiments.neighbors', f'--workdir={tmp_path}',
       '--word=zzz'], capture_output=True, text=True, cwd=REPO_ROOT, env=env)
  assert missing.returncode == 0  # fastText composes even 'zzz'
  assert 'unseen' in missing.stdout
