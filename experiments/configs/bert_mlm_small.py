"""A small BERT pre-trained from scratch by masked-LM on CPU.

Text: the Penn Treebank's training sentences (Mikolov's version, 930k words,
`<unk>` read as [UNK]) and SST-2's 67,349 training phrases (633k words; their
labels unused), WordPiece vocabulary of 8,000 pieces learnt from the same
text (lower-cased). Sentences are packed whole into [CLS] ... [SEP]
sequences of 128 ids (16,196 of them); no next-sentence prediction.

Model: 4 post-LN blocks, 256 wide, 4 heads, MLP 1024, exact GELU (BERT's
"mini" size, Turc et al. 2019), dropout 0.1. Masking as BERT: 15% of the
tokens, 80% [MASK] / 10% random / 10% unchanged, at most 20 a sequence, drawn
afresh every epoch. AdamW (beta2 0.999, weight decay 0.01), peak rate 5e-4
after 500 warm-up steps, linear decay, batches of 64 sequences.

Reported: masked-token accuracy and loss (`eval_accuracy`, `eval_loss`) on
held-out text, the PTB validation sentences and SST-2's dev sentences, and
after the last step on PTB's test and SST-2's (unlabelled) test sentences
(`test_accuracy`). The workdir is what `sst2_bert_small` fine-tunes.
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.task = 'mlm'
  c.model = 'bert'
  c.corpus = 'ptb,sst2'
  c.tokenizer = 'wordpiece'
  c.wordpiece_vocab_size = 8000
  c.lower_case = True
  c.init_from = ''  # a BERT workdir (a run, or ./launch.sh import-hf)

  # Encoder (BERT's keys beside base's num_layers, num_heads, embed_dim,
  # mlp_ratio, dropout_rate, pre_norm, activation).
  c.num_layers = 4
  c.num_heads = 4
  c.embed_dim = 256
  c.mlp_ratio = 4
  c.mlp_hidden_dim = 0  # > 0: the MLP width, whatever mlp_ratio says
  c.max_positions = 512  # the position table; block_size is the input length
  c.type_vocab_size = 2
  c.dropout_rate = 0.1
  c.attention_dropout_rate = 0.1
  c.pre_norm = False  # BERT's post-LN
  c.activation = 'gelu'  # exact
  c.layer_norm_epsilon = 1e-12
  c.use_bias = True
  c.block_size = 128

  # Masked LM.
  c.mlm_rate = 0.15
  c.mlm_mask_prob = 0.8
  c.mlm_random_prob = 0.1
  c.mlm_max_predictions = 20
  c.whole_word_masking = False

  # Fine-tuning heads (presets sst2_*): 'cls' (the pooler) or 'mean'.
  c.pooling = 'cls'

  c.optimizer = 'adamw'
  c.learning_rate = 5e-4
  c.min_learning_rate = 0.0
  c.schedule = 'linear'
  c.warmup_steps = 500
  c.beta1 = 0.9
  c.beta2 = 0.999
  c.weight_decay = 0.01
  c.grad_clip_norm = 1.0
  c.optimizer_flatten = False  # per-array updates: faster at this size
  c.batch_size = 64
  c.num_train_steps = 4000
  c.eval_every = 500
  c.eval_steps = 20
  c.log_every = 100
  c.checkpoint_every = 1000
  return c
