"""ULMFiT (Howard & Ruder 2018) on 1,000 labelled SST-2 sentences: a
classifier whose embeddings and LSTM layers start from `sst2_lm`, the
language model of the unlabelled SST-2 training sentences.

Fine-tuning follows the paper: concat pooling (last state, max and mean),
a 50-unit head, discriminative learning rates (each layer below the head
at 1/2.6 of the one above), a slanted-triangular schedule and gradual
unfreezing (the head trains alone for an epoch, then one more layer joins
each epoch). `sst2_ulmfit_scratch` is the same model and data trained from
random weights; the gain between the two is the point.

Run `./launch.sh train sst2_lm` first. The 1,000 sentences are a fixed
random sample of the training split (`data_seed`); accuracy is on the whole
dev split (872 sentences).
"""

import os

from experiments.configs import base

def get_config():
  c = base.get_config()
  c.task, c.model, c.corpus = 'classify', 'classifier', 'sst2'
  c.pretrained_lm = os.path.join(base.RUNS_DIR, 'sst2_lm')
  c.max_train_examples = 1000
  # The LM's sizes (sst2_lm), one direction as the LM reads.
  c.embed_dim = c.hidden_size = 256
  c.num_layers, c.cell, c.bidirectional = 2, 'lstm', False
  c.forget_bias = 1.0
  c.pooling, c.mlp_dim = 'concat', 50
  c.dropout_rate, c.word_dropout_rate = 0.4, 0.0
  # The paper fine-tunes classifiers with Adam at 0.01, beta1 0.7 and beta2
  # 0.99; 4e-3 is its LM fine-tuning rate, and beta1 is 0.8 here. With
  # the paper's values (seeds 0-2, 12-06) the dev accuracy is the same:
  # 65.02%, 64.56%, 65.02% against 64.33%, 65.83%, 64.33%.
  c.optimizer, c.learning_rate = 'adamw', 4e-3
  c.weight_decay, c.grad_clip_norm = 0.0, 1.0
  c.beta1, c.beta2 = 0.8, 0.99
  c.schedule, c.warmup_steps = 'slanted_triangular', 0
  c.layer_lr_decay, c.unfreeze_every_epochs = 2.6, 1
  c.batch_size = 32
  c.num_epochs = 12
  c.eval_every = 31  # every epoch (31 batches)
  c.eval_steps = 28  # the whole dev split
  c.log_every = 31
  c.checkpoint_every = 186
  c.cpu_devices = 1
  return c
