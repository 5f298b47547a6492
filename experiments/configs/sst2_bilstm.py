"""SST-2 sentiment with a bi-LSTM sentence classifier, after the flax `sst2`
example (85.21% validation accuracy after 10 epochs): the training words
seen 3 times, dropout 0.5, word dropout 0.1, an MLP head of 256 tanh units,
batches of 64 bucketed by length, SGD, 10 epochs.

As in the example, the sentence vector is the attention-weighted sum of
the states, the embeddings have 300 dimensions and the LSTM 256 units a
direction. Seeds 0-4 reached 84.75%, 84.52%, 85.21%, 84.75% and 85.09%
(mean 84.86%), about 14 minutes a run alone on two CPU cores. At 128 and
128 units (`--config.embed_dim=128 --config.hidden_size=128`, the preset
until 12-06, 3 minutes a run) seeds 0-3 averaged 84.38%; max pooling
there (`--config.pooling=max`) gave 84.06%.
Where it differs from the example, and why:
- plain SGD at 1.0 (clipped at 5, cosine decay) in place of SGD at 0.1 with
  momentum 0.9 and weight decay 3e-6 (the same step size in the long run;
  the example's optimiser without its weight decay, and its initialisation,
  forget bias 0 included, gave 84.40%, seed 0). Adam overfitted within two
  epochs here.
- forget-gate bias 1 (the example's cells start every bias at 0);
- no '<s>'/'</s>' around the sentences and no dropout on the states before
  the attention (`--config.sentence_markers=True
  --config.pooling_dropout=True` add both, as the example has them: 84.29%
  at 128 units, seed 0, against 84.75%);
- the attention's tanh layer is as wide as the states (512) and has a
  bias; the example's is 256 wide with none;
- a two-way softmax head with a bias, where the example has one sigmoid
  output with none.

Target: at least 85.2% accuracy on the validation split (GLUE's test split
is unlabelled). 67,349 training examples make 1,052 batches an epoch.
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.task = 'classify'
  c.model = 'classifier'
  c.corpus = 'sst2'
  c.min_count = 3
  c.embed_dim = 300
  c.hidden_size = 256
  c.num_layers = 1
  c.bidirectional = True
  c.pooling = 'attention'
  c.mlp_dim = 256
  c.forget_bias = 1.0
  c.dropout_rate = 0.5
  c.word_dropout_rate = 0.1
  c.optimizer = 'sgd'
  c.learning_rate = 1.0
  c.grad_clip_norm = 5.0
  c.warmup_steps = 100
  c.batch_size = 64
  c.num_train_steps = 10520  # 10 epochs
  c.eval_every = 1052  # every epoch
  c.eval_steps = 14  # the whole validation split
  c.log_every = 263
  c.checkpoint_every = 2104
  # One XLA CPU device: with two, a run here hung in the gradient
  # all-reduce (an XLA CPU collective starved of threads).
  c.cpu_devices = 1
  return c
