"""One module of checks per lesson; importing this package registers them all in grading.CHECKS."""
from . import (lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07,  # noqa: F401
               lesson08, lesson09, lesson10, lesson11, lesson12, lesson13, lesson14, lesson15,
               lesson16, lesson17, lesson18, lesson19, lesson20)
