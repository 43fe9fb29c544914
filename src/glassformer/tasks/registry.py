"""Every task by name: the seeded synthetic generators and the text-file tasks, built from config fields."""
from ..errors import UserError
from .synthetic import DagTask, RepeatedTokens, SequenceTask, VariableEvaluation, VariableRenaming
from .text import CharLM

TASKS = {cls.name: cls for cls in (VariableRenaming, VariableEvaluation, DagTask, SequenceTask,
                                   RepeatedTokens)}     # drawn from a seed alone
FILE_TASKS = {CharLM.name: CharLM}                      # read a text file named by path=


def task_class(name):
    """The task class called name; UserError naming the choices when there is none."""
    found = TASKS.get(name) or FILE_TASKS.get(name)
    if found is None:
        raise UserError(f"unknown task {name!r}: use one of {sorted(TASKS) + sorted(FILE_TASKS)}")
    return found


def make_task(name, **params):
    """A task by name with config fields as keyword arguments."""
    cls = task_class(name)
    try:
        return cls(**params)
    except TypeError as e:
        raise UserError(f"task {name!r}: {e}") from None
