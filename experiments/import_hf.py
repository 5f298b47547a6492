"""Converts a Hugging Face BERT folder into an lm_jax workdir:

  python -m experiments.import_hf --hf_dir DIR --workdir OUT

DIR holds config.json, model.safetensors and vocab.txt (and the tokenizer's
settings, tokenizer.json or tokenizer_config.json), as `save_pretrained`
writes them; the weights are read with `safetensors.numpy`, no PyTorch.
OUT gets config.json (task 'mlm', model 'bert'), tokenizer.json and a
checkpoint at step 0, which `./launch.sh encode` reads and which a
fine-tuning preset starts from with `--config.init_from=OUT`
(`lm_jax/import_hf.py` says how the weights map).
"""

from absl import app
from absl import flags

from experiments import before_jax, cli

_HF_DIR = flags.DEFINE_string('hf_dir', None,
                              'A Hugging Face BERT folder.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The workdir to write.')


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}')
  if not _HF_DIR.value or not _WORKDIR.value:
    cli.fail('--hf_dir and --workdir are required')
  before_jax.set_cpu_devices(1)
  cli.setup_logging()

  def convert():
    from experiments.configs import bert_mlm_small
    from lm_jax.import_hf import import_hf

    config = import_hf(_HF_DIR.value, _WORKDIR.value,
                       bert_mlm_small.get_config())
    print(f'# {_HF_DIR.value} -> {_WORKDIR.value}: BERT with '
          f'{config.num_layers} layers, {config.embed_dim} wide, '
          f'{config.num_heads} heads')

  cli.run_guarded(convert)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.flags_parser)
