"""SST-2 sentiment by fine-tuning the small BERT of `bert_mlm_small`.

First pre-train it (its workdir is where this preset looks):

  ./launch.sh train bert_mlm_small        # -> runs/bert_mlm_small
  ./launch.sh train sst2_bert_small       # or --config.init_from=DIR

The run takes the pre-trained run's WordPiece vocabulary and architecture
(2 post-LN blocks, 128 wide) and starts from its encoder and pooler (the
pooler untrained: masked LM alone sends it no gradient); the
classifier (pooled [CLS] -> dropout 0.1 -> linear) starts fresh. Recipe of
Devlin et al. (2019) for small data sets, with the highest rate of Turc et
al.'s (2019) grid for small BERTs: AdamW (weight decay 0.01), peak rate 3e-4
after 10% of the steps, linear decay to 0, batches of 32 sentences (cut to
64 ids, the pre-training length), 3 epochs. `eval_accuracy` is the
accuracy on the whole dev split (872 sentences); over three seeds it came to
81.50% at 3e-4 from the 12-06 pre-training (83.37% from the 12-03 one, and
82.00% at 1e-4), from random weights to 80.09% (79.86% at 1e-4).
67,349 training examples make 2,104 batches an epoch.
"""

import os

from experiments.configs import base, bert_mlm_small

def get_config():
  c = bert_mlm_small.get_config()
  c.task = 'classify'
  c.corpus = 'sst2'
  c.init_from = os.path.join(base.RUNS_DIR, 'bert_mlm_small')
  c.pooling = 'cls'
  c.dropout_rate = 0.1
  c.attention_dropout_rate = 0.1
  c.block_size = 64  # ids per sentence at most, as in pre-training
  c.length_multiple = 8
  c.length_bucketing = True
  c.learning_rate = 3e-4
  c.min_learning_rate = 0.0
  c.schedule = 'linear'
  c.warmup_steps = 631  # 10% of the steps
  c.batch_size = 32
  # One XLA CPU device: with two, fine-tuning on length-bucketed batches
  # (a new program per length) twice stopped at a gradient all-reduce that
  # one device never joined, as sst2_bilstm did.
  c.cpu_devices = 1
  c.num_train_steps = 6312  # 3 epochs
  c.eval_every = 1052  # every half epoch
  c.eval_steps = 28  # the whole dev split
  c.log_every = 263
  c.checkpoint_every = 2104
  return c
