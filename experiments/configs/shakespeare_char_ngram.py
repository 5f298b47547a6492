"""A character n-gram LM with modified Kneser-Ney on Tiny Shakespeare.

The baseline for the character-level GPT: the same 90/10 split, scored in
bits per character (each line's `</s>` is its newline).
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.task, c.corpus, c.tokenizer = 'ngram', 'tiny_shakespeare', 'char'
  c.ngram_order, c.ngram_smoothing = 7, 'mkn'
  return c
