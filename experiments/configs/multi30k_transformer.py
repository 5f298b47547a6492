"""The encoder-decoder Transformer on Multi30k, German -> English.

"Attention is all you need" scaled to a small corpus and a CPU: 3 encoder
and 3 decoder layers, 256 dims, 8 heads, 512-wide ReLU MLPs, dropout 0.1,
sinusoidal positions, one joint 8k SentencePiece vocabulary whose embedding
the encoder, the decoder and the output layer share, label smoothing 0.1,
Adam (0.9, 0.98) with the inverse-square-root schedule after a linear
warm-up; pre-LN blocks, which need no long warm-up. Batches of 128 pairs
(about 1,900 target tokens), 10 epochs (2,260 steps), sized to train in
about an hour on two CPU cores. Test BLEU from beam search (4 beams,
length penalty 0.6).
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.task, c.model, c.corpus = 'translate', 'transformer_seq2seq', 'multi30k'
  c.tokenizer, c.source_lang, c.target_lang = 'sentencepiece', 'de', 'en'
  c.spm_vocab_size, c.spm_joint = 8000, True
  c.num_layers, c.num_heads, c.embed_dim, c.mlp_ratio = 3, 8, 256, 2
  c.dropout_rate, c.activation, c.use_bias = 0.1, 'relu', True
  c.share_embeddings, c.pre_norm = 'all', True
  c.label_smoothing = 0.1
  c.schedule, c.learning_rate, c.warmup_steps = 'inverse_sqrt', 1e-3, 500
  c.beta1, c.beta2, c.weight_decay, c.grad_clip_norm = 0.9, 0.98, 0.0, 1.0
  c.batch_size, c.num_epochs = 128, 10
  c.eval_every, c.eval_steps, c.log_every = 500, 8, 50
  c.checkpoint_every = 500
  c.beam_size, c.length_penalty = 4, 0.6
  return c
