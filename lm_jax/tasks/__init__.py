"""Tasks by name, as `config.task` selects them."""

from lm_jax.tasks.base import CountingTask, Task
from lm_jax.tasks.bilm import BiLMTask
from lm_jax.tasks.bert_classification import classification_task
from lm_jax.tasks.language_modeling import LanguageModelingTask
from lm_jax.tasks.masked_lm import MaskedLMTask
from lm_jax.tasks.ngram_lm import NGramTask
from lm_jax.tasks.tagging import TaggingTask
from lm_jax.tasks.translation import TranslationTask
from lm_jax.tasks.word_embeddings import embedding_task

TASKS = {'lm': LanguageModelingTask, 'ngram': NGramTask,
         'embeddings': embedding_task, 'tag': TaggingTask,
         'classify': classification_task, 'translate': TranslationTask,
         'bilm': BiLMTask, 'mlm': MaskedLMTask}


def make_task(config) -> Task | CountingTask:
  if config.task not in TASKS:
    raise ValueError(f'unknown task {config.task!r}; known: {sorted(TASKS)}')
  return TASKS[config.task](config)
