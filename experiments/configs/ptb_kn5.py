"""A word 5-gram LM with interpolated modified Kneser-Ney on Penn Treebank.

Mikolov's 10k-word PTB; `<unk>` is an ordinary word and every sentence
scores its `</s>`, as in the literature (Mikolov et al. 2011: KN5 141.2).
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.task, c.corpus, c.tokenizer = 'ngram', 'ptb', 'word'
  c.ngram_order, c.ngram_smoothing = 5, 'mkn'
  return c
