"""Encodes sentences with a BERT workdir (a trained run or an import):

  python -m experiments.encode --workdir DIR --text "..." [--text ...]
      --out FILE.npz [--max_length N]

Without --text, each line of stdin is a sentence. FILE.npz holds, for
sentence i (in order): `ids_i` (int32 `[length]`, [CLS] pieces [SEP]),
`hidden_i` (float32 `[length, dim]`, the encoder's last hidden states) and
`emb_i` (float32 `[dim]`, the mean of hidden_i over its tokens,
L2-normalised: sentence-transformers' embedding). sentence-transformers
also cuts each text at its model's `max_seq_length` (in the model folder's
sentence_bert_config.json: 256 for all-MiniLM-L6-v2); pass the same
--max_length for equal embeddings of longer texts. A run trained here
learnt only the positions below its block_size (and its init_from's):
longer sentences are cut there unless --max_length says otherwise.
"""

import sys

from absl import app
from absl import flags

from experiments import before_jax, cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A BERT workdir.')
_TEXT = flags.DEFINE_multi_string('text', None, 'A sentence (repeatable).')
_OUT = flags.DEFINE_string('out', None, 'The .npz file to write.')
_MAX_LENGTH = flags.DEFINE_integer(
    'max_length', 0, 'Ids per sentence at most, [CLS] and [SEP] included '
    '(0: the positions the run trained: all of an import\'s, those below '
    'block_size of a run trained here).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32,
                                   'Sentences encoded at once.')


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}')
  if not _WORKDIR.value or not _OUT.value:
    cli.fail('--workdir and --out are required')
  if _BATCH_SIZE.value < 1 or (_MAX_LENGTH.value or 2) < 2:
    cli.fail('need batch_size >= 1 and max_length >= 2, room for [CLS] and '
             '[SEP] (0: the model\'s positions)')
  # np.savez adds the suffix to a name without it; say the name it writes.
  out = _OUT.value if _OUT.value.endswith('.npz') else _OUT.value + '.npz'
  # The workdir first: a typo in it should not wait for stdin's end.
  config = cli.load_run_config(_WORKDIR.value)
  if config.get('model') != 'bert':
    cli.fail(f'{_WORKDIR.value} is a {config.get("task")!r} run of model '
             f'{config.get("model")!r}, not a BERT one')
  texts = _TEXT.value or [line.rstrip('\n') for line in sys.stdin]
  if not texts:
    cli.fail('no sentences: give --text, or lines on stdin')
  before_jax.set_cpu_devices(1)
  cli.setup_logging()

  def encode():
    import numpy as np
    from lm_jax.models.bert import BertEncoder
    from lm_jax.tasks.masked_lm import load_bert_run, trained_positions

    config, tokenizer, model, step, params = load_bert_run(_WORKDIR.value)
    encoder = BertEncoder(model.config)
    # A run trained here learnt only the positions its sequences reached.
    trained = trained_positions(config)
    max_length = _MAX_LENGTH.value or trained
    if max_length > model.config.max_positions:
      cli.fail(f'--max_length {max_length} exceeds the model\'s '
               f'{model.config.max_positions} positions')
    if max_length > trained:
      print(f'warning: {_WORKDIR.value} trained positions below {trained} '
            f'only (its block_size, and its init_from\'s); --max_length '
            f'{max_length} reads longer sentences with untrained rows',
            file=sys.stderr)
    arrays = encode_sentences(encoder, params['encoder'], tokenizer, texts,
                              max_length, _BATCH_SIZE.value)
    np.savez(out, **arrays)
    print(f'# {_WORKDIR.value} at step {step}: {len(texts)} sentences -> '
          f'{out}')

  cli.run_guarded(encode)


def encode_sentences(encoder, params, tokenizer, texts, max_length: int,
                     batch_size: int) -> dict:
  """`ids_i`, `hidden_i` and `emb_i` of each text (module docstring).

  Sentences are encoded in batches padded to the longest (rounded up to a
  multiple of 8, for few compilations); padding is masked out, so a
  sentence's states do not depend on its batch.
  """
  import jax
  import numpy as np
  from lm_jax.models.bert import sentence_embeddings

  @jax.jit
  def run(ids, valid):
    hidden = encoder.apply({'params': params}, ids, valid=valid)
    return hidden.astype(np.float32), sentence_embeddings(hidden, valid)

  ids = [tokenizer.encode_sentence(t, max_length) for t in texts]
  out = {}
  for start in range(0, len(ids), batch_size):
    chunk = ids[start:start + batch_size]
    length = min(-(-max(map(len, chunk)) // 8) * 8, max_length)
    batch = np.full((len(chunk), length), tokenizer.pad_id, np.int32)
    for row, x in enumerate(chunk):
      batch[row, :len(x)] = x
    valid = np.arange(length)[None, :] < np.array([len(x) for x in chunk])[
        :, None]
    hidden, emb = jax.device_get(run(batch, valid))
    for row, x in enumerate(chunk):
      i = start + row
      out[f'ids_{i}'] = x
      out[f'hidden_{i}'] = hidden[row, :len(x)]
      out[f'emb_{i}'] = emb[row]
  return out


if __name__ == '__main__':
  app.run(main, flags_parser=cli.flags_parser)
