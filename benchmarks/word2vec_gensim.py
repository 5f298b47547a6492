"""word2vec skip-gram on Penn Treebank: lm_jax against gensim's Word2Vec.

Both train on the same text (PTB train as lm_jax loads it, one sentence a
line) with the same hyperparameters: 100 dimensions, window 5 (shrunk at
random per word), 5 negatives from unigram^0.75, subsampling 1e-3,
min_count 5, 5 epochs, alpha 0.025 decayed linearly to 0.0001. lm_jax runs
the `ptb_word2vec_sg` preset through its training loop; gensim runs in its
own virtual environment (gensim is a benchmark-only dependency), as a
subprocess of this script. Both sets of vectors are scored by the same code,
`lm_jax.evaluation.word_similarity` (WordSim-353 and SimLex-999 Spearman,
3CosAdd analogies, with coverage); gensim's own `evaluate_word_pairs` on its
vectors is printed beside, as a check of that code.

  .venv/bin/python benchmarks/word2vec_gensim.py               # seeds 0 1 2
  .venv/bin/python benchmarks/word2vec_gensim.py --seeds 0 --share_negatives 1
  .venv-bench/bin/pip install gensim                           # once

Speed is words of the corpus (PTB train: 887,521) x epochs per second of
training: for lm_jax the training steps (from metrics.jsonl's tokens_per_sec;
evaluation excluded, and since 12-07 jit compilation too: the loop leaves
each step function's first call out of the rate, about 1 s here, which the
figures of 11-24 include), for gensim `Word2Vec.train` (the vocabulary
built beforehand). The end-to-end wall times (data, vocabulary, training,
evaluation, saving) are printed too. The two sides run alternately, seed by
seed, so the machine's load falls on both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HYPERPARAMETERS = dict(vector_size=100, window=5, negative=5,
                       ns_exponent=0.75, sample=1e-3, min_count=5, epochs=5,
                       alpha=0.025, min_alpha=0.0001, sg=1, hs=0)


def gensim_worker(args) -> None:
  """Runs in the gensim venv: trains, saves the vectors, prints JSON."""
  from gensim.models import Word2Vec  # pylint: disable=import-outside-toplevel
  with open(args.corpus, encoding='utf-8') as f:
    sentences = [line.split() for line in f.read().split('\n')]
  start = time.perf_counter()
  params = dict(HYPERPARAMETERS)
  epochs = params.pop('epochs')
  model = Word2Vec(seed=args.seed, workers=args.workers, **params)
  model.build_vocab(sentences)
  vocab_s = time.perf_counter() - start
  start = time.perf_counter()
  effective, raw = model.train(sentences, total_examples=model.corpus_count,
                               epochs=epochs)
  train_s = time.perf_counter() - start
  model.wv.save_word2vec_format(args.vectors)
  ws353 = model.wv.evaluate_word_pairs(args.ws353)[1].statistic
  print(json.dumps({'vocab_s': vocab_s, 'train_s': train_s,
                    'effective_words': effective, 'raw_words': raw,
                    'words': len(model.wv), 'gensim_ws353': float(ws353),
                    'wall_s': vocab_s + train_s}))


def _train_seconds(workdir: str, batch_size: int) -> float:
  """Seconds spent in training steps, from the logged pairs per second."""
  # pylint: disable=import-outside-toplevel
  from lm_jax.train.logging import read_metrics
  seconds, last = 0.0, 0
  for record in read_metrics(workdir):
    if 'tokens_per_sec' in record:
      seconds += (record['step'] - last) * batch_size / record[
          'tokens_per_sec']
      last = record['step']
  return seconds


def run_lm_jax(seed: int, share_negatives: int, data_dir: str,
               cache_dir: str, workdir: str) -> dict:
  # pylint: disable=import-outside-toplevel
  from experiments.configs import ptb_word2vec_sg
  from lm_jax.train import loop
  config = ptb_word2vec_sg.get_config()
  config.seed, config.share_negatives = seed, share_negatives
  config.data_dir, config.cache_dir = data_dir, cache_dir
  config.eval_every = config.checkpoint_every = 0
  start = time.perf_counter()
  results = loop.train_and_evaluate(config, workdir)
  wall = time.perf_counter() - start
  return dict(results, wall_s=wall,
              train_s=_train_seconds(workdir, config.batch_size))


def run_gensim(python: str, seed: int, workers: int, corpus: str,
               ws353: str, vectors: str) -> dict:
  out = subprocess.run(
      [python, os.path.abspath(__file__), '--gensim_worker', f'--seed={seed}',
       f'--workers={workers}', f'--corpus={corpus}', f'--ws353={ws353}',
       f'--vectors={vectors}'], capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _mean_std(values) -> str:
  values = list(values)
  spread = statistics.stdev(values) if len(values) > 1 else 0.0
  return f'{statistics.mean(values):.4f} ± {spread:.4f}'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--share_negatives', type=int, default=64,
                      help="lm_jax: pairs sharing a draw of negatives (the "
                           "preset's 64; 1 draws each pair's own)")
  parser.add_argument('--workers', type=int, default=3,
                      help="gensim's worker threads (its default, 3)")
  parser.add_argument('--gensim_python',
                      default=os.path.join(ROOT, '.venv-bench', 'bin',
                                           'python'))
  parser.add_argument('--data_dir', default=os.environ.get(
      'LM_JAX_DATA', os.path.join(ROOT, '..', 'shared', 'data')))
  parser.add_argument('--cache_dir', default=os.environ.get(
      'LM_JAX_CACHE', os.path.join(os.path.expanduser('~'), '.cache',
                                   'lm_jax')))
  parser.add_argument('--out', default='', help='also write JSON here')
  # Internal: the gensim side, run in the gensim venv.
  parser.add_argument('--gensim_worker', action='store_true',
                      help=argparse.SUPPRESS)
  for name in ('corpus', 'ws353', 'vectors'):
    parser.add_argument(f'--{name}', help=argparse.SUPPRESS)
  parser.add_argument('--seed', type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.gensim_worker:
    gensim_worker(args)
    return

  sys.path.insert(0, ROOT)
  # pylint: disable=import-outside-toplevel
  from lm_jax.data.builders.text_corpus import load_text
  from lm_jax.evaluation import word_similarity as ws
  similarity_dir = os.path.join(args.data_dir, 'word_similarity')
  text = load_text('ptb', 'train', args.data_dir, args.cache_dir)
  corpus_words = len(text.split())
  epochs = HYPERPARAMETERS['epochs']
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    corpus = os.path.join(tmp, 'ptb.train.txt')
    with open(corpus, 'w', encoding='utf-8') as f:
      f.write(text)
    for seed in args.seeds:
      ours = run_lm_jax(seed, args.share_negatives, args.data_dir,
                        args.cache_dir, os.path.join(tmp, f'lm_jax_{seed}'))
      vectors = os.path.join(tmp, f'gensim_{seed}.txt')
      theirs = run_gensim(args.gensim_python, seed, args.workers, corpus,
                          os.path.join(similarity_dir, ws.WS353), vectors)
      theirs.update(ws.evaluate_all(ws.WordVectors.load_word2vec_text(
          vectors), similarity_dir))
      ours = {k[len('eval_'):] if k.startswith('eval_') else k: v
              for k, v in ours.items()}
      for name, r in (('lm_jax', ours), ('gensim', theirs)):
        r['words_per_s'] = corpus_words * epochs / r['train_s']
        rows.append(dict(r, implementation=name, seed=seed))
        print(f"seed {seed} {name:7s}: WS353 {r['ws353_spearman']:.4f} "
              f"(coverage {r['ws353_coverage']:.3f}), SimLex "
              f"{r['simlex999_spearman']:.4f}, analogy "
              f"{r['analogy_accuracy']:.4f} (coverage "
              f"{r['analogy_coverage']:.3f}); train {r['train_s']:.1f} s "
              f"= {r['words_per_s']:,.0f} words/s; wall {r['wall_s']:.1f} s"
              + (f"; gensim's own WS353 {r['gensim_ws353']:.4f}"
                 if 'gensim_ws353' in r else ''), flush=True)

  print(f'\nPTB train, {corpus_words:,} words x {epochs} epochs; seeds '
        f'{args.seeds}; lm_jax share_negatives={args.share_negatives}, '
        f'gensim workers={args.workers}\n')
  print('| implementation | WS353 Spearman | SimLex-999 Spearman | analogy '
        'accuracy | training words/s | wall s |')
  print('| --- | ---: | ---: | ---: | ---: | ---: |')
  for name in ('lm_jax', 'gensim'):
    mine = [r for r in rows if r['implementation'] == name]
    print(f'| {name} | {_mean_std(r["ws353_spearman"] for r in mine)} | '
          f'{_mean_std(r["simlex999_spearman"] for r in mine)} | '
          f'{_mean_std(r["analogy_accuracy"] for r in mine)} | '
          f'{statistics.mean(r["words_per_s"] for r in mine):,.0f} | '
          f'{statistics.mean(r["wall_s"] for r in mine):.1f} |')
  gap = (statistics.mean(r['ws353_spearman'] for r in rows
                         if r['implementation'] == 'lm_jax')
         - statistics.mean(r['ws353_spearman'] for r in rows
                           if r['implementation'] == 'gensim'))
  print(f'\nlm_jax - gensim, mean WS353 Spearman: {gap:+.4f} (target: '
        f'>= -0.02): {"met" if gap >= -0.02 else "NOT met"}')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
