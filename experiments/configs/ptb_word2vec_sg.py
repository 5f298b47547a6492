"""word2vec skip-gram with negative sampling on Penn Treebank.

gensim's defaults (the word2vec.c recipe): 100 dimensions, window 5 (the
radius drawn from 1..5 per word), 5 negatives from unigram^0.75,
subsampling at 1e-3, min_count 5, 5 epochs, alpha 0.025 decayed linearly to
0.0001 per pair. 4,096 pairs a step, so learning_rate = alpha x 4,096; each
64 consecutive (shuffled) pairs share their draw of negatives, which halves
the step time.
"""

from experiments.configs import base

ALPHA, MIN_ALPHA = 0.025, 0.0001


def get_config():
  c = base.get_config()
  c.task, c.model, c.corpus = 'embeddings', 'word2vec', 'ptb'
  c.embed_dim, c.window, c.negatives = 100, 5, 5
  c.subsample, c.min_count, c.noise_power = 1e-3, 5, 0.75
  c.batch_size, c.share_negatives = 4096, 64
  # 5 epochs: PTB gives 3.29 M skip-gram pairs an epoch, 803 steps.
  c.num_train_steps = 5 * 803
  c.optimizer, c.schedule, c.warmup_steps = 'sgd', 'linear', 0
  c.learning_rate = ALPHA * c.batch_size
  c.min_learning_rate = MIN_ALPHA * c.batch_size
  c.grad_clip_norm = 0.0
  # One XLA CPU device: the step is row gathers and scatters, which a
  # second device only burdens with an all-reduce of both whole tables.
  c.num_devices = c.cpu_devices = 1
  c.eval_every, c.eval_steps, c.log_every = 803, 10, 200
  c.checkpoint_every = 803
  return c
