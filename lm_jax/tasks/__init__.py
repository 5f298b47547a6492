"""Tasks by name, as `config.task` selects them."""

from lm_jax.tasks.base import Task
from lm_jax.tasks.language_modeling import LanguageModelingTask

TASKS = {'lm': LanguageModelingTask}


def make_task(config) -> Task:
  if config.task not in TASKS:
    raise ValueError(f'unknown task {config.task!r}; known: {sorted(TASKS)}')
  return TASKS[config.task](config)
