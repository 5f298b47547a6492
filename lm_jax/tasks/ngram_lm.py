"""n-gram language modelling: counts instead of gradient steps.

Sentences are the corpus's lines: words split on white space (PTB) or the
characters of each line (char-level models, where `</s>` stands for the
newline, so bits per token are bits per character; the space character is
the token `<space>`, any other white space `<U+XXXX>`).
"""

from __future__ import annotations

import math
import os

from lm_jax.data.builders.text_corpus import CORPORA, load_text
from lm_jax.models.ngram import NGramLM
from lm_jax.models.ngram_vocabulary import NLTK_UNK, UNK, Vocabulary
from lm_jax.tasks.base import CountingTask

MODEL_FILE = 'model.arpa'
# ARPA files separate tokens with white space, so a character model spells
# the space character as this token, and any other white space as <U+XXXX>
# (a token of one character never equals these).
SPACE = '<space>'


def char_token(c: str) -> str:
  """A character as a character model's token."""
  if c == ' ':
    return SPACE
  return f'<U+{ord(c):04X}>' if c.isspace() else c


def token_text(token: str) -> str:
  """`char_token`'s inverse."""
  if token == SPACE:
    return ' '
  if token.startswith('<U+') and token.endswith('>'):
    return chr(int(token[3:-1], 16))
  return token


def split_sentences(text: str, tokenizer: str) -> list[list[str]]:
  """A split's text -> its lines as lists of words ('word') or of
  character tokens ('char')."""
  lines = text.split('\n')
  if lines and not lines[-1]:
    lines.pop()  # the text's final newline ends the last line
  if tokenizer == 'word':
    return [line.split() for line in lines]
  if tokenizer == 'char':
    return [[char_token(c) for c in line] for line in lines]
  raise ValueError(f"the n-gram task takes tokenizer 'word' or 'char', not "
                   f"{tokenizer!r}")


class NGramTask(CountingTask):
  """Estimates an `NGramLM` of order `ngram_order` with `ngram_smoothing`.

  Config keys read here: corpus, tokenizer, data_dir, cache_dir,
  ngram_order, ngram_smoothing, ngram_k (add-k), ngram_discount (KN).
  'kn_nltk' is NLTK's `KneserNeyInterpolated` (discount 0.1 unless
  ngram_discount says otherwise), with its padding and its unknown-word
  symbol `<UNK>`, so a corpus's `<unk>` is a word as in NLTK.
  """

  def prepare(self) -> None:
    cfg = self.config
    splits = ['train', 'validation'] + (
        ['test'] if 'test' in CORPORA[cfg.corpus].files else [])
    self.sentences = {
        split: split_sentences(
            load_text(cfg.corpus, split, cfg.data_dir, cfg.cache_dir),
            cfg.tokenizer)
        for split in splits}
    nltk = cfg.ngram_smoothing == 'kn_nltk'
    self.vocab = Vocabulary.from_sentences(self.sentences['train'],
                                           unk=NLTK_UNK if nltk else UNK)
    self.model = NGramLM(self.vocab, cfg.ngram_order, cfg.ngram_smoothing,
                         k=cfg.ngram_k, discount=cfg.ngram_discount or None)

  def estimate(self) -> None:
    self.model.fit([self.vocab.encode(s) for s in self.sentences['train']])

  @property
  def eval_splits(self) -> tuple[str, ...]:
    return tuple(s for s in ('validation', 'test') if s in self.sentences)

  def evaluate(self, split: str) -> dict[str, float]:
    sentences = [self.vocab.encode(s) for s in self.sentences[split]]
    log10_probs = self.model.token_log10_probs(sentences)
    loss = -float(log10_probs.mean()) * math.log(10)
    return {'loss': loss, 'perplexity': math.exp(loss),
            'bits_per_token': loss / math.log(2),
            'tokens': float(len(log10_probs))}

  def save_assets(self, workdir: str) -> None:
    self.model.to_arpa(os.path.join(workdir, MODEL_FILE))
