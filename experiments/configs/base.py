"""Defaults every preset starts from. A preset overrides a few fields.

Keys every preset shares: num_train_steps, batch_size (global), learning_rate,
seed, eval_every, eval_steps, checkpoint_every, data_dir.
"""

import os

import ml_collections

# Default workdirs of `./launch.sh train PRESET`: where presets that start
# from another preset's run (ULMFiT, ELMo, BERT fine-tuning) look for it.
RUNS_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), '..', '..',
                                         'runs'))


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # What to train.
  c.task = 'lm'
  c.model = 'gpt'
  c.corpus = 'tiny_shakespeare'
  c.tokenizer = 'char'
  c.data_dir = ''   # raw corpora; '' means $LM_JAX_DATA
  c.cache_dir = ''  # prepared datasets, tokenizers, XLA's compiled programs
  # (xla/); '' means $LM_JAX_CACHE, else ~/.cache/lm_jax

  # Model.
  c.num_layers = 4
  c.num_heads = 4
  c.embed_dim = 128
  c.mlp_ratio = 4
  c.block_size = 64
  c.dropout_rate = 0.0
  c.positional = 'learned'  # or 'sinusoidal'
  c.use_bias = False
  c.activation = 'gelu'
  c.compute_dtype = 'float32'  # or 'bfloat16' (params stay float32)
  # GPT, BERT and the recurrent LM (model 'rnn_lm'): 'bfloat16' rounds only
  # the operands of their large matmuls to bfloat16 (float32 results;
  # lm_jax.nn.precision), the fast mixed precision on CPUs with AMX;
  # '' = compute_dtype.
  c.matmul_dtype = ''
  # GPT's float32 causal self-attention on CPU runs as one fused custom call
  # each way (lm_jax.nn.fused_attention); False keeps it in XLA.
  c.fused_attention = True
  # True: language models' float32 softmax cross-entropy on CPU runs as one
  # fused custom call each way (lm_jax.nn.fused_cross_entropy, 2-7% of
  # ptb_lstm_small's step). Off by default: two ptb_lstm_small runs with it
  # ended at test perplexity 114.34 and 114.15, where three seeds with
  # XLA's loss average 112.72 (benchmarks/RESULTS.md); its values and
  # gradients match XLA's, and why its runs end higher is not settled.
  c.fused_cross_entropy = False

  # Recurrent LMs (model 'rnn_lm'); embed_dim, num_layers, dropout_rate above.
  c.cell = 'lstm'  # or 'rnn' (Elman), 'gru'
  c.hidden_size = 200
  c.init_scale = 0.1  # U(-s, s) for every weight; 0: the layers' defaults
  c.forget_bias = 0.0
  # LSTMs with two gate biases, as Torch's and PyTorch's (models rnn_lm and
  # classifier): the same function, but under plain SGD the gates' bias
  # learns twice as fast.
  c.lstm_second_bias = False
  c.tie_embeddings = False
  c.rnn_unroll = 1  # time steps per scan iteration
  # float32 LSTMs on CPU run as one fused custom call per sequence
  # (lm_jax.nn.fused_lstm); False keeps the scan over lm_jax's LSTMCell.
  c.fused_lstm = True
  # An RNN LM's untied float32 softmax layer through lm_jax.nn.folded_dense
  # (the bias folded into the product, the kernel's gradient in a faster
  # form on XLA's CPU backend); False keeps flax's Dense.
  c.folded_output = False
  # 'random_windows' (nanoGPT) or 'contiguous' (batch_size parallel streams
  # read in order, truncated BPTT; recurrent models carry their state).
  c.lm_batching = 'random_windows'

  # n-gram models (task 'ngram'): estimated by counting, no optimiser.
  c.ngram_order = 5
  c.ngram_smoothing = 'mkn'  # or 'kn', 'kn_nltk' (NLTK's), 'add_k', 'mle'
  c.ngram_k = 1.0  # add-k
  c.ngram_discount = 0.0  # 'kn'/'kn_nltk' with one fixed discount; 0:
  # estimated ('kn'), NLTK's 0.1 ('kn_nltk')

  # Static word embeddings (task 'embeddings', model 'word2vec', 'fasttext'
  # or 'glove'; the vector size is embed_dim, and with 'sgd' the
  # learning_rate is word2vec's per-example alpha x batch_size).
  c.text_file = ''  # train on this text (one sentence a line), not corpus
  c.min_count = 5  # rarer words are dropped from the text
  c.max_vocab_size = 0  # > 0: only the most frequent words
  c.window = 5  # word2vec/fastText: radius drawn from 1..window per word
  c.word2vec_cbow = False  # CBOW instead of skip-gram
  c.negatives = 5
  c.noise_power = 0.75  # negatives drawn from unigram counts ** this
  c.subsample = 1e-3  # Mikolov's frequent-word threshold t; 0: keep all
  c.share_negatives = 1  # consecutive pairs sharing one draw of negatives
  c.max_row_uses = 0.0  # > 0: caps the uses summed in a row's gradient
  c.fasttext_min_n = 3  # character n-gram lengths
  c.fasttext_max_n = 6
  c.fasttext_buckets = 100_000  # n-gram hash buckets
  c.glove_x_max = 100.0  # f(x) = min(1, (x / x_max) ** glove_alpha)
  c.glove_alpha = 0.75
  c.similarity_dir = ''  # WordSim-353 etc.; '' means DATA_DIR/word_similarity

  # Tagging and classification (tasks 'tag' and 'classify', models 'tagger'
  # and 'classifier'; corpus names a UD treebank or a GLUE dataset). Sized by
  # embed_dim, num_layers, dropout_rate, cell, hidden_size (per direction)
  # and forget_bias above; training words seen fewer than min_count times
  # become <unk>.
  c.bidirectional = True  # the classifier's (the tagger is always bi-)
  c.pooling = 'last'  # the classifier's sentence vector, or 'max', 'mean',
  # 'concat' (all three), 'attention' (learned additive attention)
  c.pretrained_lm = ''  # workdir of an LM whose embeddings and RNN start
  # the classifier (ULMFiT), or, for a recurrent word LM, the whole LM (its
  # vocabulary matched by word: ULMFiT's general-domain stage)
  c.elmo_bilm = ''  # workdir of a bi-LM ('bilm') whose ELMo vectors join
  # the word embeddings (needs frozen_params='elmo/bilm')
  # Task 'classify' only:
  c.whole_sentences = False  # train on the rows no other row contains
  # (SST-2's 6,886, its whole sentences), not on every labelled phrase
  c.max_train_examples = 0  # > 0: a fixed random sample of the train split
  c.data_seed = 0  # draws that sample
  c.sentence_norm = False  # LayerNorm on the classifier's sentence vector
  c.sentence_markers = False  # '<s>' and '</s>' around each classified
  # sentence (the flax SST-2 example's BOS/EOS)
  c.pooling_dropout = False  # dropout on the states before pooling, too
  c.mlp_dim = 0  # the classifier's hidden layer; 0: a linear head
  c.word_dropout_rate = 0.0  # words replaced by <unk> in training
  c.char_encoder = 'none'  # the tagger's word features from characters:
  #   'cnn' (Ma & Hovy 2016) or 'lstm' (Lample et al. 2016)
  c.char_embed_dim = 32
  c.char_features = 64  # CNN filters, or char-LSTM units per direction
  c.char_kernel_size = 3
  c.max_word_chars = 16  # a longer word keeps its first and last 8
  c.length_multiple = 8  # padded batch lengths are multiples of this
  c.length_bucketing = True  # batch sentences of similar lengths together

  # Sequence to sequence (task 'translate', corpus a parallel corpus:
  # 'multi30k' or 'tatoeba_kor_eng'). Model 'transformer_seq2seq' is sized
  # by num_layers (the encoder's and the decoder's each), num_heads,
  # embed_dim, mlp_ratio, dropout_rate and activation; model 'seq2seq_rnn' by
  # cell ('gru' or 'lstm'), embed_dim, hidden_size (each encoder direction),
  # num_layers (the encoder's) and dropout_rate. Batches pad to multiples of
  # length_multiple.
  c.source_lang = 'de'
  c.target_lang = 'en'
  c.spm_vocab_size = 8000  # SentencePiece pieces of each vocabulary
  c.spm_model_type = 'unigram'  # or 'bpe'
  c.spm_joint = True  # one vocabulary for both languages, else one each
  c.spm_character_coverage = 1.0  # lower: the rarest characters -> <unk>
  c.max_length = 64  # training pairs with a longer side (EOS included) skipped
  c.rnn_attention = 'bahdanau'  # or 'none', 'luong_dot', 'luong_general',
  #   'luong_concat'
  c.decoder_size = 512  # the RNN decoder's hidden size
  c.attention_size = 512  # Bahdanau's and Luong concat's tanh layer
  c.readout_size = 512  # the RNN's maxout readout ('none', 'bahdanau'); 0: none
  c.share_embeddings = 'all'  # Transformer: source, target and output tied;
  #   'decoder' (target and output) or 'none'
  c.pre_norm = True  # Transformer: pre-LN; False: the paper's post-LN
  c.label_smoothing = 0.0
  c.beam_size = 4  # the test split's translations; 1: greedy
  c.length_penalty = 0.6  # alpha of ((5 + length) / 6) ** alpha
  c.max_decode_length = 64  # tokens per translation, EOS included

  # Optimisation.
  c.optimizer = 'adamw'
  c.learning_rate = 1e-3
  c.min_learning_rate = 1e-4
  # 'cosine', 'constant', 'inverse_sqrt', 'linear', 'epoch_decay' or
  # 'slanted_triangular' (the last two ignore warmup_steps).
  c.schedule = 'cosine'
  c.warmup_steps = 100
  c.decay_steps = 0  # 0: num_train_steps
  c.lr_decay_start_epoch = 4  # 'epoch_decay': epochs at the full rate
  c.lr_decay_factor = 0.5  # 'epoch_decay': multiplier per further epoch
  c.adagrad_initial = 0.1  # 'adagrad': initial accumulator value
  c.momentum = 0.0  # 'sgd': heavy-ball momentum (0: plain SGD)
  c.stlr_cut_frac = 0.1  # 'slanted_triangular': fraction of steps rising
  c.stlr_ratio = 32.0  # 'slanted_triangular': peak / lowest rate
  # ULMFiT fine-tuning: each layer group below the top trains at the rate
  # of the group above / layer_lr_decay (0: one rate), and with
  # unfreeze_every_epochs k > 0 the groups join one by one every k epochs.
  c.layer_lr_decay = 0.0
  c.unfreeze_every_epochs = 0
  # Parameters never updated (pre-trained parts): comma-separated prefixes of
  # '/'-joined parameter paths, e.g. 'elmo/bilm'. Their optimizer moments
  # are still kept (their updates, weight decay included, are zeroed after).
  c.frozen_params = ''
  c.beta1 = 0.9
  c.beta2 = 0.99
  c.weight_decay = 0.1
  c.grad_clip_norm = 1.0
  # > 0: evaluate (and save for sampling and fine-tuning) an exponential
  # moving average of the parameters with this decay per update
  # (lm_jax.train.optim.with_param_average); 0: the parameters themselves.
  c.param_average_decay = 0.0
  c.grad_accum_steps = 1
  # Clipping and the optimizer's moments on one raveled vector: fewer kernels
  # for small models; big ones (BERT presets) run faster without the copies.
  c.optimizer_flatten = True
  c.batch_size = 12
  c.num_train_steps = 2000
  c.num_epochs = 0  # > 0: num_train_steps = num_epochs x the task's epoch
  c.normalize_loss_by = 'token'  # or 'sequence' (loss summed over time)
  c.seed = 0

  # Evaluation, logging, checkpoints.
  c.eval_every = 250
  c.eval_steps = 20
  c.final_eval_full = True  # the last evaluation covers the whole split
  # A recurrent LM read in contiguous streams: how many streams a
  # whole-split evaluation reads (0: batch_size, as in training); 1 reads
  # each split as one text, as Zaremba et al. score PTB.
  c.eval_streams = 0
  c.log_every = 50
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.async_checkpoint = True
  c.profile_steps = ''  # 'START:STOP' (from step 1) writes a jax.profiler trace
  # Train steps per jit call (a lax.scan over that many batches), between
  # the steps where the loop logs, evaluates or saves; more than 1 pays
  # where steps take milliseconds (lm_jax.train.steps.make_multi_step).
  c.steps_per_call = 1

  # Devices and hosts.
  c.num_devices = 0  # 0: every device
  c.cpu_devices = 0  # XLA CPU devices; 0: one per core (batch permitting)
  c.coordinator_address = ''  # multi-host: host:port of process 0
  c.num_processes = 0
  c.process_id = -1
  c.multihost = False
  return c
