"""Shared fixtures of the lm_jax test suite.

Every test process gets four XLA CPU devices, so data-parallel code runs on
a real multi-device mesh without accelerators. XLA reads the flag when the
backend starts, so it is set here, before any test module imports JAX.

Fixtures:
  shared_data_dir: the real corpora (`$LM_JAX_DATA` or `../shared/data`).
  shared_cache_dir: their prepared tfds datasets, shared by the run's
    workers.
  shared_run_dir: a folder for training runs the workers share.
  tiny_corpus_dir: a `tiny_shakespeare/input.txt` of 20,000 characters.
  make_tiny_config: a factory of tiny GPT run configs on that corpus.
  make_tiny_task, tiny_task: prepared `LanguageModelingTask`s of tiny
    configs.
  make_tiny_gpt: a factory of tiny GPT models and their parameters.
  optimized_compilation: XLA's optimisation passes on, for tests that
    train hundreds of steps.
  offline: makes every host-name lookup fail, as on a machine without
    internet, so no test ever downloads anything.
"""

import os

_DEVICE_FLAG = '--xla_force_host_platform_device_count=4'
# XLA:CPU's fusion emitters (its MLIR code generator) compile the tests'
# small programs in more CPU time than the loop emitters before them: the
# suite took 23% fewer CPU-seconds without them (README: the suite's
# times). Kept for the commands the tests start (command_line.command_env).
_COMPILE_FLAG = '--xla_cpu_use_fusion_emitters=false'
for _flag in (_DEVICE_FLAG, _COMPILE_FLAG):
  if _flag.split('=')[0] not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}"
# The multi-device tests need the CPU platform to be the default one.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Test programs are tiny and run a few steps: XLA's optimisation passes cost
# more compile time than they save. Set through the environment so the
# commands that tests start as subprocesses compile the same way.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')

import atexit  # noqa: E402
import gc  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.command_line import REPO_ROOT  # noqa: E402


def _test_run_dir(purpose: str) -> str:
  """A temporary folder shared by every process of this test run.

  The process that makes it (pytest, or pytest-xdist's controller) exports
  its path and removes it at exit; xdist's workers, started later, inherit
  the path, so what one worker prepared the other reuses.
  """
  variable = f'LM_JAX_TESTS_{purpose.upper()}'
  path = os.environ.get(variable, '')
  if not os.path.isdir(path):
    path = tempfile.mkdtemp(prefix=f'lm_jax_tests_{purpose}_')
    os.environ[variable] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
  return path


