"""A language model's corpus as plain text, split by split, whichever
builder holds it (the LM and bi-LM tasks read it here).
"""

from __future__ import annotations

from lm_jax.data.builders import conllu, glue_tsv
from lm_jax.data.builders.text_corpus import CORPORA, load_text


def split_texts(cfg) -> dict[str, str]:
  """Each split's text: 'train', 'validation' and, where the corpus has one,
  'test'. A GLUE dataset gives its sentences one a line (its test split,
  unlabelled anyway, is left out); a UD treebank its sentences' words, one
  sentence a line, tags dropped."""
  if cfg.corpus in glue_tsv.DATASETS:
    return {split: ''.join(s + '\n' for s in glue_tsv.load_examples(
        cfg.corpus, split, cfg.data_dir, cfg.cache_dir)[0])
            for split in ('train', 'validation')}
  if cfg.corpus in conllu.TREEBANKS:
    return {split: conllu.load_text(cfg.corpus, split, cfg.data_dir,
                                    cfg.cache_dir)
            for split in ('train', 'validation', 'test')}
  if cfg.corpus not in CORPORA:
    known = [*CORPORA, *glue_tsv.DATASETS, *conllu.TREEBANKS]
    raise ValueError(f'unknown corpus {cfg.corpus!r}; known: {sorted(known)}')
  splits = ['train', 'validation'] + (
      ['test'] if 'test' in CORPORA[cfg.corpus].files else [])
  return {split: load_text(cfg.corpus, split, cfg.data_dir, cfg.cache_dir)
          for split in splits}
