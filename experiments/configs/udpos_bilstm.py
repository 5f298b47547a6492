"""UPOS tagging of UD English-LinES with a bi-LSTM over word embeddings and
character-CNN features (Ma & Hovy 2016's word representation; Plank et al.
2016's bi-LSTM tagger).

Target: at least 94% token accuracy on the test split. 3,457 training
sentences make 108 batches of 32 an epoch; 30 epochs.
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.task = 'tag'
  c.model = 'tagger'
  c.corpus = 'ud_english_lines'
  c.min_count = 1
  c.embed_dim = 100
  c.char_encoder = 'cnn'
  c.char_embed_dim = 32
  c.char_features = 64
  c.hidden_size = 128
  c.num_layers = 1
  c.forget_bias = 1.0
  c.dropout_rate = 0.5
  c.word_dropout_rate = 0.1
  c.learning_rate = 2e-3
  c.weight_decay = 0.0
  c.warmup_steps = 50
  c.batch_size = 32
  c.num_train_steps = 3240  # 30 epochs
  c.eval_every = 540  # 5 epochs
  c.eval_steps = 40  # the whole validation split (35 batches)
  c.log_every = 54
  c.checkpoint_every = 1080
  return c
