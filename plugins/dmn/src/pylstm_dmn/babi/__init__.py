"""The bAbI question-answering tasks (Weston et al. 2015), generated offline.

* :mod:`~pylstm_dmn.babi.format`: the published text format (:class:`Story`,
  :class:`Question`, :func:`parse_babi`, :func:`format_babi`, :func:`tokenize`).
* :mod:`~pylstm_dmn.babi.generate`: the 20 tasks from a seeded world simulation
  (:func:`generate`), their files under the published names (:func:`write_tasks`,
  :func:`read_task_file`) and :func:`load_tasks` for a user's folder or generated data.
* :mod:`~pylstm_dmn.babi.world` and the ``tasks_*`` modules: the simulation itself.
"""

from pylstm_dmn.babi.format import Question, Story, format_babi, parse_babi, tokenize
from pylstm_dmn.babi.generate import (
    GENERATOR_VERSION,
    SIZES,
    TASK_NAMES,
    TEST_QUESTIONS,
    TaskData,
    generate,
    load_tasks,
    read_task_file,
    task_file_name,
    write_tasks,
)

__all__ = [
    "GENERATOR_VERSION", "SIZES", "TASK_NAMES", "TEST_QUESTIONS", "Question", "Story",
    "TaskData", "format_babi", "generate", "load_tasks", "parse_babi", "read_task_file",
    "task_file_name", "tokenize", "write_tasks",
]
