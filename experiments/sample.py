"""Samples text from a trained run:

  python -m experiments.sample --workdir DIR [--prompt TEXT] [--num_tokens N]
      [--temperature T] [--top_k K] [--top_p P] [--seed S] [--num_samples M]

n-gram runs sample whole sentences from their chain (up to N tokens each;
the prompt and the temperature / top-k / top-p settings do not apply, and
giving them is an error).
"""

import math
import os

from absl import app
from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained run.')
_PROMPT = flags.DEFINE_string('prompt', '\n', 'Text to continue.')
_NUM_TOKENS = flags.DEFINE_integer('num_tokens', 500, 'Tokens to generate.')
_TEMPERATURE = flags.DEFINE_float('temperature', 0.8, '0 for greedy.')
_TOP_K = flags.DEFINE_integer('top_k', 0, 'Keep the k likeliest (0: all).')
_TOP_P = flags.DEFINE_float('top_p', 1.0, 'Nucleus mass (1.0: all).')
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 1, 'Independent samples.')


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}')
  if not _WORKDIR.value:
    cli.fail('--workdir is required (a folder made by ./launch.sh train)')
  # Written so that NaN fails too.
  if not (_TEMPERATURE.value >= 0 and math.isfinite(_TEMPERATURE.value)
          and 0 < _TOP_P.value <= 1 and _TOP_K.value >= 0):
    cli.fail('need a finite temperature >= 0, 0 < top_p <= 1 and top_k >= 0')
  if _NUM_TOKENS.value < 1 or _NUM_SAMPLES.value < 1:
    cli.fail('need num_tokens >= 1 and num_samples >= 1')
  if not 0 <= _SEED.value < 2**63:  # what numpy and JAX take
    cli.fail(f'--seed must be in [0, 2**63), not {_SEED.value}')
  workdir = _WORKDIR.value
  config = cli.load_run_config(workdir)
  if config.get('task') not in ('lm', 'ngram'):
    cli.fail(f'{workdir} is a {config.get("task")!r} run; sample needs a '
             "language model run (task 'lm' or 'ngram'; for a translation "
             'run use ./launch.sh translate)')
  if config.task == 'ngram':
    ignored = [f'--{name}' for name in ('prompt', 'temperature', 'top_k',
                                        'top_p') if flags.FLAGS[name].present]
    if ignored:
      cli.fail(f'{" ".join(ignored)} do not apply to an n-gram run, which '
               'samples whole sentences from its chain; leave them out')
  cli.setup_logging()

  def sample_ngram():
    import numpy as np
    from lm_jax.models.ngram import NGramLM
    from lm_jax.tasks.ngram_lm import MODEL_FILE, token_text

    path = os.path.join(workdir, MODEL_FILE)
    if not os.path.exists(path):
      raise FileNotFoundError(f'no {MODEL_FILE} in {workdir}; train it first')
    model = NGramLM.from_arpa(
        path, nltk_padding=config.get('ngram_smoothing') == 'kn_nltk')
    rng = np.random.default_rng(_SEED.value)
    joiner = '' if config.tokenizer == 'char' else ' '
    print(f'# {workdir} ({config.ngram_order}-gram)')
    for _ in range(_NUM_SAMPLES.value):
      words = model.vocab.decode(model.sample(rng, _NUM_TOKENS.value))
      if config.tokenizer == 'char':
        words = map(token_text, words)
      print(joiner.join(words))
      print('---')

  def sample():
    import jax
    import numpy as np
    from lm_jax import decode
    from lm_jax.data import tokenizers
    from lm_jax.models import build_model
    from lm_jax.train.loop import restore_params

    tokenizer = tokenizers.load(os.path.join(workdir, 'tokenizer.json'))
    model = build_model(config, tokenizer.vocab_size)
    carry = ()
    if config.get('lm_batching') == 'contiguous' and getattr(
        model, 'recurrent', False):
      carry = decode.empty_cache(model, config.batch_size, 1)
    step, params = restore_params(
        workdir, config, model, np.zeros((1, config.block_size), np.int32),
        carry)
    prompt = tokenizer.encode(_PROMPT.value or '\n')
    if not len(prompt):
      raise ValueError(f'the prompt {_PROMPT.value!r} has no tokens')
    prompts = np.repeat(prompt[None], _NUM_SAMPLES.value, axis=0)
    # A recurrent model's state has no window to outgrow.
    max_length = (len(prompt) + _NUM_TOKENS.value
                  if getattr(model, 'unbounded_context', False)
                  else config.block_size)
    tokens = decode.generate(
        model, params, prompts, _NUM_TOKENS.value,
        jax.random.key(_SEED.value), max_length=max_length,
        temperature=_TEMPERATURE.value, top_k=_TOP_K.value, top_p=_TOP_P.value)
    print(f'# {workdir} at step {step}')
    for row in tokens:
      text = tokenizer.decode(row)
      # Words are spaced by decode, but not from the prompt's last one.
      if (isinstance(tokenizer, tokenizers.WordTokenizer) and _PROMPT.value
          and not _PROMPT.value[-1].isspace() and text[:1] != '\n'):
        text = ' ' + text
      print(_PROMPT.value + text)
      print('---')

  cli.run_guarded(sample_ngram if config.task == 'ngram' else sample)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.flags_parser)
