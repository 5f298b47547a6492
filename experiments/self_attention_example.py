"""Self-attention by hand on "I study at school", step by step:

  python -m experiments.self_attention_example [--noscale] [--digits N]

Four words with 4-dim embeddings X and 4x3 projections W_Q, W_K, W_V (small
numbers chosen to be followed by eye, not trained) become queries Q = X W_Q,
keys K = X W_K and values V = X W_V. Each word's query is compared with
every key (Q K^T), divided by sqrt(d_k) (Vaswani et al.'s scaling; off
with --noscale), turned into weights by a softmax over each row, and the
word's output is the weighted sum of the values. The tables print each
stage; the last line checks the result against lm_jax's
`dot_product_attention`.
"""

from absl import app
from absl import flags
import numpy as np

from experiments import cli

_SCALE = flags.DEFINE_bool('scale', True, 'Divide the scores by sqrt(d_k).')
_DIGITS = flags.DEFINE_integer('digits', 3, 'Decimals printed.')

WORDS = ('I', 'study', 'at', 'school')
X = np.array([[1.0, 0.0, 1.0, 0.0],    # I
              [0.0, 2.0, 0.0, 1.0],    # study
              [1.0, 1.0, 0.0, 0.0],    # at
              [0.0, 1.0, 1.0, 2.0]])   # school
W_Q = np.array([[1.0, 0.0, 1.0],
                [0.0, 1.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 1.0]])
W_K = np.array([[0.0, 1.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 1.0],
                [1.0, 0.0, 1.0]])
W_V = np.array([[1.0, 0.0, 0.0],
                [0.0, 2.0, 0.0],
                [0.0, 0.0, 3.0],
                [1.0, 1.0, 0.0]])


def table(title: str, values: np.ndarray, rows, columns, digits: int) -> str:
  """A titled text table with row and column labels."""
  width = max(8, digits + 5, *(len(c) + 1 for c in columns))
  label = max(len(r) for r in rows) + 2
  lines = [title, ' ' * label + ''.join(f'{c:>{width}}' for c in columns)]
  for name, row in zip(rows, values):
    lines.append(f'{name:<{label}}'
                 + ''.join(f'{v:>{width}.{digits}f}' for v in row))
  return '\n'.join(lines) + '\n'


def softmax(x: np.ndarray) -> np.ndarray:
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}')
  cli.setup_logging()
  digits = _DIGITS.value
  dims = [f'd{i + 1}' for i in range(X.shape[1])]
  heads = [f'h{i + 1}' for i in range(W_Q.shape[1])]

  def show(title, values, rows, columns):
    print(table(title, values, rows, columns, digits))

  print('Self-attention on "I study at school"\n')
  show('1. Word embeddings X (one row per word)', X, WORDS, dims)
  for name, w in (('W_Q', W_Q), ('W_K', W_K), ('W_V', W_V)):
    show(f'   projection {name}', w, dims, heads)
  q, k, v = X @ W_Q, X @ W_K, X @ W_V
  show('2. Queries Q = X W_Q (what each word looks for)', q, WORDS, heads)
  show('   Keys K = X W_K (what each word offers to be found by)', k, WORDS,
       heads)
  show('   Values V = X W_V (what each word passes on)', v, WORDS, heads)
  scores = q @ k.T
  show('3. Scores Q K^T: row = query word, column = key word', scores, WORDS,
       WORDS)
  d_k = k.shape[1]
  if _SCALE.value:
    scores = scores / np.sqrt(d_k)
    show(f'4. Scaled scores Q K^T / sqrt(d_k), d_k = {d_k}', scores, WORDS,
         WORDS)
  else:
    print('4. (not scaled: --noscale)\n')
  weights = softmax(scores)
  show('5. Attention weights softmax(...) (each row sums to 1)', weights,
       WORDS, WORDS)
  out = weights @ v
  show('6. Outputs Z = weights V (each word: a weighted sum of the values)',
       out, WORDS, heads)
  for i, word in enumerate(WORDS):
    terms = ' + '.join(f'{weights[i, j]:.{digits}f} x V[{other}]'
                       for j, other in enumerate(WORDS))
    print(f'   Z[{word}] = {terms}')
  top = WORDS[int(np.argmax(weights[1]))]
  print(f'\n"study" attends most to "{top}" '
        f'({weights[1].max():.{digits}f} of its weight).')

  import jax.numpy as jnp
  from lm_jax.nn.attention import dot_product_attention
  # dot_product_attention always divides by sqrt(d); undo it for --noscale.
  query = q if _SCALE.value else q * np.sqrt(d_k)
  library = dot_product_attention(
      jnp.asarray(query[None, :, None], jnp.float32),
      jnp.asarray(k[None, :, None], jnp.float32),
      jnp.asarray(v[None, :, None], jnp.float32))[0, :, 0]
  print('lm_jax.nn.attention.dot_product_attention gives the same outputs: '
        f'max |difference| = {np.abs(np.asarray(library) - out).max():.1e}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.flags_parser)
