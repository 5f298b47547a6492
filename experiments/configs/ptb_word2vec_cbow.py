"""word2vec CBOW with negative sampling on Penn Treebank.

word2vec.c's CBOW recipe: the mean of the window's input vectors predicts
the centre word (each context vector receiving the whole error), alpha 0.05
decayed linearly to 0.0001 x 0.05 / 0.025; otherwise as ptb_word2vec_sg.
2,048 centre words a step (about 10,000 context words), every 32 sharing
their negatives.
"""

from experiments.configs import ptb_word2vec_sg

ALPHA = 0.05


def get_config():
  c = ptb_word2vec_sg.get_config()
  c.word2vec_cbow = True
  c.batch_size, c.share_negatives = 2048, 32
  # 5 epochs: PTB gives 644 k centre words an epoch, 315 steps.
  c.num_train_steps = 5 * 315
  c.learning_rate = ALPHA * c.batch_size
  c.min_learning_rate = ALPHA * 0.004 * c.batch_size
  c.eval_every = c.checkpoint_every = 315
  c.log_every = 100
  return c
