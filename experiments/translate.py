"""Translates with a trained run:

  python -m experiments.translate --workdir DIR [--beam_size B]
      [--length_penalty A] [--text "..."] [--attention_png OUT.png]

Sentences come from --text (one per line), else from standard input, one
per line; translations are printed one per line, in order. --beam_size 1
is greedy search; the default is the run's `beam_size`. --attention_png
draws the decoder's attention over the source tokens for the first
sentence: one map for an RNN with attention, one per layer and head of the
Transformer's cross-attention.
"""

import math
import os
import sys

from absl import app
from absl import flags

from experiments import before_jax, cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained translation run.')
_TEXT = flags.DEFINE_string('text', None,
                            'Sentences to translate, one per line; '
                            'default: standard input.')
_BEAM_SIZE = flags.DEFINE_integer('beam_size', 0,
                                  "Beams; 1: greedy; 0: the run's.")
_LENGTH_PENALTY = flags.DEFINE_float(
    'length_penalty', -1.0, "alpha of ((5 + length) / 6) ** alpha; "
    "negative: the run's.")
_ATTENTION_PNG = flags.DEFINE_string(
    'attention_png', None, 'Write the first sentence\'s attention heatmap '
    'here.')


def _lines() -> list[str]:
  """The input lines, stripped; blank ones stay, so that output line i
  answers input line i."""
  text = _TEXT.value if _TEXT.value is not None else sys.stdin.read()
  # '\n' alone ends a line: splitlines() would also cut one at '\x0c' or
  # '\u2028' (text pasted from PDFs and web pages) and answer it twice.
  lines = text.split('\n')
  return [line.strip() for line in lines[:-1 if lines[-1] == '' else None]]


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}')
  if not _WORKDIR.value:
    cli.fail('--workdir is required (a folder made by ./launch.sh train)')
  if _BEAM_SIZE.value < 0:
    cli.fail('--beam_size must be >= 1 (or 0 for the run\'s)')
  if not math.isfinite(_LENGTH_PENALTY.value):
    cli.fail('--length_penalty must be a finite number (negative for the '
             "run's)")
  workdir = _WORKDIR.value
  config = cli.load_run_config(workdir)
  if config.get('task') != 'translate':
    cli.fail(f'{workdir} holds a {config.get("task")!r} run, not a '
             'translation; use ./launch.sh sample for language models')
  before_jax.set_cpu_devices(before_jax.cpu_device_count(
      config.get('cpu_devices', 0), config.batch_size))
  cli.setup_logging()

  def translate():
    from lm_jax.data import tokenizers
    from lm_jax.tasks import translation
    from lm_jax.train.loop import restore_params

    paths = [os.path.join(workdir, name) for name in
             (translation.SOURCE_TOKENIZER, translation.TARGET_TOKENIZER)]
    for path in paths:
      if not os.path.exists(path):
        raise FileNotFoundError(f'no {os.path.basename(path)} in {workdir}; '
                                'train it first')
    source_tok, target_tok = (tokenizers.load(p) for p in paths)
    model = translation.build_model(config, source_tok.vocab_size,
                                    target_tok.vocab_size)
    lines = _lines()
    sentences = [line for line in lines if line]
    if not sentences:
      raise ValueError('nothing to translate: give --text or lines on '
                       'standard input')
    step, params = restore_params(workdir, config, model,
                                  translation.dummy_inputs(config))
    translator = translation.Translator(
        model, source_tok, target_tok, config.max_decode_length,
        config.batch_size, config.length_multiple)
    beam = _BEAM_SIZE.value or config.beam_size
    alpha = (_LENGTH_PENALTY.value if _LENGTH_PENALTY.value >= 0
             else config.length_penalty)
    import jax
    ids = translator.translate_ids(params, sentences, beam, alpha,
                                   devices=jax.local_devices())
    translations = iter(target_tok.decode(row) for row in ids)
    for line in lines:  # a blank line in, a blank line out
      print(next(translations) if line else '')
    if _ATTENTION_PNG.value:
      from lm_jax import viz
      weights = translator.attention(params, sentences[0], ids[0])
      if config.model == 'transformer_seq2seq':
        titles = [f'layer {i // config.num_heads + 1} head '
                  f'{i % config.num_heads + 1}' for i in range(len(weights))]
        columns = config.num_heads
      else:
        titles, columns = [f'{config.rnn_attention} attention'], 1
      source_ids = translator.source_ids(sentences[0])[0]
      viz.attention_heatmap(
          weights, source_tok.pieces(source_ids[source_ids != 0]),
          target_tok.pieces([*ids[0], target_tok.eos_id]),
          _ATTENTION_PNG.value, titles=titles, columns=columns,
          title=f'{config.model}, step {step}')
      print(f'# attention heatmap: {_ATTENTION_PNG.value}', file=sys.stderr)

  cli.run_guarded(translate)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.flags_parser)
