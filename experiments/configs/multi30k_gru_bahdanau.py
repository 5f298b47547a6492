"""GRU encoder-decoder with Bahdanau (additive) attention on Multi30k,
German -> English.

The sizes of bentrevett's "Neural Machine Translation by Jointly Learning to
Align and Translate" notebook: 256-dim embeddings, a bi-directional GRU of
512 units per direction, a 512-unit GRU decoder and attention layer,
dropout 0.5 on the embeddings, Adam at 1e-3, gradients clipped to norm 1,
batches of 128 pairs, 10 epochs. Subwords replace its spaCy words: one
SentencePiece vocabulary of 8k pieces per language. Test BLEU from beam
search (4 beams, length penalty 0.6).
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.task, c.model, c.corpus = 'translate', 'seq2seq_rnn', 'multi30k'
  c.tokenizer, c.source_lang, c.target_lang = 'sentencepiece', 'de', 'en'
  c.spm_vocab_size, c.spm_joint = 8000, False
  c.cell, c.rnn_attention, c.num_layers = 'gru', 'bahdanau', 1
  c.embed_dim, c.hidden_size, c.decoder_size, c.attention_size = (
      256, 512, 512, 512)
  c.dropout_rate = 0.5
  c.schedule, c.learning_rate, c.warmup_steps = 'constant', 1e-3, 0
  c.beta1, c.beta2, c.weight_decay, c.grad_clip_norm = 0.9, 0.999, 0.0, 1.0
  c.batch_size, c.num_epochs = 128, 10
  c.eval_every, c.eval_steps, c.log_every = 500, 8, 50
  c.checkpoint_every = 500
  c.beam_size, c.length_penalty = 4, 0.6
  return c
