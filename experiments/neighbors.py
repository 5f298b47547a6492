"""Nearest neighbours of a word in a trained word-embedding run:

  python -m experiments.neighbors --workdir DIR --word WORD [--k 10]
      [--export PATH]

Cosine similarity over the run's vocabulary, from its latest checkpoint.
fastText runs also answer for words never seen in training (their vector is
the mean of their character n-grams'). `--export` writes every vocabulary
word's vector in word2vec's text format (as the run's own vectors.txt).
"""

from absl import app
from absl import flags

from experiments import before_jax, cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained embedding run.')
_WORD = flags.DEFINE_string('word', None, 'The word to find neighbours of.')
_K = flags.DEFINE_integer('k', 10, 'How many neighbours.')
_EXPORT = flags.DEFINE_string('export', None,
                              'Write the vectors here (word2vec text).')


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}')
  if not _WORKDIR.value:
    cli.fail('--workdir is required (a folder made by ./launch.sh train)')
  if not _WORD.value and not _EXPORT.value:
    cli.fail('give --word WORD (and/or --export PATH)')
  if _K.value < 1:
    cli.fail('--k must be at least 1')
  workdir = _WORKDIR.value
  config = cli.load_run_config(workdir)
  if config.task != 'embeddings':
    cli.fail(f'{workdir} is a {config.task!r} run, not a word-embedding run')
  before_jax.set_cpu_devices(1)
  cli.setup_logging()

  def neighbours():
    from lm_jax import tasks
    from lm_jax.evaluation.word_similarity import WordVectors
    from lm_jax.train.loop import restore_params

    task = tasks.make_task(config)
    task.prepare()
    step, params = restore_params(workdir, config, task.model,
                                  task.dummy_batch()['inputs'])
    vectors = WordVectors(task.vocab.words, task.embeddings(params))
    if _EXPORT.value:
      vectors.save_word2vec_text(_EXPORT.value)
      print(f'# wrote {len(vectors.words)} vectors to {_EXPORT.value}')
    if not _WORD.value:
      return
    word = _WORD.value
    query = task.word_vector(params, word)
    if query is None:
      raise ValueError(f'{word!r} is not in the vocabulary of {workdir} '
                       f'({len(task.vocab)} words)')
    known = task.vocab.index.get(word)
    note = '' if known is not None else ' (unseen: composed of its n-grams)'
    print(f'# {workdir} at step {step}: neighbours of {word!r}{note}')
    exclude = [] if known is None else [known]
    for neighbour, cosine in vectors.nearest(query, _K.value, exclude):
      print(f'{cosine:.4f}  {neighbour}')

  cli.run_guarded(neighbours)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.flags_parser)
