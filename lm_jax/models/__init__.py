"""Models by name, as `config.model` selects them."""

from lm_jax.models.gpt import GPT, GPTConfig
from lm_jax.models.rnn_lm import RNNLM, RNNLMConfig


def build_model(config, vocab_size: int):
  """The model named by `config.model`, sized by the run config (keys added
  since a saved run's config.json was written take their defaults)."""
  if config.model == 'gpt':
    return GPT(GPTConfig(
        vocab_size=vocab_size, num_layers=config.num_layers,
        num_heads=config.num_heads, embed_dim=config.embed_dim,
        mlp_ratio=config.mlp_ratio, max_length=config.block_size,
        dropout_rate=config.dropout_rate, positional=config.positional,
        use_bias=config.use_bias, activation=config.activation,
        fused_attention=config.get('fused_attention', True),
        dtype=config.compute_dtype, matmul_dtype=config.matmul_dtype))
  if config.model == 'rnn_lm':
    return RNNLM(RNNLMConfig(
        vocab_size=vocab_size, cell=config.cell, embed_dim=config.embed_dim,
        hidden_size=config.hidden_size, num_layers=config.num_layers,
        dropout_rate=config.dropout_rate, init_scale=config.init_scale,
        forget_bias=config.forget_bias,
        lstm_second_bias=config.get('lstm_second_bias', False),
        tie_embeddings=config.tie_embeddings, unroll=config.rnn_unroll,
        fused_lstm=config.get('fused_lstm', True),
        # absent from runs saved before it
        folded_output=config.get('folded_output', False),
        dtype=config.compute_dtype, matmul_dtype=config.matmul_dtype))
  raise ValueError(f"unknown model {config.model!r}; known: "
                   "['gpt', 'rnn_lm']")
