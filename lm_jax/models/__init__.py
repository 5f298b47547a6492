"""Models by name, as `config.model` selects them."""

from lm_jax.models.gpt import GPT, GPTConfig


def build_model(config, vocab_size: int):
  """The model named by `config.model`, sized by the run config."""
  if config.model == 'gpt':
    return GPT(GPTConfig(
        vocab_size=vocab_size, num_layers=config.num_layers,
        num_heads=config.num_heads, embed_dim=config.embed_dim,
        mlp_ratio=config.mlp_ratio, max_length=config.block_size,
        dropout_rate=config.dropout_rate, positional=config.positional,
        use_bias=config.use_bias, activation=config.activation,
        dtype=config.compute_dtype))
  raise ValueError(f"unknown model {config.model!r}; known: ['gpt']")
