"""ELMo's bi-directional LSTM LM for the tagger: `sst2_bilm`'s model on the
training sentences of UD English-LinES, tags ignored (64,684 words in
3,457 sentences, far from the billion words of Peters et al. 2018, but
the only unlabelled text here in the treebank's domain and casing).

The vocabulary is every training word (the tagger's own `min_count` of 1),
so `udpos_bilstm_elmo` tags with exactly `udpos_bilstm`'s vocabulary. No
training word is then `<unk>`: word dropout (a tenth of the input words
replaced by it) trains the embedding through which the tagger's unknown
words, 9.5% of the dev tokens, reach the bi-LM. Heavy dropout for so little
text, and 5 epochs: with a 20-epoch schedule the dev perplexity was 538
after 5 epochs and 572 after 10. This preset's run: 353.8 (12-07; without
word dropout 607.1). The difference is the `<unk>` targets, which the
softmax, tied to the embedding, now learns too: the forward LM's cost of
one fell from 14.4 to 7.7 nats, while on the other words its perplexity
rose from 270 to 288. `eval_perplexity` is on the treebank's dev
sentences.
"""

from experiments.configs import sst2_bilm


def get_config():
  c = sst2_bilm.get_config()
  c.corpus, c.min_count = 'ud_english_lines', 1
  c.dropout_rate, c.word_dropout_rate = 0.5, 0.1
  c.batch_size = 32
  c.num_epochs = 5  # 108 batches an epoch
  c.eval_every, c.eval_steps = 108, 35  # the whole dev split
  c.log_every, c.checkpoint_every = 108, 540
  return c