# Many tests compile the same small programs from different Python closures;
# a persistent cache compiles each program once per test run, whichever
# worker asks first. (A read that races the other worker's write of the same
# entry fails softly: jax warns and compiles.)
_XLA_CACHE = _test_run_dir('xla_cache')
jax.config.update('jax_compilation_cache_dir', _XLA_CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
_TFDS_CACHE = _test_run_dir('tfds_cache')
# Made here, on import, like the caches: the xdist controller imports this
# file before it starts the workers, so they inherit one folder. (A fixture
# runs only in the workers, each of which would make its own.)
_RUN_DIR = _test_run_dir('runs')

def pytest_collection_finish(session):
  """Moves every object alive once the test modules are imported (JAX,
  Flax, Orbax and the rest, never garbage) out of the garbage collector's
  sight: its full passes, which tracing's many objects set off, then scan
  only what the tests made (a quarter less time collecting; 8% of a worker's
  CPU went to it)."""
  del session
  gc.freeze()


TINY_CORPUS_CHARS = 20_000


def _shared_data_dir() -> str:
  return os.environ.get('LM_JAX_DATA') or os.path.normpath(
      os.path.join(REPO_ROOT, '..', 'shared', 'data'))


@pytest.fixture(scope='session')
def shared_data_dir() -> str:
  """The real corpora; tests that need them skip where they are absent."""
  path = _shared_data_dir()
  if not os.path.exists(os.path.join(path, 'tiny_shakespeare', 'input.txt')):
    pytest.skip(f'no tiny_shakespeare/input.txt under {path}')
  return path


@pytest.fixture(scope='session')
def shared_run_dir() -> str:
  """A folder for runs the test run's workers share (each made by the
  first test to need it, under a lock of its own)."""
  return _RUN_DIR


@pytest.fixture(scope='session')
def shared_cache_dir() -> str:
  """The prepared-dataset cache for `shared_data_dir`, one per test run:
  each corpus is prepared once, by the first worker to need it (under
  `prepared`'s lock), and read by both."""
  return _TFDS_CACHE


def _tiny_text() -> str:
  """The start of the real Tiny Shakespeare, or lookalike text without it."""
  real = os.path.join(_shared_data_dir(), 'tiny_shakespeare', 'input.txt')
  if os.path.exists(real):
    with open(real, encoding='utf-8') as f:
      return f.read(TINY_CORPUS_CHARS)
  rng = np.random.default_rng(0)
  words = ['First', 'Citizen:', 'we', 'are', 'accounted', 'poor', 'citizens,',
           'the', 'patricians', 'good.', 'What', 'authority', 'surfeits',
           'on', 'would', 'relieve', 'us:', 'if', 'they', 'yield', 'but',
           '\n\nMENENIUS:', 'Why,', 'masters,', 'my', 'friends;']
  text = ''
  while len(text) < TINY_CORPUS_CHARS:
    text += ' '.join(rng.choice(words, 12)) + '\n'
  return text[:TINY_CORPUS_CHARS]


@pytest.fixture(scope='session')
def tiny_corpus_dir(tmp_path_factory) -> str:
  """A data dir holding a 20,000-character `tiny_shakespeare/input.txt`."""
  root = tmp_path_factory.mktemp('tiny_corpus')
  (root / 'tiny_shakespeare').mkdir()
  (root / 'tiny_shakespeare' / 'input.txt').write_text(_tiny_text(),
                                                       encoding='utf-8')
  return str(root)


@pytest.fixture(scope='session')
def tiny_cache_dir(tmp_path_factory) -> str:
  """The prepared-dataset cache for `tiny_corpus_dir` (one per session)."""
  return str(tmp_path_factory.mktemp('tfds_cache_tiny'))


@pytest.fixture(scope='session')
def make_tiny_config(tiny_corpus_dir, tiny_cache_dir):
  """`make_tiny_config(**overrides)`: the CPU Tiny Shakespeare preset shrunk
  to a 1-layer, 32-wide GPT on the tiny corpus; 12 steps, 4 sequences of 16
  characters a step, evaluation and checkpoints every 6 steps."""
  from experiments.configs import shakespeare_char_cpu

  def make(**overrides):
    config = shakespeare_char_cpu.get_config()
    config.num_layers, config.embed_dim, config.num_heads = 1, 32, 2
    config.block_size, config.batch_size = 16, 4
    config.num_train_steps, config.decay_steps = 12, 12
    config.warmup_steps = 2
    config.eval_every, config.eval_steps = 6, 2
    config.log_every, config.checkpoint_every = 3, 6
    config.data_dir, config.cache_dir = tiny_corpus_dir, tiny_cache_dir
    config.update(overrides)
    return config

  return make


@pytest.fixture(scope='session')
def make_tiny_task(make_tiny_config):
  """`make_tiny_task(**overrides)`: the prepared (data, tokenizer, model)
  task of `make_tiny_config(**overrides)`."""
  from lm_jax import tasks

  def make(**overrides):
    task = tasks.make_task(make_tiny_config(**overrides))
    task.prepare()
    return task

  return make


@pytest.fixture(scope='session')
def tiny_task(make_tiny_task):
  """The prepared task of the tiny config."""
  return make_tiny_task()


@pytest.fixture(scope='session')
def make_tiny_gpt():
  """`make_tiny_gpt(**gpt_config_fields) -> (model, params)`: a 2-layer,
  32-wide GPT over 13 tokens and 16 positions, randomly initialised."""
  from lm_jax.models.gpt import GPT, GPTConfig

  def make(seed: int = 0, **fields):
    fields = {'vocab_size': 13, 'num_layers': 2, 'num_heads': 2,
              'embed_dim': 32, 'max_length': 16, **fields}
    model = GPT(GPTConfig(**fields))
    params = jax.jit(model.init)(
        jax.random.key(seed), jnp.zeros((1, fields['max_length']), jnp.int32))
    return model, params['params']

  return make


@pytest.fixture
def optimized_compilation():
  """XLA's optimisation passes on for the test: hundreds of training steps
  repay them, unlike the suite's many short programs, for which the suite
  turns them off."""
  disabled = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', False)
  yield
  jax.config.update('jax_disable_most_optimizations', disabled)


@pytest.fixture
def offline(monkeypatch):
  """Simulates a machine without internet: host names do not resolve."""
  def no_network(*args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, 'offline (test fixture)')
  monkeypatch.setattr(socket, 'getaddrinfo', no_network)
