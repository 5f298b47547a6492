"""A small BERT pre-trained from scratch by masked LM on CPU.

Text: the Penn Treebank's training sentences (Mikolov's version, 930k words,
`<unk>` read as [UNK]) and SST-2's 67,349 training phrases (633k words; their
labels unused), WordPiece vocabulary of 8,000 pieces learnt from the same
text (lower-cased). Sentences are packed whole into [CLS] ... [SEP]
sequences of 64 ids (36,992 of them); no next-sentence prediction.

Model: 2 post-LN blocks, 128 wide, 2 heads, MLP 512, exact GELU (BERT's
"tiny" size, Turc et al. 2019), dropout 0.1. Masking as BERT: 15% of the
tokens, 80% [MASK] / 10% random / 10% unchanged, at most 10 a sequence, drawn
afresh every epoch. AdamW (beta2 0.999, weight decay 0.01), peak rate 2e-3
after 500 warm-up steps, linear decay, batches of 32 sequences, 20,000 steps
(17 epochs; 34 min on a 2-core CPU).

Why this size and length: held-out accuracy stays near a bigram fill-in's
until the model learns to use word order, a phase transition that here comes
between steps 5,000 and 14,000. BERT's "mini" size (4 x 256, 128 ids,
batches of 64) runs 20-34x slower a step on this CPU and had not reached it
after 1,000 steps (the README's table has that run).

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
  c.num_layers = 2
  c.num_heads = 2
  c.embed_dim = 128
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
  c.block_size = 64

  # Masked LM.
  c.mlm_rate = 0.15
  c.mlm_mask_prob = 0.8
  c.mlm_random_prob = 0.1
  c.mlm_max_predictions = 10
  c.whole_word_masking = False

  # Fine-tuning heads (presets sst2_*): 'cls' (the pooler) or 'mean'.
  c.pooling = 'cls'

  c.optimizer = 'adamw'
  c.learning_rate = 2e-3
  c.min_learning_rate = 0.0
  c.schedule = 'linear'
  c.warmup_steps = 500
  c.beta1 = 0.9
  c.beta2 = 0.999
  c.weight_decay = 0.01
  c.grad_clip_norm = 1.0
  c.optimizer_flatten = False  # per-array updates: faster at this size
  c.batch_size = 32
  c.num_train_steps = 20000
  c.eval_every = 1000
  c.eval_steps = 10
  c.log_every = 500
  c.checkpoint_every = 2000
  return c
