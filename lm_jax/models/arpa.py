"""ARPA files: the text format of backoff n-gram LMs (SRILM, KenLM).

A header declares each order's n-gram count; then one section per order
lists, a line each, an n-gram's log10 probability, its words and, below the
highest order, its log10 backoff weight. This module reads and writes that
layout only; `ngram.NGramLM.to_arpa` / `from_arpa` turn it into a model.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional, Sequence

import numpy as np

from lm_jax import atomic_files


class Section(NamedTuple):
  """One order's n-grams, in file order."""
  grams: list[list[str]]  # [num n-grams][order] words
  logp: np.ndarray  # float64 `[num n-grams]` log10 probabilities
  bow: np.ndarray  # float64 `[num n-grams]` log10 backoffs (0 where absent)


def write(path: str, names: Sequence[Sequence[str]],
          logp: Sequence[Sequence[float]],
          bow: Sequence[Optional[Sequence[float]]]) -> None:
  """Writes an ARPA file.

  Args:
    path: the file.
    names: for each order 1..N, its n-grams as space-joined words.
    logp: for each order, the n-grams' log10 probabilities.
    bow: for each order, their log10 backoff weights (None for order N).

  Raises:
    ValueError: a word holds white space, which separates words here.
  """
  spaced = [w for w in names[0] if len(w.split()) != 1] if names else []
  if spaced:
    raise ValueError(f'ARPA files separate words with white space; the '
                     f'vocabulary holds {spaced[0]!r}')
  # Replaced whole: `sample` reads the model back from this file.
  with atomic_files.replacing(path, encoding='utf-8') as f:
    f.write('\\data\\\n')
    for order, grams in enumerate(names, 1):
      f.write(f'ngram {order}={len(grams)}\n')
    for order, (grams, probs, backoffs) in enumerate(zip(names, logp, bow),
                                                     1):
      f.write(f'\n\\{order}-grams:\n')
      # repr() of a float64 reads back bit-identical.
      if backoffs is not None:
        f.writelines(f'{p!r}\t{w}\t{b!r}\n'
                     for p, w, b in zip(probs, grams, backoffs))
      else:
        f.writelines(f'{p!r}\t{w}\n' for p, w in zip(probs, grams))
    f.write('\n\\end\\\n')


def read(path: str) -> dict[int, Section]:
  """Order -> that order's section.

  Raises:
    ValueError: the sections do not hold the n-grams the header declares
      (a cut or foreign file).
  """
  sections: dict[int, list[list[str]]] = {}
  declared: dict[int, int] = {}
  with open(path, encoding='utf-8') as f:
    order = 0
    for line in f:
      line = line.strip()
      if line.startswith('ngram ') and '=' in line:
        key, count = line[len('ngram '):].split('=', 1)
        declared[int(key)] = int(count)
        continue
      if not line or line == '\\data\\':
        continue
      header = re.fullmatch(r'\\(\d+)-grams:', line)
      if header:  # not a highest-order n-gram ending in a word 'n-grams:'
        order = int(header.group(1))
        sections[order] = []
      elif line == '\\end\\':
        break
      elif order:
        sections[order].append(line.split())
  got = {k: len(v) for k, v in sections.items()}
  if not declared or got != declared:
    raise ValueError(f'{path} is not a whole ARPA file: its header '
                     f'declares n-grams {declared}, its sections hold {got}')
  return {order: Section([r[1:order + 1] for r in rows],
                        np.array([float(r[0]) for r in rows]),
                        np.array([float(r[order + 1]) if len(r) > order + 1
                                  else 0.0 for r in rows]))
          for order, rows in sections.items()}
