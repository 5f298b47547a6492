"""fastText skip-gram with character n-grams on Penn Treebank.

fastText's unsupervised defaults: 100 dimensions, n-grams of 3 to 6
characters, window 5, 5 negatives from unigram^0.5, subsampling at 1e-4,
min_count 5, 5 epochs, lr 0.05 per pair decayed linearly to 0; 100,000
hash buckets instead of 2 million (PTB's 10k words have about 60k distinct
n-grams). 4,096 pairs a step, every 64 sharing their negatives.
"""

from experiments.configs import ptb_word2vec_sg

ALPHA = 0.05


def get_config():
  c = ptb_word2vec_sg.get_config()
  c.model = 'fasttext'
  c.fasttext_min_n, c.fasttext_max_n = 3, 6
  c.fasttext_buckets = 100_000
  c.subsample, c.noise_power = 1e-4, 0.5
  # 5 epochs: PTB gives 2.05 M pairs an epoch at this subsampling, 502 steps.
  c.num_train_steps = 5 * 502
  c.learning_rate, c.min_learning_rate = ALPHA * c.batch_size, 0.0
  c.eval_every = c.checkpoint_every = 502
  return c
