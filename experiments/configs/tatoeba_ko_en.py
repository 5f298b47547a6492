"""Korean -> English on Tatoeba's 5.7k sentence pairs, so the lecture's own
example ("난 널 사랑해") can be tried.

A small Transformer (2 + 2 layers, 256 dims, 4 heads, dropout 0.3) on one
SentencePiece vocabulary per language (4k pieces each, each covering
99.95% of its language's characters, for Korean's sake); the splits are
cut by groups of pairs linked through a shared sentence in either
language, so no sentence is in two splits (see
`lm_jax.data.builders.parallel_corpus`).
"""

from experiments.configs import multi30k_transformer


def get_config():
  c = multi30k_transformer.get_config()
  c.corpus, c.source_lang, c.target_lang = 'tatoeba_kor_eng', 'ko', 'en'
  c.spm_vocab_size, c.spm_joint = 4000, False
  c.spm_character_coverage = 0.9995
  c.share_embeddings = 'decoder'
  c.num_layers, c.num_heads, c.dropout_rate = 2, 4, 0.3
  c.batch_size, c.num_epochs, c.warmup_steps = 64, 40, 300
  c.eval_every, c.eval_steps, c.checkpoint_every = 500, 9, 1000
  return c
