"""`ptb_kn5` with trigrams: modified Kneser-Ney on Penn Treebank, order 3."""

from experiments.configs import ptb_kn5


def get_config():
  c = ptb_kn5.get_config()
  c.ngram_order = 3
  return c
